import type { IommuDevice } from "../device.js";
import type { IommuDomain } from "../domain.js";
import type { InvalidateResult, IommuDriver, IommuUserData } from "../driver.js";

/**
 * The vIOMMU interface between iommufd and an IOMMU driver
 * (include/linux/iommufd.h: get_viommu_size / viommu_init in iommu_ops,
 * struct iommufd_viommu_ops, and the iommufd helpers drivers call). Only
 * the selftest mock driver implements it in the model; amd and intel have
 * no viommu_init (IOMMU_VIOMMU_ALLOC is EOPNOTSUPP there).
 */

/** What iommufd gives a driver of one vIOMMU object (struct iommufd_viommu as drivers see it). */
export interface ViommuCore {
  readonly type: number;
  /** iommufd_viommu_get_vdev_id(): the virtual ID of the device's vDEVICE here, or undefined (ENOENT). */
  vdevIdOf(dev: IommuDevice): bigint | undefined;
  /** iommufd_viommu_find_dev(). */
  findDev(virtId: bigint): IommuDevice | undefined;
  /** iommufd_viommu_report_event(): 0 or -errno (EOPNOTSUPP with no vEVENTQ of that type). */
  reportEvent(type: number, data: Uint8Array): number;
  /** iommufd_viommu_alloc_mmap(): an offset userspace passes to mmap() of the iommufd fd. */
  allocMmap(bytes: Uint8Array): bigint;
  /** iommufd_viommu_destroy_mmap(). */
  destroyMmap(offset: bigint): void;
}

/** A HW queue as a driver sees it (struct iommufd_hw_queue). */
export interface HwQueueCore {
  /** nesting_parent_iova. */
  readonly baseAddr: bigint;
  /** iommufd_hw_queue_depend(): `this` keeps `on` from being destroyed (EBUSY). */
  depend(on: HwQueueCore): void;
  /** The queue object's users (what depend/undepend change on `on`). */
  refGet(): void;
  refPut(): void;
  /** iommufd_hw_queue_undepend(). */
  undepend(on: HwQueueCore): void;
  /** Set by hw_queue_init_phys on success (hw_queue->destroy). */
  driverDestroy?: () => void;
}

/** struct iommufd_viommu_ops of one initialised vIOMMU. */
export interface ViommuState {
  /** Bytes viommu_init wrote back into the user's data (iommu_copy_struct_to_user), if any. */
  readonly outData?: Uint8Array;
  destroy(): void;
  allocDomainNested?(flags: number, userData: IommuUserData): IommuDomain;
  /** cache_invalidate(): `fetch` copies the user's array (undefined: EFAULT). */
  cacheInvalidate?(
    type: number,
    entryLen: number,
    entryNum: number,
    fetch: () => Uint8Array[] | undefined,
  ): InvalidateResult;
  /** get_hw_queue_size() != 0. */
  hwQueueSupported?(type: number): boolean;
  /** hw_queue_init_phys(): throws with the driver's errno. */
  hwQueueInitPhys?(q: HwQueueCore, index: number, basePa: bigint): void;
}

/** The iommu_ops side: get_viommu_size (a type test here) and viommu_init. */
export interface ViommuDriver {
  viommuSupported(dev: IommuDevice, type: number): boolean;
  viommuInit(core: ViommuCore, parent: IommuDomain, userData: IommuUserData | undefined): ViommuState;
}

export function viommuDriverOf(d: IommuDriver): ViommuDriver | undefined {
  const v = d as Partial<ViommuDriver>;
  return typeof v.viommuInit === "function" && typeof v.viommuSupported === "function"
    ? (v as ViommuDriver)
    : undefined;
}

/**
 * ops->set_dev_pasid of the domains a driver hands out, where the model has
 * it (the mock). `domain` undefined is the blocking domain (a PASID detach).
 * Throws with the driver's errno; nothing changes on failure.
 */
export interface PasidDriver {
  setDevPasid(domain: IommuDomain | undefined, dev: IommuDevice, pasid: number): void;
}

export function pasidDriverOf(d: IommuDriver): PasidDriver | undefined {
  const v = d as Partial<PasidDriver>;
  return typeof v.setDevPasid === "function" ? (v as PasidDriver) : undefined;
}
