/**
 * `npm run conformance`: build the kernel's own selftests (cached,
 * scripts/selftests/build.sh), run each unmodified binary against the model
 * through `iommufd-sim exec`, compare with the committed expectations
 * (test/conformance/kselftest-expected.json) and write the per-test table
 * into docs/conformance.md. Exits 1 when a test recorded as passing does not
 * pass, or a binary could not be built or run.
 *
 *   npm run conformance -- [--tree 6.12|7.2|vfio|noiommu]... [--bin NAME]...
 *                          [--update] [--no-docs] [--timeout SECONDS] [--hugepages N]
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { renderSection, replaceSection } from "./report.js";
import { execArgs, PROGRAMS, programEnv, TREES, type Tree } from "./suites.js";
import { compare, counts, type Expected, parseKselftestTap, type TapRun, type Verdict } from "./tap.js";

export { execArgs, PROGRAMS, TREES };

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const EXPECTED_FILE = join(ROOT, "test/conformance/kselftest-expected.json");
const DOC_FILE = join(ROOT, "docs/conformance.md");

export type ExpectedFile = Record<string, Record<string, Expected & { version?: string }>>;

interface Options {
  help: boolean;
  trees: string[];
  bins: string[];
  update: boolean;
  docs: boolean;
  timeoutSec: number;
  /** 2 MiB hugetlb pages to make sure are free on the host (the program's memory is real memory). */
  hugepages: number;
}

export interface BinaryRun {
  tree: string;
  bin: string;
  version: string;
  run: TapRun;
  exitCode: number | null;
  timedOut: boolean;
  seconds: number;
  outputTail: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    help: false,
    trees: [],
    bins: [],
    update: false,
    docs: true,
    timeoutSec: 175,
    hugepages: HUGEPAGES,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") o.help = true;
    else if (a === "--tree") o.trees.push(argv[++i]);
    else if (a === "--bin") o.bins.push(argv[++i]);
    else if (a === "--update") o.update = true;
    else if (a === "--no-docs") o.docs = false;
    else if (a === "--timeout") o.timeoutSec = Number(argv[++i]);
    else if (a === "--hugepages") o.hugepages = Number(argv[++i]);
    else throw new Error(`unknown option ${a}`);
  }
  for (const t of o.trees) if (!(TREES as readonly string[]).includes(t)) throw new Error(`no tree ${t}`);
  const known = new Set(Object.values(PROGRAMS).flat());
  for (const b of o.bins) if (!known.has(b)) throw new Error(`no binary ${b}`);
  if (o.trees.length === 0) {
    // --bin alone picks the trees that have it
    o.trees = TREES.filter((t) => o.bins.length === 0 || PROGRAMS[t].some((b) => o.bins.includes(b)));
  }
  if (!(o.timeoutSec > 0)) throw new Error("--timeout needs a positive number of seconds");
  if (!Number.isInteger(o.hugepages) || o.hugepages < 0) throw new Error("--hugepages needs a count");
  return o;
}

/**
 * The selftests' MAP_HUGETLB buffers are the program's real memory, so the
 * host needs free 2 MiB hugetlb pages (iommufd_dirty_tracking's 128M_huge
 * variant maps 64 of them; the kernel's own selftest scripts reserve a pool
 * the same way). As root, grow the pool for the run and put it back after.
 */
const HUGEPAGES = 80;
const HUGE_DIRS = { "2M": "hugepages-2048kB", "1G": "hugepages-1048576kB" } as const;
/** vfio_dma_mapping_test's `…_hugetlb_1gb` variants map one 1 GiB page each (one at a time). */
const HUGEPAGES_1G = 1;

function readCount(path: string): number | undefined {
  try {
    return Number(readFileSync(path, "utf8").trim());
  } catch {
    return undefined;
  }
}

export function reserveHugepages(
  want: number,
  log: (s: string) => void,
  size: keyof typeof HUGE_DIRS = "2M",
): () => void {
  const NR_HUGEPAGES = `/sys/kernel/mm/hugepages/${HUGE_DIRS[size]}/nr_hugepages`;
  const total = readCount(NR_HUGEPAGES);
  const free = readCount(`/sys/kernel/mm/hugepages/${HUGE_DIRS[size]}/free_hugepages`);
  if (want === 0 || total === undefined || free === undefined || free >= want) return () => {};
  const target = total + (want - free);
  try {
    writeFileSync(NR_HUGEPAGES, String(target));
  } catch {
    log(
      `conformance: ${free} free ${size} hugetlb pages and ${NR_HUGEPAGES} is not writable: MAP_HUGETLB tests will fail`,
    );
    return () => {};
  }
  // the kernel grows the pool only as far as it finds contiguous memory
  const got = readCount(NR_HUGEPAGES);
  log(`conformance: hugetlb pool ${total} -> ${got} pages of ${size} for the run`);
  return () => {
    // only if nobody changed it meanwhile
    if (readCount(NR_HUGEPAGES) === got && got !== total) {
      try {
        writeFileSync(NR_HUGEPAGES, String(total));
      } catch {
        // left as it is
      }
    }
  };
}

/**
 * scripts/selftests/build.sh: tree -> [bin dir, version], or [undefined, why]
 * when the tree's sources cannot be had here (the noiommu series' file where
 * GitHub is out of reach: scripts/selftests/noiommu/README.md).
 */
function build(trees: string[]): Map<string, [string | undefined, string]> {
  const out = new Map<string, [string | undefined, string]>();
  for (const t of trees) {
    const r = spawnSync("bash", [join(ROOT, "scripts/selftests/build.sh"), t], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (r.status !== 0) throw new Error(`scripts/selftests/build.sh ${t} failed (exit ${r.status})`);
    const [tree, dir, ...rest] = r.stdout.trim().split(/\s+/);
    out.set(tree, dir === "-" ? [undefined, rest.join(" ")] : [dir, rest[0]]);
  }
  return out;
}

function runOne(
  tree: Tree,
  bin: string,
  dir: string,
  version: string,
  timeoutSec: number,
): Promise<BinaryRun> {
  const cwd = mkdtempSync(join(tmpdir(), "iommufd-sim-kselftest-"));
  const logDir = join(dir, "..", "runs");
  mkdirSync(logDir, { recursive: true });
  // The harness logs assertions on stderr and results on stdout (flushed around each
  // test's fork): one file for both keeps them in order, as `2>&1` would.
  const outFile = join(logDir, `${bin}.log`);
  const out = openSync(outFile, "w");
  const started = Date.now();
  return new Promise((done) => {
    // its own process group, so a global timeout ends the program and everything it forked
    const child = spawn(
      process.execPath,
      [join(ROOT, "bin/iommufd-sim.js"), ...execArgs(tree, bin, join(dir, bin))],
      {
        cwd,
        detached: true,
        env: { ...process.env, ...programEnv(tree, bin) },
        stdio: ["ignore", out, out],
      },
    );
    closeSync(out);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutSec * 1000);
    child.on("close", (code) => {
      clearTimeout(timer);
      rmSync(cwd, { recursive: true, force: true });
      const text = readFileSync(outFile, "utf8");
      const run = parseKselftestTap(text);
      // exit 4 (KSFT_SKIP) before any plan: the program skipped as a whole (e.g. no library driver)
      if (run.plan < 0 && code === 4) {
        run.plan = 0;
        run.skipAll = text.trim().split("\n")[0] ?? "exit 4 (KSFT_SKIP)";
      }
      done({
        tree,
        bin,
        version,
        run,
        exitCode: code,
        timedOut,
        seconds: (Date.now() - started) / 1000,
        outputTail: text.trim().split("\n").slice(-5).join("\n"),
      });
    });
  });
}

/** The assertion a program died on before its plan, for the record until someone explains it. */
function firstAssertion(tail: string): string {
  const expr = /Expression: (.*)/.exec(tail)?.[1];
  const at = /([\w.-]+\.c:\d+): Assertion Failure/.exec(tail)?.[1];
  return expr !== undefined
    ? `stops before its plan: ${at ?? "an assertion"} ${expr}`
    : `stops before its plan: ${tail.split("\n")[0]}`;
}

function loadExpected(): ExpectedFile {
  try {
    return JSON.parse(readFileSync(EXPECTED_FILE, "utf8")) as ExpectedFile;
  } catch {
    return {};
  }
}

function line(r: BinaryRun, v: Verdict): string {
  const c = counts(r.run);
  const plan = r.run.plan < 0 ? "no TAP plan" : `plan ${r.run.plan}`;
  const extra = r.timedOut
    ? ", TIMED OUT"
    : r.run.skipAll !== undefined
      ? ", skipped as a whole"
      : r.run.totals === undefined
        ? ", ended early"
        : "";
  return (
    `${r.tree.padEnd(7)} ${r.bin.padEnd(30)} pass ${c.pass} fail ${c.fail} skip ${c.skip} (${plan}${extra}, ` +
    `${r.seconds.toFixed(0)} s)  regressions ${v.regressions.length}, newly passing ${v.improvements.length}`
  );
}

/** `npm run conformance -- --help`. */
export function usage(): string {
  const bins = TREES.map((t) => `  ${t.padEnd(8)} ${PROGRAMS[t].join(", ")}`).join("\n");
  return `npm run conformance -- [OPTIONS]

Builds (cached) and runs the kernel's own selftests, unmodified, through
iommufd-sim exec; compares each test with test/conformance/kselftest-expected.json
and exits 1 when a test recorded as passing does not pass.

  --tree T        only tree T (repeatable): ${TREES.join(", ")}
  --bin NAME      only binary NAME (repeatable; alone it picks the trees that have it)
  --update        record this run's results in kselftest-expected.json (the why texts
                  of tests still not passing are kept)
  --no-docs       do not rewrite the table in docs/conformance.md (only a full run does)
  --timeout S     seconds per binary (default 175)
  --hugepages N   free 2 MiB hugetlb pages to make sure the host has (default ${HUGEPAGES})
  --help          this text

Binaries by tree:
${bins}

One test by hand, with the strace-style trace of every call into the model:
  npx iommufd-sim exec --trace FILE ${execArgs("7.2", "iommufd", "BIN").slice(1).join(" ")} -r FIXTURE.VARIANT.TEST
  (BIN: ~/.cache/iommufd-sim/selftests/7.2/bin/iommufd; the harness's -l lists the tests, -f/-v/-t
  include a fixture, variant or test, -F/-V/-T exclude one: the first filter that matches decides)
`;
}

export async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  if (o.help) {
    process.stdout.write(usage());
    return 0;
  }
  const built = build(o.trees);
  const expected = loadExpected();
  const runs: BinaryRun[] = [];
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const release2m = reserveHugepages(o.hugepages, log);
  const release1g =
    o.trees.includes("vfio") && o.hugepages > 0 ? reserveHugepages(HUGEPAGES_1G, log, "1G") : () => {};
  const release = () => {
    release1g();
    release2m();
  };
  const unavailable: string[] = [];
  try {
    for (const tree of o.trees as Tree[]) {
      const [dir, version] = built.get(tree)!;
      for (const bin of PROGRAMS[tree]) {
        if (o.bins.length > 0 && !o.bins.includes(bin)) continue;
        if (dir === undefined) {
          unavailable.push(`${tree} ${bin}: not run, ${version}`);
          continue;
        }
        const args = execArgs(tree, bin, bin);
        const shown = args.slice(1, args.indexOf("--")).join(" ");
        process.stderr.write(`conformance: ${tree} ${bin} (exec ${shown})\n`);
        runs.push(await runOne(tree, bin, dir, version, o.timeoutSec));
      }
    }
  } finally {
    release();
  }
  let failed = false;
  const summary: string[] = [...unavailable];
  for (const r of runs) {
    const exp = expected[r.tree]?.[r.bin] ?? { status: {} };
    const v = compare(exp, r.run);
    summary.push(line(r, v));
    for (const g of v.regressions) summary.push(`  REGRESSION ${g.name}: now ${g.now} (${g.why})`);
    if (v.improvements.length > 0 && !o.update) {
      summary.push(`  newly passing (run with --update to record): ${v.improvements.join(", ")}`);
    }
    if (r.run.skipAll !== undefined) summary.push(`  the whole program skipped: ${r.run.skipAll}`);
    const knownNoTap = exp.noTap !== undefined && !Object.values(exp.status).includes("pass");
    if (r.run.plan < 0) {
      summary.push(
        `  no TAP output; exec exit ${r.exitCode}${knownNoTap ? ` (recorded: ${exp.noTap})` : ""}; output:\n` +
          r.outputTail.replace(/^/gm, "    "),
      );
      if (!knownNoTap && !o.update) failed = true;
    }
    if (v.regressions.length > 0) failed = true;
    if (o.update) {
      const old = expected[r.tree]?.[r.bin];
      const status: Expected["status"] = {};
      for (const t of r.run.results) status[t.name] = t.status;
      const why: Record<string, string> = {};
      for (const [k, w] of Object.entries(old?.why ?? {}))
        if (status[k] !== undefined && status[k] !== "pass") why[k] = w;
      expected[r.tree] ??= {};
      expected[r.tree][r.bin] = { version: r.version, status, why };
      if (r.run.plan < 0) expected[r.tree][r.bin].noTap = old?.noTap ?? firstAssertion(r.outputTail);
    }
  }
  if (o.update) writeFileSync(EXPECTED_FILE, `${JSON.stringify(expected, null, 2)}\n`);
  // the table covers every binary, so only a full run rewrites it
  if (o.docs && o.trees.length === TREES.length && o.bins.length === 0 && unavailable.length === 0) {
    const doc = readFileSync(DOC_FILE, "utf8");
    writeFileSync(DOC_FILE, replaceSection(doc, renderSection(runs, expected)));
  }
  process.stdout.write(`${summary.join("\n")}\n`);
  process.stdout.write(failed ? "conformance: FAILED\n" : "conformance: ok\n");
  return failed ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`conformance: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
