import type { MmStruct } from "./mm-struct.js";
import { PAGE_SIZE } from "./mman.js";
import type { FolioOrder } from "./page-tracker.js";
import type { PrivPages } from "./priv-pages.js";
import type { UndoLog } from "./undo.js";
import type { Vma } from "./vma.js";

/**
 * Page faults on an MmStruct (handle_mm_fault): first touch, copy-on-write after fork
 * and of private file pages, hugetlb reservations consumed; the fault codes.
 */

/**
 * Resolve the 4 KiB page at va in v: its pfn, or F_SIGBUS (past EOF),
 * F_OOM (allocation failed) or F_ZERO (untouched private anonymous page
 * read without `unshare`). `write` breaks COW; `unshare` (a long-term
 * pin) gives even a read a private page of its own, as GUP does for the
 * shared zero page. Allocations go into `undo` when given.
 */
export function handleFault(
  mm: MmStruct,
  v: Vma,
  va: number,
  write: boolean,
  unshare: boolean,
  undo: UndoLog | null,
): number {
  const size = v.pageSize;
  const key = Math.floor(va / size);
  const sub = Math.floor((va - key * size) / PAGE_SIZE);
  const order = (v.shift - 12) as FolioOrder;
  const m = mm.privMap(v.shift);
  if (!v.shared) {
    const have = m.get(key);
    if (have >= 0) {
      // A folio still shared with a forked mm is write-protected in both:
      // a write (or a long-term pin, which must not see a later copy) copies it.
      if ((write || unshare) && mm.pages.refCount(have) > 1) {
        const head = cowCopy(mm, m, key, have, order, undo);
        return head < 0 ? allocFailed(mm, order) : head + sub;
      }
      return have + sub;
    }
  }
  const file = v.file;
  if (file !== null) {
    const foff = v.fileOffset(key * size);
    if (BigInt(foff) >= file.size) return F_SIGBUS;
    const fidx = foff / size;
    // A private file mapping is a COW mapping: a write copies the page,
    // and so does a long-term pin even when read-only (gup_must_unshare,
    // mm/internal.h), so the pin keeps seeing what the process maps later.
    // A hole in a reserved private hugetlb mapping gets a private page from
    // the mapping's reservation (hugetlb_no_page adds it to no page cache).
    if (v.shared || (!write && !unshare && (v.resv === null || file.folio(fidx) >= 0))) {
      const head = file.folioAlloc(fidx, undo);
      return head < 0 ? allocFailed(mm, order) : head + sub;
    }
    // Write (or unshare) of a private file page: copy it (a hole copies as zeros).
    const src = file.folio(fidx);
    const head = allocPrivate(mm, v, key, order, order === 0 ? "wp_page_copy" : "alloc_hugetlb_folio");
    if (head < 0) return allocFailed(mm, order);
    if (src >= 0) for (let i = 0; i < 2 ** order; i++) mm.phys.copyFrame(head + i, src + i);
    setPrivate(mm, m, key, head, undo);
    noteConsumed(mm, v, key, undo);
    return head + sub;
  }
  if (order === 0 && !write && !unshare) return F_ZERO;
  const head = allocPrivate(mm, v, key, order, order === 0 ? "do_anonymous_page" : "alloc_hugetlb_folio");
  if (head < 0) return allocFailed(mm, order);
  setPrivate(mm, m, key, head, undo);
  noteConsumed(mm, v, key, undo);
  return head + sub;
}

/**
 * A new private folio for huge page `key` of v: from v's reservation when
 * it holds an unconsumed one there (alloc_hugetlb_folio with a
 * reservation cannot fail), else from what the pool has left.
 */
export function allocPrivate(mm: MmStruct, v: Vma, key: number, order: FolioOrder, site: string): number {
  const r = v.resv;
  if (r === null || r.consumed.has(key)) return mm.pages.allocFolio(order, site);
  return mm.pages.allocReservedFolio(order as 9 | 18);
}

/**
 * Mark v's reservation at `key` consumed (after setPrivate, so a rollback
 * gives the reservation back before it frees the folio).
 */
export function noteConsumed(_mm: MmStruct, v: Vma, key: number, undo: UndoLog | null): void {
  const r = v.resv;
  if (r === null || r.consumed.has(key)) return;
  r.consumed.add(key);
  undo?.add(() => {
    r.consumed.delete(key);
    r.hs.restoreReserve();
  });
}

/** The fault code for a failed allocation: SIGBUS for a limited hugetlb pool (ENOSPC), else OOM. */
export function allocFailed(mm: MmStruct, order: FolioOrder): number {
  return order !== 0 && mm.pages.hstate(order).limited ? F_NOHUGE : F_OOM;
}

/**
 * Break COW on the folio `old` at `key` (wp_page_copy, hugetlb_wp): a
 * copy of its bytes replaces it in this mm, which drops its reference on
 * the shared one. The new head, or -1 when no folio can be allocated.
 */
export function cowCopy(
  mm: MmStruct,
  m: PrivPages,
  key: number,
  old: number,
  order: FolioOrder,
  undo: UndoLog | null,
): number {
  const head = mm.pages.allocFolio(order, order === 0 ? "wp_page_copy" : "hugetlb_wp");
  if (head < 0) return -1;
  for (let i = 0; i < 2 ** order; i++) mm.phys.copyFrame(head + i, old + i);
  m.set(key, head);
  mm.pages.put(old);
  undo?.add(() => {
    mm.pages.get(old);
    m.set(key, old);
    mm.pages.put(head);
  });
  return head;
}

export function setPrivate(
  mm: MmStruct,
  m: PrivPages,
  key: number,
  head: number,
  undo: UndoLog | null,
): void {
  m.set(key, head);
  undo?.addFolio(m, key, head, mm.putFolio);
}

// Results of a fault besides a pfn.
export const F_SIGBUS = -1;
export const F_OOM = -2;
/** A read of an untouched private anonymous page: the shared zero page, nothing allocated. */
export const F_ZERO = -3;
/** A hugetlb fault with no reservation found no free huge page nor room for a surplus one (SIGBUS). */
export const F_NOHUGE = -4;

export function faultWhy(code: number): string {
  if (code === F_SIGBUS) return "past EOF";
  if (code === F_NOHUGE)
    return "SIGBUS: no free huge page without a reservation and no surplus allowed (MAP_NORESERVE, or a forked child's private copy)";
  return "no memory";
}
