/**
 * The kselftest harness's TAP output (tools/testing/selftests/kselftest_harness.h):
 * a plan `1..N`, per test a `#  RUN name ...` line, `#` diagnostics, and one
 * `ok N name [# SKIP reason]` / `not ok N name` result line.
 */

export type Status = "pass" | "fail" | "skip";

export interface TapResult {
  name: string;
  status: Status;
  /** Why it failed or skipped: the SKIP text, or the harness's first diagnostics (assertion, timeout, signal). */
  why: string;
}

export interface TapRun {
  /** The plan's N, or -1 when no plan line was printed. */
  plan: number;
  results: TapResult[];
  /** The harness's own "Totals:" line, when the run got that far. */
  totals: string | undefined;
  /** `1..0 # SKIP reason`: the whole program skipped (e.g. no SR-IOV), with the reason. */
  skipAll?: string;
}

const RESULT = /^(not ok|ok) (\d+) (\S+)(?:\s+#\s*(SKIP|XFAIL|TODO)\s*(.*))?$/;
/** Harness bookkeeping lines that say nothing about the cause. */
const NOISE = /^#\s+(RUN|OK|FAIL|SKIP|XFAIL)\s{2,}|^#\s+(RUN|OK|FAIL)\s+\S+/;

function diagnostic(lines: string[]): string {
  const useful = lines
    .map((l) =>
      l
        .replace(/^#\s?/, "")
        .trim()
        // __FILE__ is the build's absolute path: keep the file name
        .replace(/^\S*\/([^/\s]+\.[ch]:\d+)/, "$1"),
    )
    .filter((l) => l.length > 0 && !NOISE.test(`# ${l}`) && !/^(RUN|OK|FAIL)\s/.test(l));
  return useful.slice(0, 2).join(" / ");
}

export function parseKselftestTap(text: string): TapRun {
  const run: TapRun = { plan: -1, results: [], totals: undefined };
  let diag: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    const plan = /^1\.\.(\d+)(?:\s+#\s*SKIP\s*(.*))?$/.exec(line);
    if (plan) {
      run.plan = Number(plan[1]);
      if (plan[2] !== undefined) run.skipAll = plan[2];
      continue;
    }
    if (/^#\s+RUN\s/.test(line)) {
      diag = [];
      continue;
    }
    const tot = /^# Totals: (.*)$/.exec(line);
    if (tot) {
      run.totals = tot[1];
      continue;
    }
    const r = RESULT.exec(line);
    if (r) {
      const ok = r[1] === "ok";
      const directive = r[4];
      let status: Status = ok ? "pass" : "fail";
      let why = "";
      if (directive === "SKIP") {
        status = "skip";
        why = r[5] ?? "";
      } else if (directive === "XFAIL") {
        why = `expected failure: ${r[5] ?? ""}`;
      } else if (!ok) {
        why = diagnostic(diag) || "failed (no diagnostics)";
      }
      run.results.push({ name: r[3], status, why });
      diag = [];
      continue;
    }
    if (line.startsWith("#")) diag.push(line);
  }
  return run;
}

/** What the committed expectations say about one binary. */
export interface Expected {
  /** test name -> the status recorded when the expectations were last updated */
  status: Record<string, Status>;
  /** test name -> why it does not pass (hand-written; shown in docs/conformance.md) */
  why?: Record<string, string>;
  /**
   * The program is known to stop before its TAP plan (an assertion in its
   * main or library setup), and why. Without it, no TAP output fails the run.
   */
  noTap?: string;
}

export interface Verdict {
  /** Recorded as passing, now not passing: these fail CI. */
  regressions: { name: string; now: Status | "missing"; why: string }[];
  /** Not recorded as passing, now passing: update the expectations. */
  improvements: string[];
  /** In the run but not in the expectations (a new test case). */
  unknown: string[];
}

export function compare(expected: Expected, run: TapRun): Verdict {
  const now = new Map(run.results.map((r) => [r.name, r]));
  const v: Verdict = { regressions: [], improvements: [], unknown: [] };
  for (const [name, was] of Object.entries(expected.status)) {
    const r = now.get(name);
    if (was === "pass" && r?.status !== "pass") {
      v.regressions.push({
        name,
        now: r?.status ?? "missing",
        why: r?.why ?? "no result line (the run stopped)",
      });
    } else if (was !== "pass" && r?.status === "pass") {
      v.improvements.push(name);
    }
  }
  for (const r of run.results) if (!(r.name in expected.status)) v.unknown.push(r.name);
  return v;
}

export function counts(run: TapRun): Record<Status, number> {
  const c: Record<Status, number> = { pass: 0, fail: 0, skip: 0 };
  for (const r of run.results) c[r.status]++;
  return c;
}
