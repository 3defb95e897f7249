/**
 * What a paging domain believes it mapped: a sorted list of runs, each an
 * IOVA range translating linearly to physical memory with one prot. Kept
 * in units of the domain's smallest page (numbers, exact for 64-bit IOVAs)
 * and merged when runs touch, so a linear map costs one entry. The
 * invariant check compares it with what the table's bytes say.
 *
 * The runs live in parallel typed arrays, not one object each: a 64 GiB
 * hugetlb map of scattered folios records 32768 runs, appended in IOVA
 * order, and objects would be garbage-collector work on the map path.
 */
export interface MappedRun {
  iova: number;
  len: number;
  pa: number;
  prot: number;
}

export class MappedRanges {
  private iova = new Float64Array(8);
  private len = new Float64Array(8);
  private pa = new Float64Array(8);
  private prot = new Int32Array(8);
  private n = 0;
  /** Moves on every change (the invariant check's cache key). */
  gen = 0;

  get length(): number {
    return this.n;
  }

  /** The runs in IOVA order (fresh objects; for checks and tests, not hot paths). */
  all(): readonly MappedRun[] {
    const out: MappedRun[] = [];
    for (let i = 0; i < this.n; i++) out.push(this.at(i));
    return out;
  }

  totalUnits(): number {
    let t = 0;
    for (let i = 0; i < this.n; i++) t += this.len[i];
    return t;
  }

  /** Record [iova, iova+len) -> pa. The caller guarantees the range was empty. */
  add(iova: number, len: number, pa: number, prot: number): void {
    this.gen++;
    if (len === 0) return;
    const t = this.n - 1;
    if (t < 0 || this.iova[t] + this.len[t] <= iova) {
      // at the end (a batched map adds runs in IOVA order): extend the last run or append
      if (
        t >= 0 &&
        this.iova[t] + this.len[t] === iova &&
        this.pa[t] + this.len[t] === pa &&
        this.prot[t] === prot
      )
        this.len[t] += len;
      else this.insertAt(this.n, iova, len, pa, prot);
      return;
    }
    let i = this.firstEndingAfter(iova);
    this.insertAt(i, iova, len, pa, prot);
    // Merge with the neighbour before and after when they continue it.
    if (i > 0 && this.joins(i - 1, i)) {
      this.len[i - 1] += this.len[i];
      this.removeAt(i, 1);
      i--;
    }
    if (i + 1 < this.n && this.joins(i, i + 1)) {
      this.len[i] += this.len[i + 1];
      this.removeAt(i + 1, 1);
    }
  }

  /**
   * add(iova + j * n, n, pfns[from + j], prot) for j < count (one leaf per
   * frame, at consecutive IOVAs), in one pass when they go at the end.
   */
  addLeaves(iova: number, n: number, pfns: Float64Array, from: number, count: number, prot: number): void {
    this.gen++;
    if (count <= 0 || n === 0) return;
    const t0 = this.n - 1;
    if (t0 >= 0 && this.iova[t0] + this.len[t0] > iova) {
      for (let j = 0; j < count; j++) this.add(iova + j * n, n, pfns[from + j], prot);
      return;
    }
    if (this.n + count > this.iova.length) this.grow(this.n + count);
    const I = this.iova;
    const L = this.len;
    const A = this.pa;
    const P = this.prot;
    let t = t0;
    let cur = iova;
    for (let j = 0; j < count; j++) {
      const pa = pfns[from + j];
      if (t >= 0 && I[t] + L[t] === cur && A[t] + L[t] === pa && P[t] === prot) L[t] += n;
      else {
        t++;
        I[t] = cur;
        L[t] = n;
        A[t] = pa;
        P[t] = prot;
      }
      cur += n;
    }
    this.n = t + 1;
  }

  /** Room for `more` runs beyond the current ones (a batched map reserves once for all its runs). */
  reserve(more: number): void {
    if (this.n + more > this.iova.length) this.grow(this.n + more);
  }

  /** Forget [iova, iova+len), splitting runs at the edges. */
  remove(iova: number, len: number): void {
    this.gen++;
    if (len === 0) return;
    const end = iova + len;
    const i = this.firstEndingAfter(iova);
    let j = i;
    while (j < this.n && this.iova[j] < end) j++;
    if (j === i) return;
    // what survives: the part of run i before iova, the part of run j-1 past end
    const first = this.at(i);
    const last = this.at(j - 1);
    this.removeAt(i, j - i);
    let at = i;
    if (first.iova < iova) this.insertAt(at++, first.iova, iova - first.iova, first.pa, first.prot);
    const lastEnd = last.iova + last.len;
    if (lastEnd > end) this.insertAt(at, end, lastEnd - end, last.pa + (end - last.iova), last.prot);
  }

  /** The run holding unit `iova`, if any. */
  find(iova: number): MappedRun | undefined {
    const i = this.firstEndingAfter(iova);
    return i < this.n && this.iova[i] <= iova ? this.at(i) : undefined;
  }

  /** True when any unit of [iova, iova+len) is recorded. */
  overlaps(iova: number, len: number): boolean {
    const i = this.firstEndingAfter(iova);
    return i < this.n && this.iova[i] < iova + len;
  }

  clear(): void {
    this.gen++;
    this.n = 0;
  }

  private at(i: number): MappedRun {
    return { iova: this.iova[i], len: this.len[i], pa: this.pa[i], prot: this.prot[i] };
  }

  private joins(a: number, b: number): boolean {
    return (
      this.iova[a] + this.len[a] === this.iova[b] &&
      this.pa[a] + this.len[a] === this.pa[b] &&
      this.prot[a] === this.prot[b]
    );
  }

  private insertAt(i: number, iova: number, len: number, pa: number, prot: number): void {
    if (this.n === this.iova.length) this.grow();
    if (i < this.n) {
      this.iova.copyWithin(i + 1, i, this.n);
      this.len.copyWithin(i + 1, i, this.n);
      this.pa.copyWithin(i + 1, i, this.n);
      this.prot.copyWithin(i + 1, i, this.n);
    }
    this.iova[i] = iova;
    this.len[i] = len;
    this.pa[i] = pa;
    this.prot[i] = prot;
    this.n++;
  }

  private removeAt(i: number, k: number): void {
    this.iova.copyWithin(i, i + k, this.n);
    this.len.copyWithin(i, i + k, this.n);
    this.pa.copyWithin(i, i + k, this.n);
    this.prot.copyWithin(i, i + k, this.n);
    this.n -= k;
  }

  private grow(need = 0): void {
    const cap = Math.max(this.iova.length * 2, need);
    const f = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.iova = f(this.iova);
    this.len = f(this.len);
    this.pa = f(this.pa);
    const p = new Int32Array(cap);
    p.set(this.prot);
    this.prot = p;
  }

  /** Index of the first run whose end is past `iova`. */
  private firstEndingAfter(iova: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.iova[mid] + this.len[mid] <= iova) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
