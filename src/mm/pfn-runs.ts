/**
 * Pinned pages in compact form: runs of physically contiguous pfns, so a
 * 64 GiB hugetlb pin is one run per folio (or fewer), not one entry per
 * 4 KiB page. Runs are in the order of the pinned range (virtual or file
 * order); consecutive runs are never physically adjacent.
 */
export interface PfnRuns {
  /** First pfn of each run. */
  pfn: Float64Array;
  /** Number of 4 KiB pages in each run. */
  len: Float64Array;
  /** Runs in use (the arrays may be longer). */
  count: number;
  /** Total pages over all runs. */
  pages: number;
}

export function emptyRuns(): PfnRuns {
  return { pfn: new Float64Array(0), len: new Float64Array(0), count: 0, pages: 0 };
}

/** Appends pages, merging physically contiguous ones into one run. */
export class RunBuilder {
  private pfn: Float64Array;
  private len: Float64Array;
  private count = 0;
  private pages = 0;

  /** `expect`: the runs the caller expects at most (sized once instead of grown by doubling). */
  constructor(expect = 8) {
    const cap = Math.max(1, Math.min(expect, 1 << 20));
    this.pfn = new Float64Array(cap);
    this.len = new Float64Array(cap);
  }

  push(pfn: number, n: number): void {
    const c = this.count;
    if (c > 0 && this.pfn[c - 1] + this.len[c - 1] === pfn) {
      this.len[c - 1] += n;
    } else {
      if (c === this.pfn.length) {
        const p = new Float64Array(c * 2);
        p.set(this.pfn);
        this.pfn = p;
        const l = new Float64Array(c * 2);
        l.set(this.len);
        this.len = l;
      }
      this.pfn[c] = pfn;
      this.len[c] = n;
      this.count = c + 1;
    }
    this.pages += n;
  }

  /** The runs so far (trimmed copies; the arrays themselves when exactly full). */
  finish(): PfnRuns {
    const full = this.count === this.pfn.length;
    return {
      pfn: full ? this.pfn : this.pfn.slice(0, this.count),
      len: full ? this.len : this.len.slice(0, this.count),
      count: this.count,
      pages: this.pages,
    };
  }

  /** The runs so far without copying (for rollback). */
  peek(): PfnRuns {
    return { pfn: this.pfn, len: this.len, count: this.count, pages: this.pages };
  }
}

/** The pfn of page `index` (0-based, over all runs), or -1 past the end. */
export function runsPfnAt(runs: PfnRuns, index: number): number {
  for (let i = 0; i < runs.count; i++) {
    if (index < runs.len[i]) return runs.pfn[i] + index;
    index -= runs.len[i];
  }
  return -1;
}

/** Every pinned pfn in order (for small runs; tests and debug views). */
export function runsToArray(runs: PfnRuns): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs.count; i++) for (let j = 0; j < runs.len[i]; j++) out.push(runs.pfn[i] + j);
  return out;
}
