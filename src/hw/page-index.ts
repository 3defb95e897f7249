/**
 * A sparse map from page numbers (pfns or virtual page numbers, integers
 * in [0, 2^53)) to non-negative integer values (below 2^53), held in typed-array chunks
 * of 512 entries (one 2 MiB block of pages). A 1 GiB pin touches 262144
 * pages: kept here it costs two array stores a page, no hashing and no
 * object, where a Map costs a rehash every doubling and an entry the GC
 * walks. Keys come back in ascending order.
 */
const SHIFT = 9;
const SPAN = 1 << SHIFT;
const MASK = SPAN - 1;

interface Chunk {
  /** value + 1; 0 = absent. */
  v: Float64Array;
  n: number;
}

export class PageIndex {
  private readonly chunks = new Map<number, Chunk>();
  private lastIdx = -1;
  private last: Chunk | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The value at `key`, or -1 when absent. */
  get(key: number): number {
    const c = this.chunk(Math.floor(key / SPAN));
    return c === undefined ? -1 : c.v[key & MASK] - 1;
  }

  has(key: number): boolean {
    return this.get(key) >= 0;
  }

  /** Set `key` to `value` (an integer, 0 <= value < 2^53 - 1). */
  set(key: number, value: number): void {
    const ci = Math.floor(key / SPAN);
    let c = this.chunk(ci);
    if (c === undefined) {
      c = { v: new Float64Array(SPAN), n: 0 };
      this.chunks.set(ci, c);
      this.lastIdx = ci;
      this.last = c;
    }
    const i = key & MASK;
    if (c.v[i] === 0) {
      c.n++;
      this.count++;
    }
    c.v[i] = value + 1;
  }

  /** Remove `key`; returns its value, or -1 when it was absent. */
  delete(key: number): number {
    const ci = Math.floor(key / SPAN);
    const c = this.chunk(ci);
    if (c === undefined) return -1;
    const i = key & MASK;
    const old = c.v[i] - 1;
    if (old < 0) return -1;
    c.v[i] = 0;
    this.count--;
    if (--c.n === 0) {
      this.chunks.delete(ci);
      if (this.lastIdx === ci) {
        this.lastIdx = -1;
        this.last = undefined;
      }
    }
    return old;
  }

  /** Every key in [first, last] that is present, ascending, with its value; chunks with nothing are skipped whole. */
  forEachIn(first: number, last: number, fn: (key: number, value: number) => void): void {
    if (last < first || this.count === 0) return;
    const c0 = Math.floor(first / SPAN);
    const c1 = Math.floor(last / SPAN);
    const idx =
      c1 - c0 + 1 > this.chunks.size
        ? [...this.chunks.keys()].filter((ci) => ci >= c0 && ci <= c1).sort((a, b) => a - b)
        : null;
    const visit = (ci: number) => {
      const c = this.chunks.get(ci);
      if (c === undefined) return;
      const base = ci * SPAN;
      const lo = Math.max(first, base) - base;
      const hi = Math.min(last, base + MASK) - base;
      const v = c.v;
      for (let i = lo; i <= hi; i++) if (v[i] !== 0) fn(base + i, v[i] - 1);
    };
    if (idx !== null) for (const ci of idx) visit(ci);
    else for (let ci = c0; ci <= c1; ci++) visit(ci);
  }

  /** Every key present, ascending. */
  keys(): number[] {
    const out: number[] = [];
    for (const ci of [...this.chunks.keys()].sort((a, b) => a - b)) {
      const v = this.chunks.get(ci)!.v;
      for (let i = 0; i < SPAN; i++) if (v[i] !== 0) out.push(ci * SPAN + i);
    }
    return out;
  }

  /** Every value present, in key order. */
  values(): number[] {
    const out: number[] = [];
    for (const ci of [...this.chunks.keys()].sort((a, b) => a - b)) {
      const v = this.chunks.get(ci)!.v;
      for (let i = 0; i < SPAN; i++) if (v[i] !== 0) out.push(v[i] - 1);
    }
    return out;
  }

  private chunk(ci: number): Chunk | undefined {
    if (ci === this.lastIdx) return this.last;
    const c = this.chunks.get(ci);
    if (c !== undefined) {
      this.lastIdx = ci;
      this.last = c;
    }
    return c;
  }
}
