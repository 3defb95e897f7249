/**
 * Bench registry: a suite is a named function returning named metrics
 * (ns per operation). A suite may name, for each metric, the key of the C
 * reference (ptref.c) that measures the same thing, or of the host kernel
 * reference (bench/syscallref.c); main.ts then reports that value and the ratio. Add a suite with registerSuite() from a module that
 * main.ts imports.
 */
export interface BenchSuite {
  name: string;
  /** Runs once and returns metric -> value (lower is better). */
  run(opts: BenchOpts): Record<string, number>;
  /** metric -> key in the C reference's JSON, for the metrics it has a twin of. */
  cRef?: Record<string, string>;
  /**
   * metric -> key in the host kernel reference's JSON (bench/syscallref.c):
   * main.ts reports metric `X_ns` with `X_host_ns` and `X_ratio`.
   */
  host?: Record<string, string>;
}

export interface BenchOpts {
  /** Shrink the work (smoke runs in tests). */
  quick: boolean;
}

const suites: BenchSuite[] = [];

export function registerSuite(s: BenchSuite): void {
  if (suites.some((x) => x.name === s.name)) throw new Error(`bench suite ${s.name} registered twice`);
  suites.push(s);
}

export function allSuites(): readonly BenchSuite[] {
  return suites;
}

export function median(xs: readonly number[]): number {
  const a = [...xs].sort((p, q) => p - q);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/** Wall-clock nanoseconds (the bench only; the model never reads a clock). */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}
