import { EFAULT } from "../uapi/errno.js";
import type { MmStruct } from "./mm-struct.js";
import { PAGE_SIZE } from "./mman.js";
import { type PfnRuns, RunBuilder } from "./pfn-runs.js";

/**
 * follow_fault_pfn over [va, +nPages pages) of VM_PFNMAP mappings: the
 * device frames their PTEs map (faulted in through the device's fault
 * handler), with nothing pinned and no reference taken: what vfio type1's
 * vaddr_get_pfns falls back to when pin_user_pages refuses device memory.
 * null when the first page is not in a PFNMAP VMA (the caller's pin error
 * stands). EFAULT when a later page is not device memory (a range mixing
 * device memory and RAM is not modelled), when a write mapping lacks
 * PROT_WRITE, or when the device refuses the access (its fault handler
 * gives SIGBUS, so fixup_user_fault fails).
 */
export function followPfnmap(mm: MmStruct, vaB: bigint, nPages: number, write: boolean): PfnRuns | null {
  const va = mm.userRange(BigInt.asUintN(64, vaB) & ~BigInt(PAGE_SIZE - 1), nPages * PAGE_SIZE);
  if (va < 0 || nPages <= 0) return null;
  const first = mm.vmas.find(va);
  if (first === undefined || first.io === null) return null;
  const b = new RunBuilder(1);
  for (let i = 0; i < nPages; i++) {
    const cur = va + i * PAGE_SIZE;
    const v = mm.vmas.find(cur);
    if (v === undefined || v.io === null)
      return mm.err(EFAULT, `follow_pfn: 0x${cur.toString(16)} is not device memory (VM_PFNMAP)`);
    if (write && !v.mayWrite)
      return mm.err(EFAULT, `follow_pfn: write access to a device mapping without PROT_WRITE`);
    const pfn = v.io.pfn?.(v.fileOffset(cur)) ?? -1;
    if (pfn < 0)
      return mm.err(EFAULT, `follow_pfn: the device refused the fault at 0x${cur.toString(16)} (SIGBUS)`);
    b.push(pfn, 1);
  }
  return b.finish();
}
