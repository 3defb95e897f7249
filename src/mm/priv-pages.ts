/**
 * One page size's private page map of a process: virtual page number (va
 * / page size) -> head pfn of the private folio there. It behaves as the
 * Map<number, number> it replaces, including iteration in insertion order
 * (a deleted then re-added key moves to the end): that order decides the
 * order munmap and exit free folios in, so the frame allocator's later
 * choices (and every physical address after them) depend on it.
 *
 * Storage is typed arrays, not a hash per entry: leaves of 512 keys
 * (found through a Map by key / 512, with the last leaf cached) hold each
 * key's head pfn and its position in an append-only insertion log. A log
 * slot is live while its key's leaf still points back at it; the log is
 * compacted when more than half of it is dead. A 64 GiB hugetlb mapping is
 * 32768 keys in 64 leaves.
 */
const LEAF = 512;

interface Leaf {
  /** Head pfn per key, -1 when absent. */
  head: Float64Array;
  /** Log position of each present key. */
  pos: Int32Array;
  /** Keys present. */
  n: number;
}

export class PrivPages {
  private readonly dir = new Map<number, Leaf>();
  private lastIdx = -1;
  private lastLeaf: Leaf | undefined;
  private log = new Float64Array(16);
  private logLen = 0;
  /** forEach in progress: appends may happen, compaction may not. */
  private walking = 0;
  /** Keys present. */
  size = 0;

  /** The head pfn at key, or -1. */
  get(key: number): number {
    const idx = Math.floor(key / LEAF);
    const l = idx === this.lastIdx ? this.lastLeaf : this.leafAt(idx);
    return l === undefined ? -1 : l.head[key - idx * LEAF];
  }

  has(key: number): boolean {
    return this.get(key) >= 0;
  }

  /** Set key -> head (head >= 0). A present key keeps its place in the order, as Map.set. */
  set(key: number, head: number): void {
    const idx = Math.floor(key / LEAF);
    let l = idx === this.lastIdx ? this.lastLeaf : this.leafAt(idx);
    if (l === undefined) {
      l = { head: new Float64Array(LEAF).fill(-1), pos: new Int32Array(LEAF), n: 0 };
      this.dir.set(idx, l);
      this.lastIdx = idx;
      this.lastLeaf = l;
    }
    const i = key - idx * LEAF;
    if (l.head[i] < 0) {
      l.n++;
      this.size++;
      l.pos[i] = this.append(key);
    }
    l.head[i] = head;
  }

  /** Remove key; true when it was present. */
  delete(key: number): boolean {
    const idx = Math.floor(key / LEAF);
    const l = idx === this.lastIdx ? this.lastLeaf : this.leafAt(idx);
    if (l === undefined) return false;
    const i = key - idx * LEAF;
    if (l.head[i] < 0) return false;
    l.head[i] = -1;
    this.size--;
    if (--l.n === 0 && this.walking === 0) {
      this.dir.delete(idx);
      if (this.lastIdx === idx) {
        this.lastIdx = -1;
        this.lastLeaf = undefined;
      }
    }
    return true;
  }

  /**
   * Visit (key, head) in insertion order, as `for (const [k, h] of map)`
   * does: `fn` may delete any key (a deleted key not yet visited is not
   * visited) and keys it adds are visited later.
   */
  forEach(fn: (key: number, head: number) => void): void {
    this.walking++;
    try {
      for (let p = 0; p < this.logLen; p++) {
        const key = this.log[p];
        const idx = Math.floor(key / LEAF);
        const l = this.leafAt(idx);
        if (l === undefined) continue;
        const i = key - idx * LEAF;
        if (l.head[i] >= 0 && l.pos[i] === p) fn(key, l.head[i]);
      }
    } finally {
      if (--this.walking === 0) this.dropEmptyLeaves();
    }
  }

  /** Every (key, head) in insertion order. */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    this.forEach((k, h) => {
      out.push([k, h]);
    });
    return out;
  }

  clear(): void {
    this.dir.clear();
    this.lastIdx = -1;
    this.lastLeaf = undefined;
    this.logLen = 0;
    this.size = 0;
  }

  private leafAt(idx: number): Leaf | undefined {
    const l = this.dir.get(idx);
    if (l !== undefined) {
      this.lastIdx = idx;
      this.lastLeaf = l;
    }
    return l;
  }

  private append(key: number): number {
    if (this.logLen === this.log.length) {
      if (this.walking === 0 && this.size <= this.logLen >> 1) this.compact();
      if (this.logLen === this.log.length) {
        const g = new Float64Array(this.log.length * 2);
        g.set(this.log);
        this.log = g;
      }
    }
    this.log[this.logLen] = key;
    return this.logLen++;
  }

  /** Drop the dead log slots, keeping the live ones in order. */
  private compact(): void {
    let w = 0;
    for (let p = 0; p < this.logLen; p++) {
      const key = this.log[p];
      const idx = Math.floor(key / LEAF);
      const l = this.dir.get(idx);
      if (l === undefined) continue;
      const i = key - idx * LEAF;
      if (l.head[i] < 0 || l.pos[i] !== p) continue;
      l.pos[i] = w;
      this.log[w++] = key;
    }
    this.logLen = w;
  }

  private dropEmptyLeaves(): void {
    for (const [idx, l] of this.dir) {
      if (l.n !== 0) continue;
      this.dir.delete(idx);
      if (this.lastIdx === idx) {
        this.lastIdx = -1;
        this.lastLeaf = undefined;
      }
    }
  }
}
