/**
 * src/pt: generic page tables (drivers/iommu/generic_pt/) over simulated
 * physical memory.
 *
 * - createPageTable(env, format, cfg): pt_iommu_<fmt>_init with the kernel's
 *   checks and errnos (throws KernelError). Formats: amdv1, amdv1_mock (the
 *   iommufd selftest's 2 KiB-granule AMDv1), vtdss, x86_64, riscv
 *   (Sv39/48/57), spapr_tce (big-endian, multi-level as powernv IODA2).
 * - PageTable: mapPages / unmapPages / iovaToPhysPfn on pfns (numbers) in
 *   the table's unit, `unitLg2` (4 KiB; 2 KiB for amdv1_mock),
 *   limitPgsizes() for a driver's own pgsize_bitmap,
 *   mapPagesBig / unmapPagesBig / iovaToPhys for bigint callers,
 *   readAndClearDirty / setDirty, geometry() (aperture + pgsize_bitmap),
 *   info() (format, root, top level, HW register values), walkCtx() for the
 *   HW walker (src/hw/iommu-walker.ts), dump() / dumpText(), destroy(),
 *   tableFrames.
 * - Features by name (features.ts), prot flags (types.ts).
 */
export { POW2, toBig } from "./bits.js";
export {
  createPageTable,
  type DirtyRecord,
  type DumpEntry,
  PageTable,
  PT_FORMATS,
  type PtDomainGeometry,
  type PtEnv,
  type PtInfo,
} from "./engine.js";
export { ALL_FEATURES, type PtFeature } from "./features.js";
export {
  type FormatName,
  IOMMU_CACHE,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_MMIO,
  IOMMU_NOEXEC,
  IOMMU_READ,
  IOMMU_WRITE,
  type PtConfig,
} from "./types.js";

/** The noiommu seed configuration (pagetables.md section 5). */
export const NOIOMMU_AMDV1_CONFIG = {
  hwMaxVaszLg2: 64,
  hwMaxOaszLg2: 52,
  startingLevel: 2,
  features: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
} as const;
