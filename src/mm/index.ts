/**
 * mm: process address spaces on simulated memory, as the syscall layer and
 * iommufd use them.
 *
 * - `PageTracker` (one per machine): folio references and long-term pins;
 *   a page returns to the FrameAllocator only when nothing maps, caches or
 *   pins it.
 * - `MmStruct` (one per process, `mm-struct.ts`: the state): mmap
 *   (`mmap.ts`) and munmap (`munmap.ts`) with Linux's checks and errnos,
 *   first-touch and COW faults (`fault.ts`), read/write of its own memory
 *   and translate (`access.ts`), pin_user_pages(FOLL_LONGTERM) and unpin
 *   (`gup.ts`), fork (`fork.ts`), release on exit.
 * - `MemFile`: a memfd (shmem or hugetlbfs) and its page cache: ftruncate,
 *   pread/pwrite, seals, memfd_pin_folios for IOMMU_IOAS_MAP_FILE.
 * - RLIMIT_MEMLOCK accounting of pins for iommufd's account modes
 *   (`accountLockedVm` / `unaccountLockedVm`), `UserStruct` per uid.
 * - Pinned pages come back as `PfnRuns`: runs of physically contiguous pfns.
 */

export * from "./foreign-memfd.js";
export * from "./foreign-mm.js";
export * from "./foreign-page-cache.js";
export * from "./io-mem.js";
export * from "./locked-vm.js";
export { hugeShiftFromLog, MemFile } from "./memfd.js";
export * from "./mm-struct.js";
export * as mman from "./mman.js";
export { type FolioOrder, type PageCounters, PageTracker } from "./page-tracker.js";
export * from "./pfn-runs.js";
export type { PageShift } from "./vma.js";
