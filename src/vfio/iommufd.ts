import type { IommuGroup } from "../iommu/group.js";
import type { IommufdCtx } from "../iommufd/ctx.js";
import { IommufdDevice as IommufdDeviceObj } from "../iommufd/device.js";
import {
  type IommufdDevice,
  iommufdCtxFromFile,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDevicePasidAttach,
  iommufdDevicePasidDetach,
  iommufdDevicePasidReplace,
  iommufdDeviceUnbind,
  iommufdVfioCompatIoasCreate,
  iommufdVfioCompatIoasGetId,
  iommufdVfioCompatSetNoIommu,
} from "../iommufd/index.js";
import type { KFile } from "../kernel/file.js";
import { ENODEV, ENOSPC, fail, KernelError } from "../uapi/errno.js";
import type { VfioDevice } from "./device.js";

/**
 * drivers/vfio/iommufd.c for physical devices: what vfio-pci's
 * bind_iommufd / attach_ioas / detach_ioas / unbind_iommufd do.
 */
export interface VfioIommufdBinding {
  idev: IommufdDevice;
  ictx: IommufdCtx;
  attached: boolean;
  /** PASIDs attached through VFIO_DEVICE_ATTACH_IOMMUFD_PT (vdev->pasids, an ida). */
  pasids: Set<number>;
}

/** iommufd_ctx_from_file(): EBADFD for anything but an iommufd (the caller already did fdget: EBADF). */
export function vfioIommufdCtxFromFile(file: KFile): IommufdCtx {
  return iommufdCtxFromFile(file);
}

/** iommufd_ctx_has_group(): some device bound to the context is in the iommu_group. */
export function vfioIommufdCtxHasGroup(ictx: IommufdCtx, group: IommuGroup): boolean {
  return ictx.objects.values().some((o) => o instanceof IommufdDeviceObj && o.igroup?.group === group);
}

/** vfio_iommufd_physical_bind(): returns the DEVICE object id. */
export function vfioIommufdPhysicalBind(device: VfioDevice, ictx: IommufdCtx): number {
  const idev = iommufdDeviceBind(ictx, device.iommuDev, { name: device.bdf });
  device.iommufd = { idev, ictx, attached: false, pasids: new Set() };
  return idev.id;
}

/** vfio_iommufd_physical_attach_ioas(): attach, or replace when attached. Returns the HWPT id used. */
export function vfioIommufdPhysicalAttach(device: VfioDevice, ptId: number): number {
  const b = device.iommufd;
  if (b === null) fail(ENODEV, `${device.bdf} is not bound to an iommufd`);
  const id = iommufdDeviceAttach(b.idev, ptId);
  b.attached = true;
  return id;
}

/** vfio_iommufd_physical_detach_ioas(): nothing to do when not attached. */
export function vfioIommufdPhysicalDetach(device: VfioDevice): void {
  const b = device.iommufd;
  if (b === null || !b.attached) return;
  iommufdDeviceDetach(b.idev);
  b.attached = false;
}

/**
 * vfio_iommufd_physical_pasid_attach_ioas(): replace when the PASID is
 * already attached, else take it in the ida (ENOSPC past INT_MAX) and attach.
 */
export function vfioIommufdPhysicalPasidAttach(device: VfioDevice, pasid: number, ptId: number): number {
  const b = device.iommufd;
  if (b === null) fail(ENODEV, `${device.bdf} is not bound to an iommufd`);
  if (b.pasids.has(pasid)) return iommufdDevicePasidReplace(b.idev, pasid, ptId);
  if (pasid > 0x7fffffff) fail(ENOSPC, `PASID ${pasid} is beyond the ida's INT_MAX`);
  const id = iommufdDevicePasidAttach(b.idev, pasid, ptId);
  b.pasids.add(pasid);
  return id;
}

/** vfio_iommufd_physical_pasid_detach_ioas(): nothing to do for a PASID VFIO did not attach. */
export function vfioIommufdPhysicalPasidDetach(device: VfioDevice, pasid: number): void {
  const b = device.iommufd;
  if (b === null || !b.pasids.has(pasid)) return;
  iommufdDevicePasidDetach(b.idev, pasid);
  b.pasids.delete(pasid);
}

/** vfio_iommufd_physical_unbind(): every PASID first, then the RID. */
export function vfioIommufdPhysicalUnbind(device: VfioDevice): void {
  const b = device.iommufd;
  if (b === null) return;
  for (const pasid of [...b.pasids].sort((x, y) => x - y)) iommufdDevicePasidDetach(b.idev, pasid);
  b.pasids.clear();
  if (b.attached) iommufdDeviceDetach(b.idev);
  iommufdDeviceUnbind(b.idev);
  device.iommufd = null;
}

/** iommufd's VFIO compat entry points the group path calls (drivers/iommu/iommufd/vfio_compat.c). */
export const iommufdCompat = {
  ioasCreate: (ictx: IommufdCtx): void => void iommufdVfioCompatIoasCreate(ictx),
  ioasGetId: (ictx: IommufdCtx): number => iommufdVfioCompatIoasGetId(ictx),
  setNoIommu: (ictx: IommufdCtx): void => iommufdVfioCompatSetNoIommu(ictx),
  /** vfio_iommufd_device_has_compat_ioas(): iommufd_vfio_compat_ioas_get_id() succeeds. */
  hasIoas: (ictx: IommufdCtx): boolean => {
    try {
      iommufdVfioCompatIoasGetId(ictx);
      return true;
    } catch (e) {
      if (e instanceof KernelError && e.errno === ENODEV) return false;
      throw e;
    }
  },
};
