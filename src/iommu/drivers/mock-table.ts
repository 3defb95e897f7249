import type { FrameAllocator } from "../../hw/frame-alloc.js";
import type { PhysMem } from "../../hw/phys-mem.js";
import type { PtConfig } from "../../pt/types.js";
import { newPtTable, type PtTable } from "../pt-table.js";

/** MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2 (selftest.c; MOCK_PAGE_SIZE in the newer iommufd_test.h). */
export const MOCK_IO_PAGE_SIZE = 2048;
export const MOCK_IO_PAGE_LG2 = 11;
/** MOCK_HUGE_PAGE_SIZE = 512 * MOCK_IO_PAGE_SIZE (1 MiB). */
export const MOCK_HUGE_PAGE_LG2 = 20;

/**
 * The cfg mock_domain_alloc_pgtable() passes to pt_iommu_amdv1_mock_init()
 * for MOCK_IOMMUPT_DEFAULT: "the mock version has a 2k page size",
 * hw_max_vasz_lg2 56, hw_max_oasz_lg2 51, starting level 2, no features.
 * Without DYNAMIC_TOP the table stays 3 levels and translates 38 VA bits
 * (11 + 9 * 3), which covers the mock aperture.
 */
export const MOCK_PT_CFG: PtConfig = {
  hwMaxVaszLg2: 56,
  hwMaxOaszLg2: 51,
  startingLevel: 2,
  features: [],
};

/**
 * The selftest mock's page table as the kernel builds it since the selftest
 * moved from an xarray to generic_pt ("iommufd: Change the selftest to use
 * iommupt instead of xarray"): a real amdv1_mock table (src/pt) in simulated
 * page-table frames, counted in ptFrames, walked by the hardware walker for
 * the memcpy device's DMA. `pgsizesLg2` is the domain's pgsize_bitmap
 * (selftest.c's 2 KiB, plus 1 MiB for a HUGE_IOVA device), which also
 * bounds the leaves map_pages picks (pt_compute_best_pgsize works on the
 * domain's bitmap). Map, unmap, iova_to_phys and dirty are
 * generic_pt's (IOMMU_PT_DOMAIN_OPS / IOMMU_PT_DIRTY_OPS): a map over a
 * present entry is EADDRINUSE, an unmap stops at a hole, a table allocation
 * failure is ENOMEM. The mock has no hardware dirty bits: DMA leaves D
 * alone, IOMMU_TEST_OP_DIRTY (set_dirty) sets it.
 * Throws KernelError (ENOMEM) when the top table cannot be allocated.
 */
export function newMockTable(mem: PhysMem, alloc: FrameAllocator, pgsizesLg2: readonly number[]): PtTable {
  return newPtTable(mem, alloc, "amdv1_mock", MOCK_PT_CFG, { hwDirty: false, pgsizesLg2 });
}
