// What every fuzzing command shares: the fast-check Command shape, the
// comparison of an outcome with the model's prediction, and the checks
// after every step (invariants, no internal error, the DMA log).
import type fc from "fast-check";
import { uapi } from "../index.js";
import { getFile, Violation } from "./model-ops.js";
import type { MFile, Model, Real } from "./world.js";

export { Violation };

export type Cmd = fc.Command<Model, Real>;

const fmt = (x: number) => (x < 0 ? `-${uapi.errnoName(-x)}` : String(x));

export function expectRc(r: Real | null, what: string, rc: number, want: number | readonly number[]): void {
  const ok = typeof want === "number" ? rc === want : want.includes(rc);
  if (!ok) {
    const w = typeof want === "number" ? fmt(want) : want.map(fmt).join("|");
    const why = r?.m.debug.failures().at(-1)?.reason;
    throw new Violation(
      `${what}: got ${fmt(rc)}, model expects ${w}${rc < 0 && why ? ` (kernel said: ${why})` : ""}`,
    );
  }
}

/**
 * After every command: invariants, no internal errors, every new DMA log
 * entry explained. Per step, page tables are read back only when they or
 * their domain's record changed; the check at the end of a sequence is full.
 */
export function checkMachine(real: Real, after: string, full = false): void {
  const v = real.m.debug.checkInvariants({ changedOnly: !full });
  if (v.length > 0) throw new Violation(`after ${after}: invariant violated: ${v.join("; ")}`);
}

export abstract class Base implements Cmd {
  /** Which live process the command acts on: the p-th (modulo) of those alive, resolved by check(). */
  readonly p: number = 0;
  P = -1;
  check(m: Readonly<Model>): boolean {
    this.P = livePick(m, this.p);
    return this.ok(m);
  }
  /** Whether the command can run on the model now (P is resolved). */
  abstract ok(m: Readonly<Model>): boolean;
  abstract act(m: Model, r: Real): void;
  abstract toString(): string;
  run(m: Model, r: Real): void {
    m.steps++;
    this.act(m, r);
    checkMachine(r, this.toString());
  }
}

/** The index of the pick-th live process (modulo their number), or -1. */
export function livePick(m: Readonly<Model>, pick: number): number {
  const live: number[] = [];
  m.procs.forEach((x, i) => {
    if (x.alive) live.push(i);
  });
  return live.length === 0 ? -1 : live[pick % live.length];
}

export const alive = (m: Readonly<Model>, p: number) => m.procs[p]?.alive === true;

/** Commands open files only while the process has fewer than this many (bounds the model's fd tables). */
export const MAX_FDS = 12;

/** Process p is alive and may open one more file. */
export const roomForFd = (m: Readonly<Model>, p: number) => alive(m, p) && m.procs[p].fds.size < MAX_FDS;

export const pick = <T>(xs: T[], i: number): T | undefined =>
  xs.length === 0 ? undefined : xs[i % xs.length];

/** The fds of process p whose file is of a kind (and passes a filter). */
export function fdsOf<K extends MFile["kind"]>(
  m: Readonly<Model>,
  p: number,
  kind: K,
  filter: (f: Extract<MFile, { kind: K }>, fd: number) => boolean = () => true,
): number[] {
  if (!alive(m, p)) return [];
  const out: number[] = [];
  for (const fd of [...m.procs[p].fds.keys()].sort((a, b) => a - b)) {
    const f = getFile(m, p, fd);
    if (f?.kind === kind && filter(f as Extract<MFile, { kind: K }>, fd)) out.push(fd);
  }
  return out;
}

export function fileOf<K extends MFile["kind"]>(m: Readonly<Model>, p: number, fd: number, _k: K) {
  return getFile(m, p, fd) as Extract<MFile, { kind: K }>;
}

/** An fd number open in no table of process p. */
export function strayFd(m: Readonly<Model>, p: number, i: number): number {
  let n = 3 + (i % 20);
  while (m.procs[p].fds.has(n)) n++;
  return n;
}

export const hex = (x: bigint | number) => `0x${x.toString(16)}`;
export const U64_MAX = (1n << 64n) - 1n;

export const minB = (a: bigint, b: bigint) => (a < b ? a : b);
export const maxB = (a: bigint, b: bigint) => (a > b ? a : b);
