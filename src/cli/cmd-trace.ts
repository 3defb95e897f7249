import type { Scenario } from "../scenario/index.js";
import { execute, exitCode, failureLines, profileOf } from "./common.js";
import type { CliContext } from "./main.js";
import { formatTraceEvent } from "./trace-format.js";

/**
 * `iommufd-sim trace <scenario>`: every system call of the run, strace-style,
 * printed as each step finishes (a long run streams). --verbose puts a
 * "# step N (line L): note" header above each step's calls.
 */
export function cmdTrace(ctx: CliContext, sc: Scenario): number {
  const { out, opts } = ctx;
  const profile = profileOf(sc);
  let calls = 0;
  const r = execute(ctx, sc, true, (sr) => {
    if (opts.verbosity === "verbose") {
      const note = sr.step.note ?? (sr.outcome.said ? sr.outcome.said : undefined);
      out.always(
        out.paint("dim", `# ${sr.where}: ${sr.outcome.label}${note ? ` -- ${note.split("\n")[0]}` : ""}`),
      );
    }
    for (const ev of sr.events) {
      const line = formatTraceEvent(ev, profile, { pid: opts.pid });
      out.always(ev.errno !== undefined ? out.paint("red", line) : line);
      calls++;
    }
  });
  if (!r.ok) for (const l of failureLines(ctx, r)) out.error(l);
  else out.verbose(out.paint("dim", `# ${calls} system calls; every expectation held`));
  return exitCode(r);
}
