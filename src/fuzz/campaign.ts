// Runs model-based fuzzing sequences (fast-check fc.commands) against a
// fresh machine each: random sequences of syscalls over several processes,
// each checked against the reference model and the machine's invariants;
// at the end every process exits and the counters must be back at boot.
import fc from "fast-check";
import { exitInModel } from "./cmd-proc.js";
import { checkMachine, commandArbs, Spawn, Violation } from "./commands.js";
import { type MachineKind, type Model, newWorld, type Real } from "./world.js";

export interface CampaignOptions {
  seed: number;
  /** The machine every sequence of this campaign boots (default amd). */
  machine?: MachineKind;
  /** Sequences to run (fast-check numRuns). */
  runs: number;
  /** Commands per sequence at most. */
  maxCommands?: number;
  /** Replay token of a shrunk failure printed by an earlier run: "<fast-check path>~<commands replayPath>". */
  path?: string;
}

export interface CampaignResult {
  sequences: number;
  steps: number;
  violations: number;
  seed: number;
  machine: MachineKind;
  /** Interesting outcomes reached (model labels), summed over sequences. */
  seen: Record<string, number>;
  /** The shrunk failing sequence, the path to replay it, and the message. */
  failure?: { commands: string; path: string; message: string };
}

/** The counters that must come back to their boot value once no process is left. */
function leakCheck(real: Real): void {
  const c = real.m.debug.counters();
  for (const [k, v] of Object.entries(real.baseline)) {
    if (k === "residentFrames") continue;
    if (c[k] !== v) throw new Violation(`after every process exited: ${k} is ${c[k]}, boot had ${v}`);
  }
}

export function runCampaign(o: CampaignOptions): CampaignResult {
  let sequences = 0;
  let steps = 0;
  const seen: Record<string, number> = {};
  const [path, replayPath] = o.path === undefined ? [undefined, undefined] : o.path.split("~");
  const machine = o.machine ?? "amd";
  const cmdArb = fc.commands(commandArbs(machine), {
    maxCommands: o.maxCommands ?? 300,
    size: "max",
    replayPath,
  });
  const prop = fc.property(cmdArb, (cmds) => {
    sequences++;
    const { model, real } = newWorld(o.seed, machine);
    // Two processes from the start so the first commands have someone to act for.
    new Spawn(0).run(model, real);
    new Spawn(1).run(model, real);
    const setup = () => ({ model: model as Model, real });
    try {
      fc.modelRun(setup, cmds);
    } finally {
      steps += model.steps;
      for (const [k, v] of Object.entries(model.seen)) seen[k] = (seen[k] ?? 0) + v;
    }
    // per step only changed tables were read back: read them all once before the exits free them
    checkMachine(real, "the last command (full check)", true);
    real.procs.forEach((p, i) => {
      p.exit();
      if (model.procs[i].alive) exitInModel(model, i);
    });
    checkMachine(real, "exit of every process", true);
    if (model.ctxs.size + model.containers.size + model.memfds.size + model.files.size > 0)
      throw new Violation("the model still holds state after every process exited");
    leakCheck(real);
  });
  const details = fc.check(prop, {
    seed: o.seed,
    numRuns: o.runs,
    path,
    endOnFailure: o.path !== undefined,
  });
  const res: CampaignResult = {
    sequences,
    steps,
    violations: details.failed ? 1 : 0,
    seed: o.seed,
    machine,
    seen,
  };
  if (details.failed) {
    const err = details.errorInstance;
    const commands = String(details.counterexample?.[0] ?? "?");
    const rp = /replayPath="([^"]*)"/.exec(commands)?.[1] ?? "";
    res.failure = {
      commands: commands.replace(/ ?\/\*replayPath=.*\*\//, ""),
      path: `${details.counterexamplePath ?? ""}~${rp}`,
      message: err instanceof Error ? err.message : String(err),
    };
  }
  return res;
}
