import { EFAULT, EINVAL, ENOMEM } from "../uapi/errno.js";
import { allocFailed, cowCopy, F_NOHUGE, F_SIGBUS, faultWhy, handleFault } from "./fault.js";
import type { PrivResv } from "./hugetlb-pool.js";
import type { MmStruct } from "./mm-struct.js";
import { PAGE_SIZE } from "./mman.js";
import type { FolioOrder } from "./page-tracker.js";
import { emptyRuns, type PfnRuns, RunBuilder } from "./pfn-runs.js";
import type { PrivPages } from "./priv-pages.js";
import { UndoLog } from "./undo.js";
import type { Vma } from "./vma.js";

/**
 * pin_user_pages(FOLL_LONGTERM): get_user_pages for DMA, all-or-nothing.
 */

/**
 * pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]) of `nPages` pages from va
 * (rounded down to a page). All-or-nothing: EFAULT when a page is not
 * mapped, past EOF, or lacks VM_WRITE (write) / VM_READ (read); ENOMEM
 * when a page cannot be allocated or a failure is injected at `site`.
 * On failure nothing is pinned and nothing stays allocated.
 * Accounting (pinned_vm, locked_vm) is the caller's: see accountLockedVm.
 */
export function pinUserPages(
  mm: MmStruct,
  vaB: bigint,
  nPages: number,
  write: boolean,
  site = "pin_user_pages",
): PfnRuns {
  mm.checkLive();
  if (!Number.isInteger(nPages) || nPages < 0) return mm.err(EINVAL, "pin: bad page count");
  if (nPages === 0) return emptyRuns();
  const va = mm.userRange(BigInt.asUintN(U64, vaB) & PAGE_MASK_B, nPages * PAGE_SIZE);
  if (va < 0) return mm.err(EFAULT, "pin: range outside user space");
  const end = va + nPages * PAGE_SIZE;
  let cur = va;
  // folios the range touches: at most one run and one allocation each
  let folios = 0;
  for (const v of mm.vmas.overlapping(va, end)) {
    if (v.start > cur) return mm.err(EFAULT, `pin: 0x${cur.toString(16)} is not mapped`);
    const size = v.pageSize;
    folios += Math.floor((Math.min(end, v.end) - 1) / size) - Math.floor(Math.max(va, v.start) / size) + 1;
    if (v.io !== null) return mm.err(EFAULT, "pin: device memory (VM_IO | VM_PFNMAP) has no pages to pin");
    if (write && !v.mayWrite) return mm.err(EFAULT, `pin: write pin of a mapping without PROT_WRITE`);
    if (!write && !v.mayRead) return mm.err(EFAULT, `pin: read pin of a mapping without PROT_READ`);
    if (v.file !== null) {
      // A page past EOF would SIGBUS: refuse before anything is faulted in.
      const last = Math.min(end, v.end) - PAGE_SIZE;
      const folio = Math.floor(last / v.pageSize) * v.pageSize;
      if (BigInt(v.fileOffset(Math.max(folio, v.start))) >= v.file.size) {
        return mm.err(EFAULT, `pin: 0x${last.toString(16)} is past the end of the mapped file`);
      }
    }
    cur = v.end;
  }
  if (cur < end) return mm.err(EFAULT, `pin: 0x${cur.toString(16)} is not mapped`);
  if (mm.faults.hit(site)) return mm.err(ENOMEM, `pin: injected failure at ${site}`);
  // (the undo log needs no size: fresh private folios are one record per run of them)
  const undo = new UndoLog();
  const b = new RunBuilder(Math.min(folios, 1 << 16));
  for (cur = va; cur < end; ) {
    // one VMA lookup per VMA, then folio by folio inside it
    const v = mm.vmas.find(cur)!;
    const size = v.pageSize;
    const stop = Math.min(end, v.end);
    if (!v.shared && v.file === null) {
      // private anonymous (a reserved hugetlb mapping too): what fault() does with
      // unshare, folio by folio, without its general cases
      try {
        cur = pinAnon(mm, v, cur, stop, b, undo);
      } catch (e) {
        mm.pages.unpinRuns(b.peek());
        undo.rollback();
        throw e;
      }
      continue;
    }
    while (cur < stop) {
      const pfn = handleFault(mm, v, cur, write, true, undo);
      if (pfn < 0) {
        mm.pages.unpinRuns(b.peek());
        undo.rollback();
        if (pfn === F_NOHUGE) return mm.err(EFAULT, `pin: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
        return pfn === F_SIGBUS
          ? mm.err(EFAULT, `pin: 0x${cur.toString(16)} is past the end of the mapped file`)
          : mm.err(ENOMEM, `pin: cannot allocate the page at 0x${cur.toString(16)}`);
      }
      const folioEnd = (Math.floor(cur / size) + 1) * size;
      const step = (Math.min(folioEnd, stop) - cur) / PAGE_SIZE;
      mm.pages.pinRange(pfn, step);
      b.push(pfn, step);
      cur += step * PAGE_SIZE;
    }
  }
  return b.finish();
}

/**
 * Pin [cur, stop) of a private anonymous VMA: each folio found in the
 * private map or allocated there (as fault() with `unshare`: a read pin
 * gets a page of its own too), pinned, and appended to `b`. Returns
 * `stop`; on failure it throws, with the caller left to undo.
 */
export function pinAnon(
  mm: MmStruct,
  v: Vma,
  cur: number,
  stop: number,
  b: RunBuilder,
  undo: UndoLog,
): number {
  // in pieces of at most 512 folios: a short loop called often gets optimized as a
  // whole early, where one long loop would run on-stack-replaced code only
  const size = v.pageSize;
  while (cur < stop) {
    const e = Math.min(stop, (Math.floor(cur / size) + 512) * size);
    cur = pinAnonPiece(mm, v, cur, e, b, undo);
    if (cur < 0) return cur;
  }
  return stop;
}

export function pinAnonPiece(
  mm: MmStruct,
  v: Vma,
  cur: number,
  stop: number,
  b: RunBuilder,
  undo: UndoLog,
): number {
  const size = v.pageSize;
  const order = (v.shift - 12) as FolioOrder;
  const site = order === 0 ? "do_anonymous_page" : "alloc_hugetlb_folio";
  const m = mm.privMap(v.shift);
  const pages = mm.pages;
  const resv = v.resv;
  let key = Math.floor(cur / size);
  let sub = (cur - key * size) / PAGE_SIZE;
  const perFolio = size / PAGE_SIZE;
  // Folios this call installs come in runs of consecutive keys: one undo
  // record per run. A run is of one kind: folios that took the mapping's
  // reservation at their key (allocPrivate + noteConsumed in fault.ts) or not.
  let fresh0 = key;
  let fresh = 0;
  let freshResv = false;
  while (cur < stop) {
    let head = m.get(key);
    if (head < 0) {
      const useResv = resv !== null && !resv.consumed.has(key);
      if (fresh > 0 && useResv !== freshResv) {
        addFreshRun(mm, m, undo, fresh0, fresh, freshResv ? resv : null);
        fresh = 0;
      }
      head = useResv ? pages.allocReservedFolio(order as 9 | 18) : pages.allocFolio(order, site);
      if (head < 0) {
        addFreshRun(mm, m, undo, fresh0, fresh, freshResv ? resv : null);
        if (allocFailed(mm, order) === F_NOHUGE)
          return mm.err(EFAULT, `pin: fault at 0x${cur.toString(16)} (${faultWhy(F_NOHUGE)})`);
        return mm.err(ENOMEM, `pin: cannot allocate the page at 0x${cur.toString(16)}`);
      }
      m.set(key, head);
      if (useResv) resv!.consumed.add(key);
      if (fresh === 0) {
        fresh0 = key;
        freshResv = useResv;
      }
      fresh++;
    } else {
      if (fresh > 0) {
        addFreshRun(mm, m, undo, fresh0, fresh, freshResv ? resv : null);
        fresh = 0;
      }
      // still shared with a forked mm: a FOLL_LONGTERM pin unshares it first (gup_must_unshare)
      if (pages.refCount(head) > 1) {
        head = cowCopy(mm, m, key, head, order, undo);
        if (head < 0) return mm.err(ENOMEM, `pin: cannot unshare the page at 0x${cur.toString(16)}`);
      }
    }
    const folioEnd = (key + 1) * size;
    const step = folioEnd <= stop ? perFolio - sub : (stop - cur) / PAGE_SIZE;
    pages.pinInFolio(head, head + sub, step);
    b.push(head + sub, step);
    cur += step * PAGE_SIZE;
    key++;
    sub = 0;
  }
  addFreshRun(mm, m, undo, fresh0, fresh, freshResv ? resv : null);
  return stop;
}

/**
 * The undo record of `n` fresh folios installed at keys k0.. of `m`. With
 * `resv` they took its reservations: a rollback gives each reservation back
 * before it frees the folio (newest first, as fault.ts's per-folio records
 * would), so a surplus page goes where free_huge_folio sends it.
 */
function addFreshRun(
  mm: MmStruct,
  m: PrivPages,
  undo: UndoLog,
  k0: number,
  n: number,
  resv: PrivResv | null,
): void {
  if (n <= 0) return;
  if (resv === null) {
    undo.addFolioRange(m, k0, n, mm.putFolio);
    return;
  }
  undo.add(() => {
    for (let k = k0 + n - 1; k >= k0; k--) {
      resv.consumed.delete(k);
      resv.hs.restoreReserve();
      const head = m.get(k);
      m.delete(k);
      mm.putFolio(head);
    }
  });
}

const PAGE_MASK_B = ~BigInt(PAGE_SIZE - 1);
const U64 = 64;
