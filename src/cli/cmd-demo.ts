import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { bootMachine, parseScenario, type Scenario, type StepResult } from "../scenario/index.js";
import { writeRecording } from "./cmd-record.js";
import { stepLine } from "./cmd-run.js";
import { execute, exitCode, failureLines, profileOf } from "./common.js";
import { DEMO_MODES, DEMOS } from "./demos.js";
import type { CliContext } from "./main.js";
import { formatTraceEvent } from "./trace-format.js";

/** examples/ beside dist/ (or src/ under the tests): the demos' scenario files. */
export function exampleFile(name: string): string {
  return fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
}

/** `iommufd-sim demo <mode>`: a guided run of a scenario with its explanations. */
export function cmdDemo(ctx: CliContext, args: string[]): number {
  const { out } = ctx;
  const mode = args[0];
  if (args.length !== 1 || !(DEMO_MODES as readonly string[]).includes(mode)) {
    out.error(
      `iommufd-sim demo: expected one of ${DEMO_MODES.join(", ")}${mode ? `, not "${args.join(" ")}"` : ""}`,
    );
    return 2;
  }
  const demo = DEMOS[mode as (typeof DEMO_MODES)[number]];
  const file = exampleFile(`demo-${mode}.yaml`);
  let sc: Scenario;
  try {
    sc = parseScenario(
      (ctx.io.readFile ?? ((p: string) => readFileSync(p, "utf8")))(file),
      `examples/demo-${mode}.yaml`,
    );
  } catch (e) {
    out.error(`iommufd-sim demo ${mode}: cannot load its scenario: ${(e as Error).message}`);
    return 3;
  }
  const probe = bootMachine(sc.machine, false);
  const missing = demo.missing(probe);
  if (missing.length > 0) {
    out.error(`iommufd-sim demo ${mode}: this mode is not modelled yet. It needs:`);
    for (const m of missing) out.error(`  - ${m}`);
    out.error("Nothing was run. `iommufd-sim demo noiommu` shows what the simulated machine does today.");
    return 2;
  }
  out.line(out.paint("bold", `iommufd-sim demo ${mode}: ${demo.title}`));
  if (sc.description) out.line(out.paint("dim", sc.description));
  out.line();
  const profile = profileOf(sc);
  let n = 0;
  const r = execute(ctx, sc, true, (sr) => {
    n++;
    printStep(ctx, sr, n, profile);
  });
  if (ctx.opts.record !== undefined && r.machine !== undefined) {
    const code = writeRecording(ctx, r, sc, ctx.opts.record);
    if (code !== 0) return code;
  }
  if (!r.ok) {
    out.line();
    for (const l of failureLines(ctx, r)) out.error(l);
    return exitCode(r);
  }
  const m = r.machine;
  if (m !== undefined) {
    const c = m.debug.counters();
    out.line(out.paint("bold", "Machine counters after the run (m.debug.counters())"));
    out.line(
      `  ${Object.entries(c)
        .map(([k, v]) => `${k}=${v}`)
        .join("  ")}`,
    );
    out.line();
    for (const l of demo.outro(bootMachine(sc.machine, false), m)) out.line(l);
  }
  return 0;
}

function printStep(ctx: CliContext, sr: StepResult, n: number, profile: ReturnType<typeof profileOf>): void {
  const { out } = ctx;
  if (ctx.opts.verbosity === "verbose") out.line(out.paint("dim", stepLine(ctx, sr)));
  out.line(out.paint("cyan", `${String(n).padStart(2)}. ${sr.outcome.label}`));
  for (const l of (sr.step.note ?? sr.outcome.said ?? "").split("\n").filter(Boolean))
    out.line(out.paint("dim", `    ${l}`));
  for (const ev of sr.events) {
    const line = formatTraceEvent(ev, profile, { pid: false });
    out.line(`    ${ev.errno !== undefined ? out.paint("yellow", line) : line}`);
  }
  const o = sr.outcome;
  if (sr.events.length === 0 && o.errno !== undefined)
    out.line(out.paint("yellow", `    -> ${o.reason || `errno ${o.errno}`}`));
  if (o.entries) out.line(`    -> ${o.entries.join("  ") || "(empty)"}`);
  if (o.text !== undefined) out.line(`    -> ${JSON.stringify(o.text)}`);
  if (o.data !== undefined) out.line(`    -> ${hexdump(o.data)}`);
  if (sr.step.kind === "device_dma" && o.out !== undefined) {
    out.line(
      `    -> ${Object.entries(o.out)
        .map(([k, v]) => `${k}=${k === "fault_addr" ? `0x${v.toString(16)}` : v}`)
        .join(" ")}`,
    );
  }
  if (sr.step.kind.startsWith("check_"))
    out.line(`    -> ${sr.failure ? out.paint("red", sr.failure) : "holds"}`);
  for (const [k, v] of Object.entries(sr.captured)) {
    if (sr.step.kind === "read_memory" || sr.step.kind === "read_phys") continue;
    out.line(
      out.paint(
        "dim",
        `    $${k} = ${typeof v === "bigint" && v > 0xffffn ? `0x${v.toString(16)}` : String(v)}`,
      ),
    );
  }
  out.line();
}

function hexdump(b: Uint8Array): string {
  const hex = Array.from(b.subarray(0, 32), (x) => x.toString(16).padStart(2, "0")).join(" ");
  const text = Array.from(b.subarray(0, 32), (x) =>
    x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : ".",
  ).join("");
  return `${hex}${b.length > 32 ? " ..." : ""}  |${text}|`;
}
