import type { MmStruct } from "./mm-struct.js";
import type { FolioOrder } from "./page-tracker.js";
import type { Vma } from "./vma.js";

/**
 * dup_mmap's copy of private pages: COW sharing, or an immediate copy of a pinned folio.
 */

/** copy_page_range of one private VMA: share each folio COW, or copy it when pinned. False on ENOMEM. */
export function copyPrivate(mm: MmStruct, v: Vma, child: MmStruct): boolean {
  const m = mm.privMap(v.shift);
  if (m.size === 0) return true;
  const cm = child.privMap(v.shift);
  const order = (v.shift - 12) as FolioOrder;
  const size = v.pageSize;
  const k0 = Math.floor(v.start / size);
  const k1 = Math.ceil(v.end / size);
  const copyOne = (key: number, head: number): boolean => {
    if (!mm.pages.isPinned(head)) {
      mm.pages.get(head);
      cm.set(key, head);
      return true;
    }
    const copy = mm.pages.allocFolio(order, order === 0 ? "copy_present_page" : "copy_hugetlb_page_range");
    if (copy < 0) return false;
    for (let i = 0; i < 2 ** order; i++) mm.phys.copyFrame(copy + i, head + i);
    cm.set(key, copy);
    return true;
  };
  if (k1 - k0 <= m.size) {
    for (let k = k0; k < k1; k++) {
      const head = m.get(k);
      if (head >= 0 && !copyOne(k, head)) return false;
    }
    return true;
  }
  let ok = true;
  m.forEach((k, head) => {
    if (ok && k >= k0 && k < k1) ok = copyOne(k, head);
  });
  return ok;
}
