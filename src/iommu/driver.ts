import type { KernelCtx } from "../kernel/kctx.js";
import type { IommuDevice } from "./device.js";
import type { IommuDomain } from "./domain.js";
import type { DmaTranslation, HwInfo, IommuCap, ResvRegion } from "./types.js";

/** What cache_invalidate_user reports. */
export interface InvalidateResult {
  handled: number;
  errno: number;
  reason?: string;
}

/** User data passed to a driver's domain allocation (struct iommu_user_data). */
export interface IommuUserData {
  type: number;
  bytes: Uint8Array;
}

/**
 * struct iommu_ops + iommu_domain_ops of one IOMMU driver, as the model
 * needs them. Methods that can fail throw KernelError (fail()) with the
 * driver's errno and rule.
 */
export interface IommuDriver {
  readonly name: "amd" | "intel" | "mock" | "spapr" | "noiommu";
  /** The machine the driver runs in (its domain ids, memory, fault injection). */
  readonly ctx: KernelCtx;
  /** ops->capable(). */
  capable(dev: IommuDevice, cap: IommuCap): boolean;
  /** ops->get_resv_regions(). */
  resvRegions(dev: IommuDevice): ResvRegion[];
  /**
   * ops->hw_info(): the driver's info struct. `reqType` is the input type of
   * IOMMU_HW_INFO_FLAG_INPUT_TYPE (0 = default); an unsupported one gives EOPNOTSUPP.
   */
  hwInfo(dev: IommuDevice, reqType: number): HwInfo;
  /** PASID width the device supports (out_max_pasid_log2); 0 = none. */
  maxPasidLog2(dev: IommuDevice): number;
  /** ops->domain_alloc_paging_flags(): flags are IOMMU_HWPT_ALLOC_*. */
  allocPaging(dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain;
  /** ops->domain_alloc_nested(); EOPNOTSUPP when the driver has none. */
  allocNested(dev: IommuDevice, parent: IommuDomain, flags: number, userData: IommuUserData): IommuDomain;
  /** ops->blocked_domain: the driver's static blocking domain. */
  readonly blockedDomain: IommuDomain;
  /** ops->identity_domain, if the driver has one. */
  readonly identityDomain: IommuDomain | undefined;
  /** What the kernel would pick as the group's default domain at boot. */
  defaultDomainType(dev: IommuDevice): "dma" | "identity" | "blocked" | "platform";
  /** ops->default_domain of a driver whose default is a static PLATFORM domain (sPAPR). */
  readonly platformDomain?: IommuDomain;
  /**
   * Drivers whose hardware does not translate through the attached domain's
   * table alone (sPAPR: the PE's TVEs, which a legacy VFIO container may
   * program while the group is blocked) translate device DMA themselves.
   */
  dmaTranslate?(dev: IommuDevice, iova: bigint, len: number, write: boolean): DmaTranslation;
  /** attach_dev(): the driver's compatibility checks, EINVAL when the domain cannot serve the device. */
  attachDev(domain: IommuDomain, dev: IommuDevice): void;
  /** enforce_cache_coherency(). */
  enforceCacheCoherency(domain: IommuDomain): boolean;
  /** dirty_ops->set_dirty_tracking(). */
  setDirtyTracking(domain: IommuDomain, enable: boolean): void;
  /**
   * cache_invalidate_user() of a nested domain: entries handled and the
   * errno that stopped the loop (0 when all were handled), as the uapi
   * writes entry_num back even on error.
   */
  cacheInvalidateUser?(
    domain: IommuDomain,
    type: number,
    entryLen: number,
    entries: Uint8Array[],
  ): InvalidateResult;
  /** Bookkeeping when a domain is freed (live-domain counters). */
  domainFreed(domain: IommuDomain): void;
}
