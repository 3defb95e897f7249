import { errnoLabel, type RunResult, type Scenario, type StepResult } from "../scenario/index.js";
import { errnoName } from "../uapi/errno.js";
import { countSteps, execute, exitCode, failureLines, PROGRESS_THRESHOLD, toJson } from "./common.js";
import type { CliContext } from "./main.js";

/** `iommufd-sim run <scenario>`: run it and check every expectation. */
export function cmdRun(ctx: CliContext, sc: Scenario): number {
  const { out, opts } = ctx;
  if (!opts.json)
    out.verbose(out.paint("bold", `${sc.name}${sc.description ? `: ${sc.description.split("\n")[0]}` : ""}`));
  // Keep the trace (for the failing call's decoded struct) unless the run is long.
  const r = execute(ctx, sc, countSteps(sc) <= PROGRESS_THRESHOLD, (sr) => {
    if (!opts.json) out.verbose(stepLine(ctx, sr));
  });
  if (opts.json) {
    out.always(toJson(runJson(r)));
    return exitCode(r);
  }
  if (r.ok) {
    const n = r.results.length;
    const checked = r.results.filter(
      (x) => x.step.expect !== undefined || x.step.kind.startsWith("check_"),
    ).length;
    out.line(
      `${out.paint("green", "PASS")} ${sc.file ?? sc.name} (${n} steps, ${checked} with expectations)`,
    );
  } else {
    for (const l of failureLines(ctx, r)) out.error(l);
  }
  return exitCode(r);
}

export function stepLine(ctx: CliContext, sr: StepResult): string {
  const { out } = ctx;
  const mark = sr.failure ? out.paint("red", "✗") : out.paint("green", "✓");
  const caps = Object.entries(sr.captured)
    .map(([k, v]) => `$${k}=${typeof v === "bigint" ? fmtVar(v) : JSON.stringify(v)}`)
    .join(" ");
  const res = sr.outcome.said !== undefined ? "" : ` ${errnoLabel(sr.outcome)}`;
  return `  ${mark} ${sr.where} ${sr.outcome.label}${res}${caps ? out.paint("dim", `  ${caps}`) : ""}`;
}

function fmtVar(v: bigint): string {
  return v > 0xffffn ? `0x${v.toString(16)}` : v.toString();
}

/** The machine-readable result of a run (docs/cli.md, "--json"). */
export function runJson(r: RunResult): Record<string, unknown> {
  return {
    ok: r.ok,
    scenario: r.scenario.name,
    file: r.scenario.file ?? null,
    steps: r.results.map((sr) => {
      const o = sr.outcome;
      const s: Record<string, unknown> = {
        where: sr.where,
        step: sr.step.index,
        kind: sr.step.kind,
        label: o.label,
      };
      if (sr.step.line) s.line = sr.step.line;
      if (o.ret !== undefined) s.ret = o.ret;
      if (o.errno !== undefined) {
        s.errno = errnoName(o.errno);
        s.reason = o.reason ?? "";
      }
      if (o.out !== undefined) s.out = o.out;
      if (o.data !== undefined) s.data = o.data;
      if (o.entries !== undefined) s.entries = o.entries;
      if (o.text !== undefined) s.text = o.text;
      if (Object.keys(sr.captured).length) s.captured = sr.captured;
      if (sr.failure) s.failure = sr.failure;
      return s;
    }),
    failure: r.failure ?? null,
    counters: r.machine?.debug.counters() ?? null,
  };
}
