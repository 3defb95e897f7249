/**
 * Shared iommu-core vocabulary (include/linux/iommu.h): domain types,
 * capabilities, reserved-region types and the shapes the layer hands out.
 */

/** enum iommu_domain type, by name (IOMMU_DOMAIN_UNMANAGED and _DMA are both "paging" here). */
export type IommuDomainType = "paging" | "blocked" | "identity" | "nested" | "platform";

/** A paging domain's purpose: the kernel DMA API's default domain, or a user (UNMANAGED) one. */
export type PagingUse = "dma" | "unmanaged";

/** enum iommu_cap, by name. */
export type IommuCap =
  | "CACHE_COHERENCY"
  | "NOEXEC"
  | "PRE_BOOT_PROTECTION"
  | "ENFORCE_CACHE_COHERENCY"
  | "DEFERRED_FLUSH"
  | "DIRTY_TRACKING"
  | "PCI_ATS_SUPPORTED";

/** enum iommu_resv_type (include/linux/iommu.h). */
export const IOMMU_RESV_DIRECT = 0;
export const IOMMU_RESV_DIRECT_RELAXABLE = 1;
export const IOMMU_RESV_RESERVED = 2;
export const IOMMU_RESV_MSI = 3;
export const IOMMU_RESV_SW_MSI = 4;
export type IommuResvType = 0 | 1 | 2 | 3 | 4;

export const RESV_TYPE_NAMES: Record<IommuResvType, string> = {
  0: "direct",
  1: "direct-relaxable",
  2: "reserved",
  3: "msi",
  4: "msi",
};

/** struct iommu_resv_region: [start, last] inclusive, as iommufd consumes it. */
export interface ResvRegion {
  start: bigint;
  /** Inclusive last byte (start + length - 1). */
  last: bigint;
  prot: number;
  type: IommuResvType;
}

/**
 * One IOVA window a domain translates ([start, last] inclusive). x86 domains
 * have one; PPC64 (sPAPR) paging domains have one per DMA window, so the
 * geometry is a list from the start.
 */
export interface Aperture {
  start: bigint;
  last: bigint;
}

/** m.debug.hwpt(): the table's shape (generic_pt's 0-based top level). */
export interface PtInfo {
  format: "amdv1" | "vtdss" | "x86_64" | "riscv" | "spapr_tce" | "amdv1_mock";
  rootPhys: bigint;
  topLevel: number;
}

/** One physically contiguous piece of a translated DMA range. */
export interface DmaSegment {
  /** Physical address (< 2^53, a number so devices can copy without BigInt). */
  pa: number;
  len: number;
}

/** Why a DMA was refused, in the IOMMU's terms. */
export type DmaFaultReason =
  | "blocked" // no translation: blocked domain (or none attached)
  | "not-present" // IOVA has no mapping
  | "write-protected" // mapping lacks write permission
  | "read-protected" // mapping lacks read permission
  | "out-of-range" // IOVA beyond what the table can translate
  | "bad-entry"; // the walker met a malformed entry

export type DmaTranslation =
  | { ok: true; segments: DmaSegment[] }
  | { ok: false; addr: bigint; reason: DmaFaultReason };

/** The driver-private data GET_HW_INFO hands back. */
export interface HwInfo {
  /** enum iommu_hw_info_type value (IOMMU_HW_INFO_TYPE_SELFTEST for the mock). */
  type: number;
  data: Uint8Array;
}
