import {
  type AccountTarget,
  accountLockedVm,
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_NONE,
  IOPT_PAGES_ACCOUNT_USER,
  type IoptPagesAccountMode,
  unaccountLockedVm,
} from "../mm/locked-vm.js";
import { type PfnRuns, RunBuilder } from "../mm/pfn-runs.js";
import { ENOMEM, fail, rethrowWith } from "../uapi/errno.js";
import { PAGE_SIZE } from "../uapi/linux.js";
import type { PinSource } from "./pin-source.js";

export { PAGE_SIZE };

/** A reason a range of pages must stay pinned: an area filled into domains, or an access pin. */
export interface PinUser {
  first: number;
  /** Inclusive last page index. */
  last: number;
  what: "domain" | "access";
}

/** A physically contiguous piece of pinned memory covering page indexes [first, first+n). */
interface PinnedSeg {
  first: number;
  runs: PfnRuns;
}

/**
 * struct iopt_pages: a pinned-on-demand view of user memory or of a memfd.
 * Page index 0 is the page holding the first byte. Each page is pinned at
 * most once however many areas, domains and accesses need it (pages.c keeps
 * domains_itree / access_itree for that); here the "users" list plays both
 * trees' role and `segs` holds the pinned pfns as compact runs, so pinning
 * 64 GiB of hugetlb memory costs one entry per physically contiguous run.
 *
 * Refcount `refs`: one per area using the object (COPY shares it).
 */
export class IoptPages {
  refs = 1;
  readonly users: PinUser[] = [];
  private segs: PinnedSeg[] = [];
  /** Pages pinned (each once) and charged per `accountMode`. */
  npinned = 0;
  /**
   * A dma-buf's pages after the exporter revoked them: mapped into no
   * domain (iopt_revoke_notify unmapped them; filling a new domain skips
   * them) until the area goes.
   */
  revoked = false;
  /** Runs when the last reference goes (drops the memfd reference of MAP_FILE). */
  onFree: (() => void) | undefined;

  constructor(
    readonly source: PinSource,
    /** The page-aligned address page 0 stands for (user VA, or file offset for MAP_FILE). */
    readonly baseAddr: bigint,
    /** Byte offset of the first byte inside page 0. */
    readonly pageOffset: number,
    /** Bytes the user asked for. */
    readonly length: bigint,
    readonly npages: number,
    readonly writable: boolean,
    public accountMode: IoptPagesAccountMode,
    /** Whose locked_vm / pinned_vm is charged (the creating process's mm). */
    public acct: AccountTarget,
  ) {}

  get(): void {
    this.refs++;
  }

  put(): void {
    if (--this.refs > 0) return;
    if (this.users.length > 0 || this.npinned > 0) throw new Error("iopt_pages freed while pinned");
    this.onFree?.();
  }

  /**
   * Add a user of [first, last]: pin whatever no other user holds yet and
   * charge it. All-or-nothing: on failure nothing stays pinned or charged.
   */
  addUser(first: number, last: number, what: PinUser["what"], write: boolean): PinUser {
    const need = this.uncovered(first, last, this.users);
    const done: PinnedSeg[] = [];
    try {
      for (const [a, b] of need) {
        const n = b - a + 1;
        let runs: PfnRuns;
        try {
          runs = this.source.pin(a, n, write && this.writable);
        } catch (e) {
          rethrowWith(e, `pinning pages ${a}..${b} of ${this.source.describe()}: `);
        }
        if (accountLockedVm(this.acct, n, this.accountMode) !== 0) {
          this.source.unpin(runs);
          fail(ENOMEM, this.rlimitReason(n));
        }
        done.push({ first: a, runs });
      }
    } catch (e) {
      for (const s of done) {
        this.source.unpin(s.runs);
        unaccountLockedVm(this.acct, s.runs.pages, this.accountMode);
      }
      throw e;
    }
    for (const s of done) {
      this.insertSeg(s);
      this.npinned += s.runs.pages;
    }
    const u: PinUser = { first, last, what };
    this.users.push(u);
    return u;
  }

  /** Drop a user; pages no other user covers are unpinned and uncharged. */
  removeUser(u: PinUser): void {
    const i = this.users.indexOf(u);
    if (i < 0) throw new Error("iopt_pages: unknown pin user");
    this.users.splice(i, 1);
    for (const [a, b] of this.uncovered(u.first, u.last, this.users)) {
      const runs = this.takeSegs(a, b);
      this.source.unpin(runs);
      unaccountLockedVm(this.acct, runs.pages, this.accountMode);
      this.npinned -= runs.pages;
    }
  }

  /** The pinned pfns of [first, last] as merged runs (pfn, len); every page must be pinned. */
  runsIn(first: number, last: number): PfnRuns {
    // one segment pinned for exactly this range (an area pinned at once): its runs as they are
    for (const s of this.segs) {
      if (s.first === first && s.first + s.runs.pages - 1 === last && merged(s.runs)) return s.runs;
      if (s.first >= first) break;
    }
    const b = new RunBuilder();
    let idx = first;
    for (const s of this.segs) {
      const sEnd = s.first + s.runs.pages - 1;
      if (sEnd < idx) continue;
      if (s.first > idx) break;
      let off = idx - s.first;
      const { pfn, len, count } = s.runs;
      for (let r = 0; r < count && idx <= last; r++) {
        const l = len[r];
        if (off >= l) {
          off -= l;
          continue;
        }
        const n = Math.min(l - off, last - idx + 1);
        b.push(pfn[r] + off, n);
        idx += n;
        off = 0;
      }
      if (idx > last) break;
    }
    if (idx <= last) throw new Error(`iopt_pages: page ${idx} is not pinned`);
    return b.peek();
  }

  /** The pinned pfn of one page, or -1. */
  pfnAt(index: number): number {
    for (const s of this.segs) {
      if (index < s.first) return -1;
      let off = index - s.first;
      if (off >= s.runs.pages) continue;
      for (let r = 0; r < s.runs.count; r++) {
        if (off < s.runs.len[r]) return s.runs.pfn[r] + off;
        off -= s.runs.len[r];
      }
    }
    return -1;
  }

  /** Is every page of [first, last] held by some user? */
  covered(first: number, last: number): boolean {
    return this.uncovered(first, last, this.users).length === 0;
  }

  /** Pin count each page of the object should have from iommufd: 1 when any user covers it. */
  forEachPinned(fn: (pfn: number, n: number) => void): void {
    for (const s of this.segs) for (let r = 0; r < s.runs.count; r++) fn(s.runs.pfn[r], s.runs.len[r]);
  }

  /** Invariant: the segments pin exactly the union of the users' ranges, each page once. */
  checkSelf(): string[] {
    const out: string[] = [];
    let total = 0;
    let prevEnd = -1;
    for (const sg of this.segs) {
      if (sg.first < prevEnd) out.push(`pages: pinned segments overlap at page ${sg.first}`);
      prevEnd = sg.first + sg.runs.pages;
      total += sg.runs.pages;
      if (this.uncovered(sg.first, prevEnd - 1, this.users).length > 0) {
        out.push(`pages: pages ${sg.first}..${prevEnd - 1} are pinned but no user needs all of them`);
      }
    }
    if (total !== this.npinned) out.push(`pages: ${total} pinned pages but npinned ${this.npinned}`);
    // the pinned segments as ranges, made once (this runs after every fuzzer step)
    const pinned: PinUser[] = this.segs.map((x) => ({
      first: x.first,
      last: x.first + x.runs.pages - 1,
      what: "domain",
    }));
    for (const u of this.users) {
      if (this.uncovered(u.first, u.last, pinned).length > 0) {
        out.push(`pages: a ${u.what} user of pages ${u.first}..${u.last} is not fully pinned`);
      }
    }
    return out;
  }

  /** Move the charge to another account target (IOMMU_IOAS_CHANGE_PROCESS). */
  rehome(acct: AccountTarget, mode: IoptPagesAccountMode): void {
    this.acct = acct;
    this.accountMode = mode;
  }

  private rlimitReason(n: number): string {
    const mode =
      this.accountMode === IOPT_PAGES_ACCOUNT_USER
        ? "user->locked_vm (IOPT_PAGES_ACCOUNT_USER)"
        : this.accountMode === IOPT_PAGES_ACCOUNT_MM
          ? "mm->locked_vm (IOPT_PAGES_ACCOUNT_MM)"
          : "nothing (IOPT_PAGES_ACCOUNT_NONE)";
    const lim = this.acct.cred.rlimitMemlock;
    return `pinning ${n} more page(s) would exceed RLIMIT_MEMLOCK (${lim} bytes) charged to ${mode}; CAP_IPC_LOCK lifts it`;
  }

  /** Parts of [first, last] not covered by any of `users`, ascending, inclusive. */
  private uncovered(first: number, last: number, users: readonly PinUser[]): [number, number][] {
    const over = users.filter((u) => u.last >= first && u.first <= last).sort((a, b) => a.first - b.first);
    const out: [number, number][] = [];
    let cur = first;
    for (const u of over) {
      if (u.first > cur) out.push([cur, Math.min(u.first - 1, last)]);
      if (u.last + 1 > cur) cur = u.last + 1;
      if (cur > last) break;
    }
    if (cur <= last) out.push([cur, last]);
    return out;
  }

  private insertSeg(s: PinnedSeg): void {
    let i = 0;
    while (i < this.segs.length && this.segs[i].first < s.first) i++;
    this.segs.splice(i, 0, s);
  }

  /**
   * Remove pages [a, b] from the pinned segments (splitting them) and return
   * their runs. A segment wholly inside gives its runs as they are; a split
   * one is cut with typed-array copies (a 1 GiB pin of scattered 4 KiB pages
   * is 262144 runs: no object per run).
   */
  private takeSegs(a: number, b: number): PfnRuns {
    const taken: PfnRuns[] = [];
    const keep: PinnedSeg[] = [];
    for (const s of this.segs) {
      const sLast = s.first + s.runs.pages - 1;
      if (sLast < a || s.first > b) {
        keep.push(s);
        continue;
      }
      if (s.first >= a && sLast <= b) {
        taken.push(s.runs);
        continue;
      }
      const before = new RunSlicer(s.runs.count);
      const inside = new RunSlicer(s.runs.count);
      const after = new RunSlicer(s.runs.count);
      let idx = s.first;
      for (let r = 0; r < s.runs.count; r++) {
        const pfn = s.runs.pfn[r];
        const len = s.runs.len[r];
        const rLast = idx + len - 1;
        // part before a
        if (idx < a) before.push(pfn, Math.min(len, a - idx));
        // part inside [a, b]
        const lo = Math.max(idx, a);
        const hi = Math.min(rLast, b);
        if (lo <= hi) inside.push(pfn + (lo - idx), hi - lo + 1);
        // part after b
        if (rLast > b) {
          const st = Math.max(idx, b + 1);
          after.push(pfn + (st - idx), rLast - st + 1);
        }
        idx += len;
      }
      if (inside.count > 0) taken.push(inside.runs());
      if (before.count > 0) keep.push({ first: s.first, runs: before.runs() });
      if (after.count > 0) keep.push({ first: Math.max(s.first, b + 1), runs: after.runs() });
    }
    keep.sort((x, y) => x.first - y.first);
    this.segs = keep;
    return concatRuns(taken);
  }
}

/** Runs appended as they come (not merged), into arrays sized once. */
class RunSlicer {
  private readonly pfn: Float64Array;
  private readonly len: Float64Array;
  count = 0;
  private pages = 0;

  constructor(cap: number) {
    this.pfn = new Float64Array(cap);
    this.len = new Float64Array(cap);
  }

  push(pfn: number, n: number): void {
    this.pfn[this.count] = pfn;
    this.len[this.count++] = n;
    this.pages += n;
  }

  runs(): PfnRuns {
    return {
      pfn: this.pfn.slice(0, this.count),
      len: this.len.slice(0, this.count),
      count: this.count,
      pages: this.pages,
    };
  }
}

/** The runs of every part, in order, as one (not merged). */
function concatRuns(parts: PfnRuns[]): PfnRuns {
  if (parts.length === 1) return parts[0];
  let count = 0;
  let pages = 0;
  for (const r of parts) {
    count += r.count;
    pages += r.pages;
  }
  const pfn = new Float64Array(count);
  const len = new Float64Array(count);
  let at = 0;
  for (const r of parts) {
    pfn.set(r.pfn.subarray(0, r.count), at);
    len.set(r.len.subarray(0, r.count), at);
    at += r.count;
  }
  return { pfn, len, count, pages };
}

/** No two consecutive runs physically adjacent (what RunBuilder makes). */
function merged(r: PfnRuns): boolean {
  const { pfn, len, count } = r;
  for (let i = 1; i < count; i++) if (pfn[i - 1] + len[i - 1] === pfn[i]) return false;
  return true;
}

export { IOPT_PAGES_ACCOUNT_MM, IOPT_PAGES_ACCOUNT_NONE, IOPT_PAGES_ACCOUNT_USER };
