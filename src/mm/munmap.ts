import { EINVAL, ENOMEM } from "../uapi/errno.js";
import type { MmStruct } from "./mm-struct.js";
import { DEFAULT_MAX_MAP_COUNT, PAGE_SIZE, TASK_SIZE } from "./mman.js";
import { alignUp64, U64 } from "./mmap.js";
import { Vma } from "./vma.js";

/**
 * munmap(2) and the teardown of a range of VMAs: splitting, dropping private pages,
 * uncharging VM_LOCKED.
 */

/** munmap(2): 0 or -errno. Unmapping nothing is not an error. */
export function doMunmap(mm: MmStruct, addrB: bigint, lenB: bigint): number {
  mm.checkLive();
  const addr = BigInt.asUintN(U64, addrB);
  const len0 = BigInt.asUintN(U64, lenB);
  if ((addr & 0xfffn) !== 0n) return mm.err(EINVAL, "munmap: address is not page aligned");
  if (addr > BigInt(TASK_SIZE) || len0 > BigInt(TASK_SIZE) - addr) {
    return mm.err(EINVAL, "munmap: range beyond TASK_SIZE");
  }
  const len = alignUp64(len0, PAGE_SIZE);
  if (len === 0n) return mm.err(EINVAL, "munmap: zero length");
  const start = Number(addr);
  const end = start + Number(len);
  const rc = checkUnmap(mm, start, end);
  if (rc < 0) return rc;
  unmapRange(mm, start, end);
  return 0;
}

/** What can refuse an unmap of [start, end): splitting a hugetlb VMA off its page size, map count. */
export function checkUnmap(mm: MmStruct, start: number, end: number): number {
  const vs = mm.vmas.overlapping(start, end);
  for (const v of vs) {
    if (v.shift === 12) continue;
    const size = v.pageSize;
    if ((start > v.start && start % size !== 0) || (end < v.end && end % size !== 0)) {
      return mm.err(EINVAL, `munmap: would split a hugetlb mapping off its ${size}-byte page boundary`);
    }
  }
  if (vs.length === 1 && vs[0].start < start && vs[0].end > end && mm.vmas.length >= DEFAULT_MAX_MAP_COUNT) {
    return mm.err(ENOMEM, "munmap: splitting would exceed vm.max_map_count");
  }
  return 0;
}

/** Tear down [start, end) (already checked): split VMAs, drop private pages, uncharge VM_LOCKED. */
export function unmapRange(mm: MmStruct, start: number, end: number): void {
  for (const v of mm.vmas.overlapping(start, end)) {
    const s = Math.max(start, v.start);
    const e = Math.min(end, v.end);
    if (!v.shared) mm.zapPrivate(v, s, e);
    // hugetlb_vm_op_close: the unmapped part's unconsumed reservations go back
    v.resv?.release(s / v.pageSize, e / v.pageSize);
    if (v.locked) mm.lockedVm -= (e - s) / PAGE_SIZE;
    mm.vmas.remove(v);
    mm.pages.liveVmas--;
    v.file?.removeMapping(v);
    if (v.start < s) insertPiece(mm, v, v.start, s);
    if (e < v.end) insertPiece(mm, v, e, v.end);
    v.file?.put();
    v.io?.put?.();
  }
}

export function insertPiece(mm: MmStruct, v: Vma, start: number, end: number): void {
  const pgoff = v.file !== null ? v.pgoff + (start - v.start) / PAGE_SIZE : 0;
  const piece = new Vma(mm, start, end, v.prot, v.shared, v.shift, v.file, pgoff, v.locked, v.anon);
  piece.resv = v.resv;
  if (v.io !== null) {
    piece.io = v.io;
    piece.pgoff = v.pgoff + (start - v.start) / PAGE_SIZE;
    v.io.get?.();
  }
  mm.vmas.insert(piece);
  mm.pages.liveVmas++;
  if (v.file !== null) {
    v.file.get();
    v.file.addMapping(piece);
  }
}

/** Drop the private pages of `v` in [start, end) (munmap, or truncation of its file). */
export function zapPrivate(mm: MmStruct, v: Vma, start: number, end: number): void {
  const m = mm.privMap(v.shift);
  if (m.size === 0) return;
  const size = v.pageSize;
  const k0 = Math.floor(start / size);
  const k1 = Math.ceil(end / size);
  if (k1 - k0 <= m.size) {
    for (let k = k0; k < k1; k++) {
      const head = m.get(k);
      if (head >= 0) {
        m.delete(k);
        mm.pages.put(head);
      }
    }
  } else {
    // insertion order (as the Map this replaced): it decides the order frames return to the allocator
    m.forEach((k, head) => {
      if (k >= k0 && k < k1) {
        m.delete(k);
        mm.pages.put(head);
      }
    });
  }
}
