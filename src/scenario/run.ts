import type { Machine, Process, TraceEvent } from "../index.js";
import type { KernelProfile } from "../uapi/profiles.js";
import { ScenarioError } from "./error.js";
import { checkCounters, checkDma, checkExpect, checkInvariants, checkTaint } from "./expect.js";
import { bootMachine, spawnProcesses } from "./machine.js";
import { execStep, NotModelledError, type Outcome } from "./steps.js";
import type { Scenario, Step } from "./types.js";
import { toNum, type Vars } from "./values.js";

export interface StepResult {
  step: Step;
  /** "step 5 (line 23)", or "step 7.2 [i=3]" inside a repeat. */
  where: string;
  outcome: Outcome;
  /** Variables this step set. */
  captured: Record<string, bigint | string>;
  /** The failed calls this step made (m.debug.failures() entries). */
  failures: TraceEvent[];
  /** Every call this step made (when the machine keeps a trace). */
  events: TraceEvent[];
  /** The expectation that did not hold. */
  failure?: string;
}

export interface RunResult {
  scenario: Scenario;
  ok: boolean;
  /** Steps that ran, in order (a failed expectation is the last one). */
  results: StepResult[];
  /** The first expectation that did not hold, or the scenario mistake / missing subsystem that stopped the run. */
  failure?: { where: string; message: string; kind: "expectation" | "scenario" | "not-modelled" };
  machine?: Machine;
  processes: Map<string, Process>;
  vars: Vars;
  /** Steps in the file, repeats unrolled (for progress). */
  totalSteps: number;
}

export interface RunOptions {
  /** Build the machine with trace: true (every syscall kept for m.debug.trace()). */
  trace?: boolean;
  /** Called after each step (progress display, demos); `run` is the run so far (its machine and processes). */
  onStep?: (r: StepResult, done: number, total: number, run: RunResult) => void;
  /** Called once the machine is built and the processes are spawned, before the first step (the web view's step 0). */
  onBoot?: (run: RunResult) => void;
}

/** Run a scenario on a fresh machine; stops at the first failed expectation. Never throws for scenario content. */
export function runScenario(sc: Scenario, opts: RunOptions = {}): RunResult {
  const vars: Vars = new Map();
  const res: RunResult = {
    scenario: sc,
    ok: false,
    results: [],
    processes: new Map(),
    vars,
    totalSteps: countSteps(sc.steps, vars),
  };
  try {
    res.machine = bootMachine(sc.machine, opts.trace ?? false);
    res.processes = spawnProcesses(res.machine, sc.processes);
  } catch (e) {
    res.failure = { where: "machine", message: (e as Error).message, kind: "scenario" };
    return res;
  }
  opts.onBoot?.(res);
  const m = res.machine;
  const env = {
    m,
    procs: res.processes,
    defaultProc: sc.processes[0].name,
    vars,
    profile: (sc.machine.kernel ?? "latest") as KernelProfile,
  };
  let done = 0;
  const runList = (steps: Step[], prefix: string, suffix: string): boolean => {
    for (const step of steps) {
      const where = `step ${prefix}${step.index}${step.line ? ` (line ${step.line})` : ""}${suffix}`;
      try {
        if (step.kind === "repeat") {
          const n = toNum(step.body, vars, `${where}: count`);
          const name = step.args.var === undefined ? "i" : String(step.args.var);
          for (let i = 0; i < n; i++) {
            vars.set(name, BigInt(i));
            if (!runList(step.steps ?? [], `${prefix}${step.index}.`, ` [${name}=${i}]`)) return false;
          }
          continue;
        }
        const before = lastSeq(m);
        const outcome = runOne(step, env, where);
        const failures = since(m.tracer.failures, before);
        const events = since(m.tracer.events, before);
        const r: StepResult = { step, where, outcome, captured: {}, failures, events };
        const failure = checkExpect(step, outcome, vars, where);
        if (failure === undefined) capture(step, outcome, vars, r, where);
        else r.failure = failure;
        res.results.push(r);
        opts.onStep?.(r, ++done, res.totalSteps, res);
        if (failure !== undefined) {
          res.failure = { where: `${where}: ${outcome.label}`, message: failure, kind: "expectation" };
          return false;
        }
      } catch (e) {
        if (e instanceof ScenarioError || e instanceof NotModelledError) {
          res.failure = {
            where,
            message: e.message,
            kind: e instanceof NotModelledError ? "not-modelled" : "scenario",
          };
          return false;
        }
        throw e;
      }
    }
    return true;
  };
  res.ok = runList(sc.steps, "", "");
  return res;
}

/** The newest trace sequence number seen so far (the tracer numbers every call). */
function lastSeq(m: Machine): number {
  return Math.max(m.tracer.events.at(-1)?.seq ?? 0, m.tracer.failures.at(-1)?.seq ?? 0);
}

/** The tail of a list of events with seq above `seq` (walks back from the end: O(calls of one step)). */
function since(list: readonly TraceEvent[], seq: number): TraceEvent[] {
  let i = list.length;
  while (i > 0 && list[i - 1].seq > seq) i--;
  return list.slice(i);
}

function runOne(step: Step, env: Parameters<typeof execStep>[1], where: string): Outcome {
  const { m, vars } = env;
  switch (step.kind) {
    case "check_dma":
      return { label: "check_dma", checkFailure: checkDma(m, step.body, vars, where) };
    case "check_counters":
      return { label: "check_counters", checkFailure: checkCounters(m, step.body, vars, where) };
    case "check_invariants":
      return { label: "check_invariants", checkFailure: checkInvariants(m) };
    case "check_taint":
      return { label: "check_taint", checkFailure: checkTaint(m, step.body, where) };
    default:
      return execStep(step, env, where);
  }
}

function capture(step: Step, o: Outcome, vars: Vars, r: StepResult, where: string): void {
  if (step.as !== undefined) {
    if (o.main === undefined) {
      throw new ScenarioError(
        `${where}: ${o.label} gives nothing to keep in $${step.as} (it failed, or use capture:)`,
      );
    }
    vars.set(step.as, o.main);
    r.captured[step.as] = o.main;
  }
  for (const [name, field] of Object.entries(step.capture ?? {})) {
    let v: bigint | undefined;
    if (field === "ret" && o.ret !== undefined) v = BigInt(o.ret);
    else if (o.out !== undefined && Object.hasOwn(o.out, field)) v = o.out[field];
    else if (o.data !== undefined) v = wordAt(o.data, field);
    if (v === undefined) {
      throw new ScenarioError(
        `${where}: capture ${name}: ${o.label} has no output "${field}"${o.out ? ` (fields: ${Object.keys(o.out).join(", ")})` : ""}`,
      );
    }
    vars.set(name, v);
    r.captured[name] = v;
  }
}

/** "u32", "u64@8", "u16@0x24": a little-endian word of a read's bytes. */
function wordAt(b: Uint8Array, spec: string): bigint | undefined {
  const m = /^u(8|16|32|64)(?:@(0x[0-9a-f]+|\d+))?$/i.exec(spec);
  if (!m) return undefined;
  const size = Number(m[1]) / 8;
  const off = m[2] ? Number(m[2]) : 0;
  if (off + size > b.length) return undefined;
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i]);
  return v;
}

function countSteps(steps: Step[], vars: Vars): number {
  let n = 0;
  for (const s of steps) {
    if (s.kind === "repeat") {
      let k = 1;
      try {
        k = toNum(s.body, vars, "repeat");
      } catch {
        // a count that depends on a variable: estimate one pass
      }
      n += k * countSteps(s.steps ?? [], vars);
    } else n++;
  }
  return n;
}
