import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import "./bridge-cases.js";
import "./foreign-cases.js";
import "./hugetlb-cases.js";
import "./ioat-cases.js";
import "./iommufd-cases.js";
import "./pt-cases.js";
import "./syscall-cases.js";
import { allSuites, type BenchSuite, median } from "./registry.js";

/**
 * npm run bench [-- --json] [--runs N] [--quick] [--suite name]
 * Runs every registered suite N times (default 5, after 3 unmeasured runs) and the C references
 * (ptref.c, a page table in C, and bench/syscallref.c, the host kernel's own
 * system calls; each built with cc -O2 in a temp dir) N times; reports medians
 * and ratios ours/C (`ratio_K`, `c_K`) and ours/host (`X_ratio`, `X_host_ns`).
 * With --json: one JSON line.
 *
 * Each suite runs in a Node process of its own (this script with --child),
 * so no suite pays for the garbage or the JIT state another one left: a
 * 64 GiB map leaves a heap whose collection lands in the next suite's
 * millisecond-long timing windows otherwise.
 */
const args = process.argv.slice(2);
const json = args.includes("--json");
const quick = args.includes("--quick");
const child = args.includes("--child");
const runsArg = args.indexOf("--runs");
const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : 5;
const suiteArg = args.indexOf("--suite");
const only = suiteArg >= 0 ? args[suiteArg + 1] : undefined;

function findPtref(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const root = resolve(here, "..", "..");
  for (const p of ["/work/shared/bench/ptref.c", join(root, "..", "shared", "bench", "ptref.c")]) {
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Build a C reference with cc -O2 in a temp dir and run it `runs` times: its JSON lines, or null. */
function runCProgram(src: string | undefined, cargs: string[]): Record<string, number>[] | null {
  if (src === undefined) return null;
  const dir = mkdtempSync(join(tmpdir(), "benchref-"));
  const exe = join(dir, "ref");
  try {
    execFileSync("cc", ["-O2", "-o", exe, src], { stdio: "ignore" });
  } catch {
    return null;
  }
  const out: Record<string, number>[] = [];
  for (let i = 0; i < runs; i++) out.push(JSON.parse(execFileSync(exe, cargs, { encoding: "utf8" })));
  return out;
}

function runC(): Record<string, number>[] | null {
  return runCProgram(findPtref(), quick ? ["4096", "512"] : []);
}

/** The host kernel's system calls (bench/syscallref.c in the repository). */
function runHost(): Record<string, number>[] | null {
  const src = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "bench", "syscallref.c");
  return runCProgram(existsSync(src) ? src : undefined, quick ? ["2000"] : []);
}

/** The suite's measured samples, in this process. */
function runHere(s: BenchSuite): Record<string, number>[] {
  // unmeasured runs so the JIT has compiled the hot paths (ptref.c is compiled ahead of time):
  // at least two, because creating the second instance of each class turns
  // V8's const fields mutable, which deoptimizes what the first run compiled;
  // a third because the first run after that still often lands in a recompile
  s.run({ quick });
  s.run({ quick });
  s.run({ quick });
  const samples: Record<string, number>[] = [];
  for (let i = 0; i < runs; i++) samples.push(s.run({ quick }));
  return samples;
}

/** The suite's samples from a fresh Node process running this script with --child. */
function runIsolated(s: BenchSuite): Record<string, number>[] {
  const cargs = [...process.execArgv, fileURLToPath(import.meta.url), "--child", "--suite", s.name];
  cargs.push("--runs", String(runs));
  if (quick) cargs.push("--quick");
  return JSON.parse(execFileSync(process.execPath, cargs, { encoding: "utf8", maxBuffer: 1 << 24 }));
}

if (child) {
  const s = allSuites().find((x) => x.name === only);
  if (s === undefined) throw new Error(`bench: no suite ${only}`);
  process.stdout.write(`${JSON.stringify(runHere(s))}\n`);
  process.exit(0);
}

const result: Record<string, number | null> = {};
const cRuns = runC();
const hostRuns = runHost();
/** Keys computed from a host figure (not rows of the text table). */
const derived = new Set<string>();
for (const s of allSuites()) {
  if (only !== undefined && s.name !== only) continue;
  const samples = runIsolated(s);
  for (const k of Object.keys(samples[0])) {
    const v = median(samples.map((x) => x[k]));
    const hk = s.host?.[k];
    if (hk !== undefined) {
      // syscall_X_ns -> syscall_X_host_ns, syscall_X_ratio
      const base = k.replace(/_ns$/, "");
      const hv = hostRuns ? median(hostRuns.map((x) => x[hk])) : null;
      result[k] = round(v);
      result[`${base}_host_ns`] = hv === null ? null : round(hv);
      result[`${base}_ratio`] = hv === null || hv === 0 ? null : round(v / hv);
      derived.add(`${base}_host_ns`).add(`${base}_ratio`);
      continue;
    }
    const ck = s.cRef?.[k];
    if (ck === undefined) {
      // the issue's key names stand as they are; only a suite's checksum is prefixed
      if (k === "check") result[`${s.name}_check`] = v;
      else if (k in result) throw new Error(`bench: two suites report ${k}`);
      else result[k] = round(v);
      continue;
    }
    result[k] = round(v);
    const cv = cRuns ? median(cRuns.map((x) => x[ck])) : null;
    result[`c_${k}`] = cv === null ? null : round(cv);
    result[`ratio_${k}`] = cv === null || cv === 0 ? null : round(v / cv);
  }
}
if (cRuns) result.c_check = cRuns[0].check;

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

if (json) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  const hostOf = (k: string) => `${k.replace(/_ns$/, "")}_host_ns`;
  const ratioOf = (k: string) => (`${hostOf(k)}` in result ? `${k.replace(/_ns$/, "")}_ratio` : `ratio_${k}`);
  const rows = Object.keys(result).filter(
    (k) => !k.startsWith("c_") && !k.startsWith("ratio_") && !derived.has(k),
  );
  const w = Math.max(...rows.map((r) => r.length));
  process.stdout.write(
    `${"case".padEnd(w)}  ${"ours".padStart(10)}  ${"C".padStart(10)}  ${"ours/C".padStart(8)}\n`,
  );
  for (const k of rows) {
    const f = (v: number | null | undefined) => (v === null || v === undefined ? "-" : String(v));
    process.stdout.write(
      `${k.padEnd(w)}  ${f(result[k]).padStart(10)}  ${f(result[`c_${k}`] ?? result[hostOf(k)]).padStart(10)}  ${f(result[ratioOf(k)]).padStart(8)}\n`,
    );
  }
  process.stdout.write(
    `(median of ${runs} runs${quick ? ", quick" : ""}; ns per operation; C: ptref.c, or the host kernel for syscall_*)\n`,
  );
}
