/** Where a folio record's key is deleted on rollback (a PrivPages, or any Map). */
export interface FolioMap {
  delete(key: number): unknown;
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
  private fTarget = new Int32Array(0);
  private fKey = new Float64Array(0);
  private fHead = new Float64Array(0);
  private nFolios = 0;

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

  rollback(): void {
    for (let c = this.closures.length - 1; c >= -1; c--) {
      const stop = c >= 0 ? this.closureAt[c] : 0;
      for (let i = this.nFolios - 1; i >= stop; i--) {
        const t = this.targets[this.fTarget[i]];
        t.map.delete(this.fKey[i]);
        t.put(this.fHead[i]);
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
