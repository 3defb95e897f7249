import { writeFileSync } from "node:fs";
import type { Machine } from "../index.js";
import { RecordError, type RunResult, recordScenario, type Scenario } from "../scenario/index.js";
import { execute, exitCode, failureLines } from "./common.js";
import type { CliContext } from "./main.js";

/** `iommufd-sim record <scenario.yaml> [-o out.yaml]`: re-record a scenario as a fully explicit one. */
export function cmdRecord(ctx: CliContext, sc: Scenario): number {
  const r = execute(ctx, sc, true);
  if (r.machine === undefined) {
    for (const l of failureLines(ctx, r)) ctx.out.error(l);
    return exitCode(r);
  }
  const code = writeRecording(ctx, r, sc, ctx.opts.output);
  if (code !== 0) return code;
  // what ran is recorded even when an expectation failed; the exit code still says so
  if (!r.ok) for (const l of failureLines(ctx, r)) ctx.out.error(l);
  return exitCode(r);
}

/** Write the recording of a run to `file` (stdout when undefined). 0, or the exit code of the failure. */
export function writeRecording(
  ctx: CliContext,
  r: RunResult,
  sc: Scenario,
  file: string | undefined,
): number {
  let yaml: string;
  try {
    const names = new Map([...r.processes].map(([n, p]) => [p.pid, n]));
    const opts: Parameters<typeof recordScenario>[1] = { name: sc.name, processNames: names };
    if (sc.description !== undefined) opts.description = sc.description;
    yaml = recordScenario(r.machine as Machine, opts);
  } catch (e) {
    if (!(e instanceof RecordError)) throw e;
    ctx.out.error(`iommufd-sim: cannot record this run: ${e.message}`);
    return 2;
  }
  if (file === undefined || file === "-") {
    ctx.out.always(yaml.trimEnd());
    return 0;
  }
  try {
    (ctx.io.writeFile ?? ((p: string, t: string) => writeFileSync(p, t)))(file, yaml);
  } catch (e) {
    ctx.out.error(
      `iommufd-sim: cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
    return 2;
  }
  return 0;
}
