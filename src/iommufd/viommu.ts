import { EINVAL, ENOENT, EOPNOTSUPP, EOVERFLOW, fail } from "../uapi/errno.js";
import { getDevice } from "./device.js";
import { U64_MAX } from "./iova-alloc.js";
import type { Ucmd } from "./ucmd.js";

// vIOMMU, vDEVICE, vEVENTQ, HW queue and fault queue objects. None of the
// model's IOMMU drivers (amd, intel, mock as built here) implement
// viommu_init / get_viommu_size, so no VIOMMU object can exist; the
// handlers run the kernel's argument checks in its order and then return
// the errno a kernel with such a driver returns. See docs/conformance.md.

const IOMMU_VIOMMU_TYPE_DEFAULT = 0;

/** IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl). */
export function viommuAlloc(u: Ucmd): number {
  if (u.num("flags") !== 0 || u.num("type") === IOMMU_VIOMMU_TYPE_DEFAULT) {
    fail(EOPNOTSUPP, "flags must be 0 and type must name a vIOMMU type");
  }
  const idev = getDevice(u.ictx, u.num("dev_id"));
  return fail(
    EOPNOTSUPP,
    `the ${idev.dev?.driver.name ?? "noiommu"} IOMMU driver has no vIOMMU support (viommu_init)`,
  );
}

/** IOMMU_VDEVICE_ALLOC: the vIOMMU lookup comes first. */
export function vdeviceAlloc(u: Ucmd): number {
  u.ictx.objects.get(u.num("viommu_id"), "VIOMMU", "vIOMMU");
  return fail(ENOENT, "unreachable: no vIOMMU objects exist");
}

/** IOMMU_VEVENTQ_ALLOC. */
export function veventqAlloc(u: Ucmd): number {
  if (u.num("flags") !== 0 || u.num("__reserved") !== 0 || u.num("type") === 0) {
    fail(EOPNOTSUPP, "flags/__reserved must be 0 and type must not be DEFAULT");
  }
  if (u.num("veventq_depth") === 0) fail(EINVAL, "veventq_depth is 0");
  u.ictx.objects.get(u.num("viommu_id"), "VIOMMU", "vIOMMU");
  return fail(ENOENT, "unreachable: no vIOMMU objects exist");
}

/** IOMMU_HW_QUEUE_ALLOC. */
export function hwQueueAlloc(u: Ucmd): number {
  if (u.num("flags") !== 0 || u.num("type") === 0)
    fail(EOPNOTSUPP, "flags must be 0 and type must not be DEFAULT");
  const length = u.big("length");
  if (length === 0n || length > U64_MAX) fail(EINVAL, "length is 0");
  if (u.big("nesting_parent_iova") + length - 1n > U64_MAX)
    fail(EOVERFLOW, "nesting_parent_iova + length overflows");
  u.ictx.objects.get(u.num("viommu_id"), "VIOMMU", "vIOMMU");
  return fail(ENOENT, "unreachable: no vIOMMU objects exist");
}

/** IOMMU_FAULT_QUEUE_ALLOC: fault queues (IOPF delivery) are not modelled. */
export function faultQueueAlloc(u: Ucmd): number {
  if (u.num("flags") !== 0) fail(EOPNOTSUPP, "flags must be 0");
  return fail(EOPNOTSUPP, "fault queues (IOPF) are not modelled: no IOMMU driver here reports page faults");
}
