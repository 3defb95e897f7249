import type { IommuDomain } from "../iommu/domain.js";
import { isNoiommuDomain, type NoiommuDriver } from "../iommu/drivers/noiommu.js";
import type { KernelCtx } from "../kernel/kctx.js";
import { ENODEV, fail } from "../uapi/errno.js";
import type { IommufdGlobals } from "./ctx.js";

/**
 * iommufd's side of hwpt_noiommu.c (the noiommu cdev series): which ops
 * allocate a device's paging domains, and how a device is recognised as
 * noiommu. The software domain itself (AMDv1, the seed's configuration)
 * is src/iommu/drivers/noiommu.ts.
 */
/** &iommufd_noiommu_ops; ENODEV when the kernel was built without it. */
export function noiommuOps(g: IommufdGlobals): NoiommuDriver {
  const d = g.noiommuOps;
  if (d === undefined) fail(ENODEV, "CONFIG_IOMMUFD_NOIOMMU is not built: no noiommu software domain");
  return d;
}

/**
 * iommufd_device_is_noiommu(): the kernel asks whether dev->iommu is
 * NULL (no IOMMU driver probed the device), not whether it has an
 * iommu_group: VFIO's group path gives a noiommu device a fake group.
 */
export function deviceIsNoiommu(k: KernelCtx, dev: unknown): boolean {
  return k.kconfig.IOMMUFD_NOIOMMU && dev === undefined;
}

/** domain->owner == &iommufd_noiommu_ops. */
export function isNoiommuStorage(d: IommuDomain | undefined): boolean {
  return isNoiommuDomain(d);
}
