import type { FeatureSets, PtFeature } from "./features.js";

/**
 * "amdv1_mock" is generic_pt's AMDv1 built with AMDV1_IOMMUFD_SELFTEST
 * (fmt/iommu_mock.c): the iommufd selftest's 2 KiB-granule variant.
 */
export type FormatName = "amdv1" | "amdv1_mock" | "vtdss" | "x86_64" | "riscv" | "spapr_tce";

// Prot flags, include/linux/iommu.h.
export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
export const IOMMU_CACHE = 4;
export const IOMMU_NOEXEC = 8;
export const IOMMU_MMIO = 0x10;
/** read_and_clear_dirty flag: report without clearing. */
export const IOMMU_DIRTY_NO_CLEAR = 1;

/** What a caller asks for (pt_iommu_<fmt>_cfg plus what the driver supplies). */
export interface PtConfig {
  /** Requested features by name (PT_FEAT_ without the prefix). */
  features?: readonly string[];
  hwMaxVaszLg2: number;
  hwMaxOaszLg2: number;
  /** AMDv1: generic level of the first top table (1..5). */
  startingLevel?: number;
  /** SME C-bit mask OR'ed in by the *_ENCRYPT_TABLES features (0 = SME inactive). */
  smeMask?: bigint;
  /** CONFIG_DEBUG_GENERIC_PT: every feature supported, forced ones optional. */
  debugGenericPt?: boolean;
  /** Whether the driver supplies change_top + get_top_lock (default true). */
  driverHasChangeTop?: boolean;
  /** driver_ops->change_top: program the HW root (DTE) before the new top is published. */
  changeTop?: (rootPfn: number, topLevel: number) => void;
  /** Whether pt_iommu.iommu_device is set (needed by DMA_INCOHERENT; default true). */
  hasIommuDevice?: boolean;
  /** FrameAllocator fail-point site for table pages. */
  allocSite?: string;
  /** spapr_tce: IOMMU page shift (>= 12), window size (power of 2), levels (1..5), bus offset. */
  pageShift?: number;
  windowSize?: bigint;
  levels?: number;
  busOffset?: bigint;
}

/**
 * The layout the engine walks, fixed at init. Addresses (IOVA and output)
 * are counted in the table's unit of 2^unitLg2 bytes: the format's granule
 * (4 KiB; 2 KiB for amdv1_mock), or 4 KiB for TCE windows of any page size.
 * Table frames are always 4 KiB PhysMem frame numbers.
 */
export interface PtGeometry {
  /** log2 bytes of the unit every address quantity is counted in. */
  unitLg2: number;
  /** log2 of a level-0 item in units (0 except for large-page TCE windows). */
  granuleShift: number;
  /** Index bits decoded by each level (9 for generic_pt formats). */
  levelBits: number;
  topLevel: number;
  maxTopLevel: number;
  /** VA bits the table translates (max_vasz_lg2). */
  maxVaLg2: number;
  maxOaLg2: number;
  signExtend: boolean;
  dynamicTop: boolean;
  /** First IOVA pfn of the window (TCE bus offset); 0 otherwise. */
  vaBasePfn: number;
  /** Number of unit pfns the window spans from vaBasePfn when bounded (TCE it_size); 0 = by geometry. */
  windowPfns: number;
  /** log2 of a table's size in bytes (12, or more for big TCE levels). */
  tableLg2: number;
}

/**
 * One format's entry encoders/decoders. An instance carries its table's
 * settings (SME mask, coherence). Encoders leave the result in `lo`/`hi`
 * so the engine's hot paths allocate nothing.
 */
export interface PtFormatImpl {
  readonly name: FormatName;
  readonly bigEndian: boolean;
  /** The dirty bit of a leaf (lo, hi masks); both 0 when the format has no dirty tracking. */
  readonly dirtyLo: number;
  readonly dirtyHi: number;
  lo: number;
  hi: number;
  /**
   * True when a natural-size leaf is exactly (output unit number << 12) |
   * constant bits, so the engine's fast path can OR a precomputed template
   * (AMDv1, VT-d, x86-64: PA bits 51:12; amdv1_mock: PA >> 11 in bits 51:12).
   */
  readonly addrAt12: boolean;
  /** Leaf attribute bits computed by setProt. */
  attrLo: number;
  attrHi: number;
  /** For a non-empty entry at `level`: does it point at a lower table? */
  isTable(lo: number, hi: number, level: number): boolean;
  /** The 4 KiB frame of the table a table entry points at. */
  childPfn(lo: number, hi: number): number;
  /** log2 (in units) of the size of the leaf this entry belongs to. */
  leafShift(lo: number, hi: number, level: number): number;
  /** First unit of the leaf's output (contiguous encodings decoded). */
  leafPfn(lo: number, hi: number, level: number): number;
  /** A table entry pointing at the table in 4 KiB frame childPfn. */
  encTable(childPfn: number, level: number): void;
  /** Leaf of size 2^(shift) units at `level`, output unit `pfn`, with attrLo/attrHi. */
  encLeaf(pfn: number, shift: number, level: number): void;
  /** 0 or -errno (the format's set_prot rules). */
  setProt(prot: number): number;
  canHaveLeaf(level: number): boolean;
  /** Leaf sizes (log2 bytes) an entry at this level may hold (pt_possible_sizes). */
  possibleSizes(level: number): readonly number[];
  describe(lo: number, hi: number, level: number): string;
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint>;
}

/** A format as the init code sees it. */
export interface PtFormatDef extends FeatureSets {
  readonly name: FormatName;
  readonly granuleLg2: number;
  readonly maxVaLg2: number;
  readonly maxOaLg2: number;
  readonly maxTopLevel: number;
  /** The format's fmt_init: top level and VA size from the cfg; throws KernelError. */
  fmtInit(cfg: PtConfig, st: InitState): void;
  create(cfg: PtConfig, features: ReadonlySet<PtFeature>, st: InitState): PtFormatImpl;
}

export interface InitState {
  features: Set<PtFeature>;
  supported: Set<PtFeature>;
  forced: readonly PtFeature[];
  maxVaLg2: number;
  maxOaLg2: number;
  topLevel: number;
  feature(f: PtFeature): boolean;
}
