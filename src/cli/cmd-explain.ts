import type { Scenario } from "../scenario/index.js";
import { errnoName } from "../uapi/errno.js";
import { eventJson, execute, exitCode, failureLines, profileOf, toJson } from "./common.js";
import { ERRNO_MEANING } from "./errno-meaning.js";
import type { CliContext } from "./main.js";
import { formatTraceEvent } from "./trace-format.js";

/** `iommufd-sim explain <scenario>`: every failed call of the run and the rule behind its errno. */
export function cmdExplain(ctx: CliContext, sc: Scenario): number {
  const { out, opts } = ctx;
  const r = execute(ctx, sc, true);
  const profile = profileOf(sc);
  const items: Record<string, unknown>[] = [];
  for (const sr of r.results) {
    for (const ev of sr.failures) {
      // expected: the step asked for exactly this errno (or accepts anything)
      const expected = sr.step.expect?.any === true || sr.step.expect?.errno === errnoName(ev.errno ?? 0);
      const call = formatTraceEvent(ev, profile, { pid: false }).replace(/ = -1 .*$/, "");
      const name = errnoName(ev.errno ?? 0);
      items.push({
        ...eventJson(ev, call),
        step: sr.where,
        errnoName: name,
        expected,
        meaning: ERRNO_MEANING[name] ?? null,
      });
      if (opts.json) continue;
      out.line(
        `${out.paint("bold", sr.where)}${sr.step.note ? out.paint("dim", ` -- ${sr.step.note.split("\n")[0]}`) : ""}`,
      );
      out.line(`  ${call}`);
      out.line(
        `  = -1 ${out.paint(expected ? "yellow" : "red", name)}${expected ? " (expected by the scenario)" : ""}`,
      );
      out.line(`  why: ${ev.reason || "(no reason recorded)"}`);
      if (ERRNO_MEANING[name])
        out.line(out.paint("dim", `  ${name} here generally means: ${ERRNO_MEANING[name]}`));
      out.line();
    }
  }
  if (opts.json) {
    out.always(toJson({ ok: r.ok, scenario: sc.name, failedCalls: items, failure: r.failure ?? null }));
    return exitCode(r);
  }
  if (items.length === 0) out.line("No call failed in this run.");
  else out.line(`${items.length} failed call(s).`);
  if (!r.ok) for (const l of failureLines(ctx, r)) out.error(l);
  return exitCode(r);
}
