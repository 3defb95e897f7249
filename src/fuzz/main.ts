import { runCampaign } from "./campaign.js";
import { MACHINE_KINDS, type MachineKind } from "./world.js";

/**
 * npm run fuzz -- [--seconds N] [--seed S] [--machine KIND] [--replay PATH] [--runs N] [--json]
 *
 * Model-based fuzzing of syscall sequences over several processes (see
 * docs/reliability.md). Runs batches of sequences, batch k with seed S + k
 * on machine kind k mod 7 (or always --machine KIND), until the time is
 * up; shows progress on stderr; on a violation prints the shrunk sequence
 * and the command that replays it, and exits 1. With --json the last
 * stdout line is {"sequences","steps","violations","seed","machine"}. The
 * wall clock only bounds the campaign: each sequence is deterministic in
 * its seed and machine.
 */
const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const json = args.includes("--json");
const seconds = Number(opt("--seconds") ?? 20);
const seed = Number(opt("--seed") ?? Date.now() % 2147483647);
const replay = opt("--replay");
const batch = Number(opt("--runs") ?? 50);
const machineOpt = opt("--machine");
const usage =
  "usage: npm run fuzz -- [--seconds N] [--seed S] [--machine amd|intel|mock|noiommu|spapr|compat|k612] [--replay PATH] [--runs N] [--json]\n";
if (
  !Number.isFinite(seconds) ||
  !Number.isInteger(seed) ||
  !Number.isInteger(batch) ||
  batch < 1 ||
  (machineOpt !== undefined && !(MACHINE_KINDS as readonly string[]).includes(machineOpt)) ||
  (replay !== undefined && machineOpt === undefined)
) {
  if (replay !== undefined && machineOpt === undefined) process.stderr.write("--replay needs --machine\n");
  process.stderr.write(usage);
  process.exit(2);
}
const fixed = machineOpt as MachineKind | undefined;

const tty = process.stderr.isTTY === true;
const log = (s: string) => process.stderr.write(`${s}\n`);
log(
  `fuzz: seed ${seed}, ${fixed ?? "machines rotating"}${replay !== undefined ? `, replaying ${replay}` : `, ${seconds} s`}`,
);

let sequences = 0;
let steps = 0;
let violations = 0;
let failedSeed = seed;
let failedMachine: MachineKind | undefined;
const seen: Record<string, number> = {};
const perMachine: Record<string, number> = {};
const start = Date.now();
for (let k = 0; ; k++) {
  const s = seed + k;
  const machine = fixed ?? MACHINE_KINDS[k % MACHINE_KINDS.length];
  const r = runCampaign({ seed: s, machine, runs: replay !== undefined ? 1 : batch, path: replay });
  sequences += r.sequences;
  steps += r.steps;
  perMachine[machine] = (perMachine[machine] ?? 0) + r.sequences;
  for (const [n, v] of Object.entries(r.seen)) seen[n] = (seen[n] ?? 0) + v;
  if (r.failure !== undefined) {
    violations++;
    failedSeed = s;
    failedMachine = machine;
    if (tty) process.stderr.write("\n");
    log(`VIOLATION (seed ${s}, machine ${machine}): ${r.failure.message}`);
    log(`shrunk sequence: ${r.failure.commands}`);
    log(`replay: npm run fuzz -- --seed ${s} --machine ${machine} --replay ${r.failure.path}`);
    break;
  }
  if (replay !== undefined) {
    log("replay: the sequence passes now");
    break;
  }
  const elapsed = (Date.now() - start) / 1000;
  const line = `fuzz: ${elapsed.toFixed(1)} s, ${sequences} sequences, ${steps} steps, 0 violations`;
  if (tty) process.stderr.write(`\r${line}`);
  else if (k % 10 === 9) log(line);
  if (elapsed >= seconds) break;
}
if (tty) process.stderr.write("\n");
log(`sequences per machine: ${JSON.stringify(perMachine)}`);
log(`paths reached: ${JSON.stringify(seen)}`);
log(`fuzz: ${sequences} sequences, ${steps} steps, ${violations} violations (seed ${seed})`);
if (json)
  process.stdout.write(
    `${JSON.stringify({ sequences, steps, violations, seed: violations > 0 ? failedSeed : seed, machine: failedMachine ?? fixed ?? "rotate" })}\n`,
  );
process.exit(violations > 0 ? 1 : 0);
