import { accountMmLockedVm } from "../mm/locked-vm.js";
import type { MmStruct } from "../mm/mm-struct.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { runsToArray } from "../mm/pfn-runs.js";
import { EBUSY, EFAULT, EINVAL, ENOENT, ENOMEM, ENXIO, fail, rethrowWith } from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE, PAGE_SHIFT } from "../uapi/linux.js";

/**
 * struct mm_iommu_table_group_mem_t (arch/powerpc/mm/book3s64/iommu_api.c):
 * user memory pre-registered (pinned and charged to locked_vm) for sPAPR
 * v2 containers, per mm, shared by every container of that mm.
 */
export interface MmIommuMem {
  ua: bigint;
  entries: number;
  /** Largest IOMMU page shift this memory can back (alignment and hugetlb folio sizes). */
  pageshift: number;
  /** Host pfn of each 4 KiB page. */
  hpas: number[];
  /** log2 of the folio each page belongs to (page_shift(compound_head(page))). */
  folioShift: Uint8Array;
  runs: PfnRuns;
  /** References: registrations (and lookups in flight). */
  used: number;
  /** 1 + TCEs that point into the region; 0 once released. */
  mapped: number;
}

/**
 * The pre-registered regions of one machine: mm->context.iommu_group_mem_list
 * of each mm that registered memory, kept by the machine's VFIO (an mm
 * leaves it when it dies: cleanup()).
 */
export class MmIommuRegistry {
  private readonly lists = new Map<MmStruct, MmIommuMem[]>();

  /** Every pre-registered region of the machine's live mms (for the pin counters and invariants). */
  all(): MmIommuMem[] {
    const out: MmIommuMem[] = [];
    for (const l of this.lists.values()) out.push(...l);
    return out;
  }

  /**
   * The mm dies. The kernel's mm_iommu_cleanup only WARNs about regions
   * still registered (a container released while another container's TCEs
   * pointed into its region leaves one with a reference nobody drops); the
   * model unpins and uncharges them so nothing outlives its owner. Returns
   * the regions freed.
   */
  cleanup(mm: MmStruct): MmIommuMem[] {
    const l = this.lists.get(mm) ?? [];
    this.lists.delete(mm);
    for (const mem of l) {
      mem.mapped = 0;
      mem.used = 0;
      mm.unpinUserPages(mem.runs);
      accountMmLockedVm(mm, mem.entries, false);
    }
    return l;
  }

  /** mm->context.iommu_group_mem_list (empty when the mm registered nothing). */
  list(mm: MmStruct): readonly MmIommuMem[] {
    return this.lists.get(mm) ?? [];
  }

  /** Pages the mm's pre-registered regions charged to its locked_vm (mm_iommu_new), for the invariants. */
  charged(mm: MmStruct): number {
    let n = 0;
    for (const m of this.list(mm)) n += m.entries;
    return n;
  }

  /**
   * mm_iommu_new(): charge `entries` pages to locked_vm (ENOMEM), pin them for
   * write (EFAULT), work out the page shift the region can back, then refuse
   * an overlap with a registered region (EINVAL). All or nothing.
   */
  new(mm: MmStruct, ua: bigint, entries: number): MmIommuMem {
    const mem = mmIommuPrepare(mm, ua, entries, this.list(mm));
    let l = this.lists.get(mm);
    if (l === undefined) {
      l = [];
      this.lists.set(mm, l);
    }
    l.push(mem);
    return mem;
  }

  /** mm_iommu_get(): the region registered with exactly this ua and size, with a reference taken. */
  get(mm: MmStruct, ua: bigint, entries: number): MmIommuMem | undefined {
    const mem = this.list(mm).find((m) => m.ua === ua && m.entries === entries);
    if (mem !== undefined) mem.used++;
    return mem;
  }

  /**
   * mm_iommu_put(): drop a reference; the last one releases the region
   * (unpin, uncharge) unless TCEs still point into it (EBUSY, reference kept).
   */
  put(mm: MmStruct, mem: MmIommuMem): number {
    if (mem.used === 0) return -ENOENT;
    mem.used--;
    if (mem.used > 0) return 0;
    if (mem.mapped !== 1) {
      mem.used++;
      return -EBUSY;
    }
    mem.mapped = 0;
    const list = this.lists.get(mm) ?? [];
    list.splice(list.indexOf(mem), 1);
    if (list.length === 0) this.lists.delete(mm);
    mm.unpinUserPages(mem.runs);
    accountMmLockedVm(mm, mem.entries, false);
    return 0;
  }

  /** mm_iommu_lookup(): the region holding [ua, ua+size). */
  lookup(mm: MmStruct, ua: bigint, size: bigint): MmIommuMem | undefined {
    return this.list(mm).find((m) => m.ua <= ua && ua + size <= m.ua + BigInt(m.entries) * PAGE);
  }
}

function lowestBit(x: bigint): number {
  if (x === 0n) return 64;
  let n = 0;
  while ((x & 1n) === 0n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/** mm_iommu_new() up to the list insertion: charged, pinned, checked against `list`; all or nothing. */
function mmIommuPrepare(mm: MmStruct, ua: bigint, entries: number, list: readonly MmIommuMem[]): MmIommuMem {
  if (accountMmLockedVm(mm, entries, true) !== 0) {
    fail(ENOMEM, `mm_iommu_new: ${entries} pages over RLIMIT_MEMLOCK (account_locked_vm)`);
  }
  if (entries === 0) {
    accountMmLockedVm(mm, 0, false);
    fail(ENOMEM, "mm_iommu_new: vzalloc of a zero-entry array returns NULL");
  }
  let runs: PfnRuns;
  try {
    runs = mm.pinUserPages(ua, entries, true, "mm_iommu_new");
  } catch (e) {
    accountMmLockedVm(mm, entries, false);
    rethrowWith(e, "mm_iommu_new: pin_user_pages(FOLL_LONGTERM|FOLL_WRITE) failed: ");
  }
  const hpas = runsToArray(runs);
  const folioShift = new Uint8Array(entries);
  // Start from the natural alignment of ua and the size; hugetlb folios may raise the per-page bound.
  let memShift = lowestBit(ua | (BigInt(entries) << BigInt(PAGE_SHIFT)));
  let ps = PAGE_SHIFT;
  for (let i = 0; i < entries; i++) {
    const v = mm.vmas.find(Number(ua) + i * 4096);
    const fs = Math.log2(v?.pageSize ?? 4096);
    folioShift[i] = fs;
    if (memShift > PAGE_SHIFT && fs > PAGE_SHIFT) ps = fs;
    memShift = Math.min(memShift, ps);
  }
  const end = ua + BigInt(entries) * PAGE;
  if (list.some((m) => m.ua < end && ua < m.ua + BigInt(m.entries) * PAGE)) {
    mm.unpinUserPages(runs);
    accountMmLockedVm(mm, entries, false);
    fail(EINVAL, `mm_iommu_new: [0x${ua.toString(16)}, 0x${end.toString(16)}) overlaps a registered region`);
  }
  return { ua, entries, pageshift: memShift, hpas, folioShift, runs, used: 1, mapped: 1 };
}

/** mm_iommu_mapped_inc(): one more TCE points into the region; ENXIO once the region is being released. */
export function mmIommuMappedInc(mem: MmIommuMem): number {
  if (mem.mapped === 0) return -ENXIO;
  mem.mapped++;
  return 0;
}

/** mm_iommu_mapped_dec(): one TCE fewer; the base count 1 (the registration's) stays. */
export function mmIommuMappedDec(mem: MmIommuMem): void {
  if (mem.mapped > 1) mem.mapped--;
}

/** mm_iommu_ua_to_hpa(): host pfn of ua's page, or -EFAULT past the region or above its page shift. */
export function mmIommuUaToHpa(mem: MmIommuMem, ua: bigint, pageshift: number): number {
  const entry = Number((ua - mem.ua) >> BigInt(PAGE_SHIFT));
  if (entry >= mem.entries) return -EFAULT;
  if (pageshift > mem.pageshift) return -EFAULT;
  return mem.hpas[entry];
}
