import type { Scenario } from "../scenario/index.js";
import { errnoName } from "../uapi/errno.js";
import { eventJson, execute, exitCode, failureLines, profileOf, toJson } from "./common.js";
import type { CliContext } from "./main.js";
import { formatTraceEvent } from "./trace-format.js";

/**
 * What an errno usually means on these interfaces (uapi.md §7). The model's
 * own reason, printed above it, names the exact rule that fired.
 */
export const ERRNO_MEANING: Record<string, string> = {
  EPERM: "the caller lacks a capability the operation needs (CAP_SYS_RAWIO, CAP_SYS_RESOURCE, ...)",
  ENOENT:
    "no such path, object ID or mapping (iommufd UNMAP: nothing mapped in the range, or an area only partly covered)",
  EBADF: "the fd is not open",
  EBADFD: "the fd is open but is the wrong kind of file (e.g. not an iommufd)",
  EFAULT: "a user pointer does not point at mapped memory",
  EBUSY: "the object or device is in use (open elsewhere, still referenced, or pinned)",
  EEXIST: "the IOVA range overlaps an existing mapping; existing IOVA is never replaced",
  EINVAL:
    "an argument breaks a rule of the call (size below the minimum, misaligned IOVA, no READ/WRITE, call made in the wrong state)",
  ENOTTY: "no such ioctl on this kind of file or kernel (or the request's size/direction bits are wrong)",
  EOPNOTSUPP: "unknown flags, non-zero reserved fields, or an unsupported op",
  E2BIG: "the user struct is longer than the kernel's and the extra bytes are not zero",
  EOVERFLOW: "an IOVA or length at or above ULONG_MAX, or start + length wraps",
  ENOSPC: "no free IOVA hole large enough in the allowed ranges",
  ENOMEM: "out of memory, or RLIMIT_MEMLOCK would be exceeded by pinning",
  ENODEV: "the thing the call needs is not there (no compat IOAS, no IOMMU for the device)",
  EMSGSIZE: "the user array is too small; the needed count was written back",
  ESRCH: "the process has exited",
  EIO: "an internal model error (a bug in the simulator, counted in counters().internalErrors)",
};

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
