/** Where a folio record's key is deleted on rollback (a PrivPages, or any Map). */
export interface FolioMap {
  delete(key: number): unknown;
}

/** A map whose folio heads a range record reads back on rollback (a PrivPages). */
export interface FolioRangeMap extends FolioMap {
  /** The head at key (present for every key of a live range record). */
  get(key: number): number;
}

/**
 * A rollback log: steps taken by an operation that must be all-or-nothing
 * (a pin, a fault-in of a range). On failure the steps are undone newest
 * first, so the state is exactly as before the call.
 *
 * The commonest step, "a private folio was installed at key of a private
 * page map", is recorded as numbers in typed arrays rather than a closure
 * or an object (a 64 GiB hugetlb pin installs 32768 of them). Closures
 * keep their place among the folio records: each remembers how many folio
 * records came before it.
 */
export class UndoLog {
  private readonly closures: (() => void)[] = [];
  /** Folio records made before each closure. */
  private readonly closureAt: number[] = [];
  /** (map, put) pairs the records refer to by index; nearly always one. */
  private readonly targets: { map: FolioMap; put: (head: number) => void }[] = [];
  private fTarget: Int32Array;
  private fKey: Float64Array;
  private fHead: Float64Array;
  private nFolios = 0;

  /** `expectFolios`: folio records the caller may make (sized once instead of grown). */
  constructor(expectFolios = 0) {
    const cap = Math.min(expectFolios, 1 << 16);
    this.fTarget = new Int32Array(cap);
    this.fKey = new Float64Array(cap);
    this.fHead = new Float64Array(cap);
  }

  add(step: () => void): void {
    this.closures.push(step);
    this.closureAt.push(this.nFolios);
  }

  /** Undo = delete `key` from `map`, then `put(head)`. */
  addFolio(map: FolioMap, key: number, head: number, put: (head: number) => void): void {
    let t = this.targets.length - 1;
    if (t < 0 || this.targets[t].map !== map || this.targets[t].put !== put) {
      t = this.targets.findIndex((x) => x.map === map && x.put === put);
      if (t < 0) t = this.targets.push({ map, put }) - 1;
    }
    const n = this.nFolios;
    if (n === this.fKey.length) this.grow();
    this.fTarget[n] = t;
    this.fKey[n] = key;
    this.fHead[n] = head;
    this.nFolios = n + 1;
  }

  /**
   * `n` folio records at once: keys k0 .. k0+n-1 of `map` were installed in
   * that order (undo: newest first, each deleted then put with the head
   * the map holds for it). One record for a whole run of fresh folios.
   */
  addFolioRange(map: FolioRangeMap, k0: number, n: number, put: (head: number) => void): void {
    if (n <= 0) return;
    this.addFolio(map, k0, -n, put);
  }

  rollback(): void {
    for (let c = this.closures.length - 1; c >= -1; c--) {
      const stop = c >= 0 ? this.closureAt[c] : 0;
      for (let i = this.nFolios - 1; i >= stop; i--) {
        const t = this.targets[this.fTarget[i]];
        const h = this.fHead[i];
        if (h >= 0) {
          t.map.delete(this.fKey[i]);
          t.put(h);
          continue;
        }
        // a range record (addFolioRange): -h keys from fKey
        const m = t.map as FolioRangeMap;
        for (let k = this.fKey[i] - h - 1; k >= this.fKey[i]; k--) {
          const head = m.get(k);
          m.delete(k);
          t.put(head);
        }
      }
      this.nFolios = stop;
      if (c >= 0) this.closures[c]();
    }
    this.closures.length = 0;
    this.closureAt.length = 0;
    this.nFolios = 0;
  }

  get size(): number {
    return this.closures.length + this.nFolios;
  }

  private grow(): void {
    const cap = Math.max(16, this.fKey.length * 2);
    const t = new Int32Array(cap);
    t.set(this.fTarget);
    this.fTarget = t;
    const k = new Float64Array(cap);
    k.set(this.fKey);
    this.fKey = k;
    const h = new Float64Array(cap);
    h.set(this.fHead);
    this.fHead = h;
  }
}
