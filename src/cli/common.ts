import type { TraceEvent } from "../index.js";
import { type RunResult, runScenario, type Scenario, type StepResult } from "../scenario/index.js";
import type { KernelProfile } from "../uapi/profiles.js";
import type { CliContext } from "./main.js";
import { formatTraceEvent } from "./trace-format.js";

/** Runs with more steps than this show a progress line on a terminal. */
export const PROGRESS_THRESHOLD = 200;

/** Run a scenario for a command, with the progress display on long runs. */
export function execute(
  ctx: CliContext,
  sc: Scenario,
  trace: boolean,
  onStep?: (r: StepResult, done: number, total: number) => void,
): RunResult {
  const every = (total: number) => Math.max(1, Math.floor(total / 100));
  const r = runScenario(sc, {
    trace,
    onStep: (sr, done, total) => {
      onStep?.(sr, done, total);
      if (total > PROGRESS_THRESHOLD && (done % every(total) === 0 || done === total)) {
        ctx.out.progress(done, total, `${sr.where} ${sr.outcome.label}`);
      }
    },
  });
  ctx.out.clearProgress();
  return r;
}

/** Steps of a scenario with repeats unrolled (a count that uses a variable counts once). */
export function countSteps(sc: Scenario): number {
  const walk = (steps: Scenario["steps"]): number => {
    let n = 0;
    for (const s of steps) {
      const k = s.kind === "repeat" && typeof s.body !== "string" ? Number(s.body) : 1;
      n += s.kind === "repeat" ? (Number.isFinite(k) ? k : 1) * walk(s.steps ?? []) : 1;
    }
    return n;
  };
  return walk(sc.steps);
}

/** 0 passed, 1 an expectation failed, 2 a part of the model is missing, 3 the scenario is wrong. */
export function exitCode(r: RunResult): number {
  if (r.ok) return 0;
  switch (r.failure?.kind) {
    case "not-modelled":
      return 2;
    case "scenario":
      return 3;
    default:
      return 1;
  }
}

/** The failure as a few lines for stderr: what, where, and the call that did it. */
export function failureLines(ctx: CliContext, r: RunResult): string[] {
  const f = r.failure;
  if (f === undefined) return [];
  const { out } = ctx;
  const file = r.scenario.file ?? r.scenario.name;
  const head =
    f.kind === "expectation"
      ? `${out.paint("red", "FAIL")} ${file}: ${f.where}`
      : f.kind === "not-modelled"
        ? `${out.paint("yellow", "NOT MODELLED")} ${file}: ${f.where}`
        : `${out.paint("red", "SCENARIO ERROR")} ${file}: ${f.where}`;
  const lines = [head, `  ${f.message}`];
  const last = r.results.at(-1);
  if (f.kind === "expectation" && last !== undefined) {
    for (const ev of last.failures)
      lines.push(`  call: ${formatTraceEvent(ev, profileOf(r.scenario), { pid: false })}`);
    if (last.step.note) lines.push(`  note: ${last.step.note.split("\n")[0]}`);
  }
  return lines;
}

export function profileOf(sc: Scenario): KernelProfile {
  return (sc.machine.kernel ?? "latest") as KernelProfile;
}

/** A TraceEvent as plain JSON (bigints as decimal strings, struct bytes as hex). */
export function eventJson(ev: TraceEvent, line: string): Record<string, unknown> {
  const o: Record<string, unknown> = {
    seq: ev.seq,
    pid: ev.pid,
    call: ev.call,
    args: ev.args.map((x) => (typeof x === "bigint" ? x.toString() : x)),
    ret: typeof ev.ret === "bigint" ? ev.ret.toString() : ev.ret,
    text: line,
  };
  if (ev.fdKind) o.fdKind = ev.fdKind;
  if (ev.errno !== undefined) {
    o.errno = ev.errno;
    o.reason = ev.reason ?? "";
  }
  return o;
}

/** JSON.stringify with bigints as strings. */
export function toJson(v: unknown): string {
  return JSON.stringify(
    v,
    (_k, x) => (typeof x === "bigint" ? x.toString() : x instanceof Uint8Array ? hexOf(x) : x),
    2,
  );
}

function hexOf(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
