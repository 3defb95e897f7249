/**
 * What a paging domain believes it mapped: a sorted list of runs, each an
 * IOVA range translating linearly to physical memory with one prot. Kept
 * in units of the domain's smallest page (numbers, exact for 64-bit IOVAs)
 * and merged when runs touch, so a large map costs one entry. The
 * invariant check compares it with what the table's bytes say.
 */
export interface MappedRun {
  iova: number;
  len: number;
  pa: number;
  prot: number;
}

export class MappedRanges {
  private runs: MappedRun[] = [];

  get length(): number {
    return this.runs.length;
  }

  all(): readonly MappedRun[] {
    return this.runs;
  }

  totalUnits(): number {
    let n = 0;
    for (const r of this.runs) n += r.len;
    return n;
  }

  /** Record [iova, iova+len) -> pa. The caller guarantees the range was empty. */
  add(iova: number, len: number, pa: number, prot: number): void {
    if (len === 0) return;
    const n = this.runs.length;
    const tail = n > 0 ? this.runs[n - 1] : undefined;
    if (tail === undefined || tail.iova + tail.len <= iova) {
      // at the end (a batched map adds runs in IOVA order): extend the last run or append
      if (
        tail !== undefined &&
        tail.iova + tail.len === iova &&
        tail.pa + tail.len === pa &&
        tail.prot === prot
      )
        tail.len += len;
      else this.runs.push({ iova, len, pa, prot });
      return;
    }
    let i = this.firstEndingAfter(iova);
    const run: MappedRun = { iova, len, pa, prot };
    this.runs.splice(i, 0, run);
    // Merge with the neighbour before and after when they continue it.
    if (i > 0 && joins(this.runs[i - 1], run)) {
      this.runs[i - 1].len += run.len;
      this.runs.splice(i, 1);
      i--;
    }
    const cur = this.runs[i];
    const nxt = this.runs[i + 1];
    if (nxt !== undefined && joins(cur, nxt)) {
      cur.len += nxt.len;
      this.runs.splice(i + 1, 1);
    }
  }

  /** Forget [iova, iova+len), splitting runs at the edges. */
  remove(iova: number, len: number): void {
    if (len === 0) return;
    const end = iova + len;
    const out: MappedRun[] = [];
    const i = this.firstEndingAfter(iova);
    while (i < this.runs.length && this.runs[i].iova < end) {
      const r = this.runs[i];
      const rEnd = r.iova + r.len;
      if (r.iova < iova) out.push({ iova: r.iova, len: iova - r.iova, pa: r.pa, prot: r.prot });
      if (rEnd > end) out.push({ iova: end, len: rEnd - end, pa: r.pa + (end - r.iova), prot: r.prot });
      this.runs.splice(i, 1);
    }
    this.runs.splice(i, 0, ...out);
  }

  /** The run holding unit `iova`, if any. */
  find(iova: number): MappedRun | undefined {
    const r = this.runs[this.firstEndingAfter(iova)];
    return r !== undefined && r.iova <= iova ? r : undefined;
  }

  /** True when any unit of [iova, iova+len) is recorded. */
  overlaps(iova: number, len: number): boolean {
    const r = this.runs[this.firstEndingAfter(iova)];
    return r !== undefined && r.iova < iova + len;
  }

  clear(): void {
    this.runs = [];
  }

  /** Index of the first run whose end is past `iova`. */
  private firstEndingAfter(iova: number): number {
    let lo = 0;
    let hi = this.runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const r = this.runs[mid];
      if (r.iova + r.len <= iova) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function joins(a: MappedRun, b: MappedRun): boolean {
  return a.iova + a.len === b.iova && a.pa + a.len === b.pa && a.prot === b.prot;
}
