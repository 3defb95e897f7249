import { pasidDriverOf } from "../iommu/drivers/viommu-ops.js";
import { EBUSY, EINVAL, ENODEV, EOPNOTSUPP, fail, KernelError } from "../uapi/errno.js";
import type { Igroup, IommufdDevice } from "./device.js";
import type { Hwpt } from "./hw-pagetable.js";

/** IOMMU_NO_PASID: the RID attachment (iommufd_device_attach with pasid 0). */
export const IOMMU_NO_PASID = 0;

/**
 * struct iommufd_attach_handle: what the IOMMU core keeps per attached
 * (group, PASID). Page requests point at it; detach or replace answers the
 * requests still pending on it (iommufd_auto_response_faults). `idev` is
 * the device that made the attachment (its ID is the fault's dev_id).
 */
export class AttachHandle {
  constructor(
    readonly idev: IommufdDevice,
    readonly pasid: number,
  ) {}
}

/** struct iommufd_attach for one non-zero PASID of an igroup (the RID's lives in Igroup.hwpt/devices). */
export interface PasidAttach {
  hwpt: Hwpt;
  devices: Set<IommufdDevice>;
  handle: AttachHandle;
}

/**
 * iommufd_hwpt_pasid_compat() for the RID: a HWPT allocated without
 * IOMMU_HWPT_ALLOC_PASID cannot take the RID while any PASID is attached.
 */
export function ridPasidCompat(ig: Igroup, hwpt: Hwpt): void {
  if (!hwpt.pasidCompat && ig.pasids.size > 0) {
    fail(
      EINVAL,
      `HWPT ${hwpt.id} was allocated without IOMMU_HWPT_ALLOC_PASID and PASID ${[...ig.pasids.keys()][0]} of the group is attached`,
    );
  }
}

/** iommufd_hwpt_pasid_compat() for a PASID: the HWPT and the RID's HWPT must both be PASID-compatible. */
function pasidCompat(ig: Igroup, hwpt: Hwpt, pasid: number): void {
  if (!hwpt.pasidCompat)
    fail(EINVAL, `HWPT ${hwpt.id} was allocated without IOMMU_HWPT_ALLOC_PASID (PASID ${pasid})`);
  if (ig.hwpt !== undefined && !ig.hwpt.pasidCompat) {
    fail(EINVAL, `the RID is attached to HWPT ${ig.hwpt.id}, which is not PASID-compatible`);
  }
}

/**
 * iommu_attach_device_pasid() / iommu_replace_device_pasid(): the core's
 * checks (set_dev_pasid on the domain, same driver, pasid below every
 * group device's max_pasids), then set_dev_pasid on each device; a device
 * that fails rolls the ones done back (to `old`, or to blocking).
 */
function coreSetPasid(idev: IommufdDevice, hwpt: Hwpt, pasid: number, old: Hwpt | undefined): void {
  const group = idev.igroup.group;
  const dev = idev.dev;
  if (group === null || dev === undefined) fail(ENODEV, `${idev.name} has no iommu_group`);
  const drv = pasidDriverOf(dev.driver);
  if (drv === undefined) {
    fail(
      EOPNOTSUPP,
      `the model's ${dev.driver.name} IOMMU driver has no set_dev_pasid (PASID attach not modelled)`,
    );
  }
  if (hwpt.domain.driver !== dev.driver)
    fail(EINVAL, `HWPT ${hwpt.id}'s domain is from another IOMMU driver`);
  for (const d of group.devices) {
    const maxPasids = 2 ** d.maxPasidLog2();
    if (pasid >= maxPasids) {
      fail(
        EINVAL,
        `PASID ${pasid} is beyond ${d.name}'s ${maxPasids} PASID(s) (pasid-num-bits ${d.maxPasidLog2()})`,
      );
    }
  }
  const done: typeof group.devices = [];
  try {
    for (const d of group.devices) {
      drv.setDevPasid(hwpt.domain, d, pasid);
      done.push(d);
    }
  } catch (e) {
    if (e instanceof KernelError) {
      for (const d of done) {
        try {
          drv.setDevPasid(old?.domain, d, pasid);
        } catch {
          // the core WARNs; the model keeps going
        }
      }
    }
    throw e;
  }
}

function coreClearPasid(idev: IommufdDevice, pasid: number): void {
  const group = idev.igroup.group;
  const dev = idev.dev;
  if (group === null || dev === undefined) return;
  const drv = pasidDriverOf(dev.driver);
  for (const d of group.devices) drv?.setDevPasid(undefined, d, pasid);
}

/** The HWPT a (device, PASID) is attached to. */
export function pasidHwpt(idev: IommufdDevice, pasid: number): Hwpt | undefined {
  if (pasid === IOMMU_NO_PASID) return idev.hwpt;
  const a = idev.igroup.pasids.get(pasid);
  return a?.devices.has(idev) ? a.hwpt : undefined;
}

/**
 * iommufd_hw_pagetable_attach() with a PASID: the device already there
 * (EBUSY, use replace), another HWPT on the group's PASID (EINVAL); the
 * group's first device attaches the domain after the compat checks.
 */
function hwptAttachPasid(idev: IommufdDevice, hwpt: Hwpt, pasid: number): void {
  const ig = idev.igroup;
  const a = ig.pasids.get(pasid);
  if (a?.devices.has(idev))
    fail(EBUSY, `PASID ${pasid} of ${idev.name} is already attached (replace it instead)`);
  if (a !== undefined && a.hwpt !== hwpt) {
    fail(
      EINVAL,
      `PASID ${pasid} of iommu_group ${ig.label} is attached to HWPT ${a.hwpt.id}; the group shares it`,
    );
  }
  if (a === undefined) {
    pasidCompat(ig, hwpt, pasid);
    coreSetPasid(idev, hwpt, pasid, undefined);
    ig.pasids.set(pasid, { hwpt, devices: new Set([idev]), handle: new AttachHandle(idev, pasid) });
  } else a.devices.add(idev);
  hwpt.refGet();
  idev.refGet();
}

function resolveHwpt(idev: IommufdDevice, ptId: number, pasid: number): Hwpt {
  const obj = idev.ictx.objects.get(ptId, undefined, "pt_id");
  if (obj.type === "HWPT_PAGING" || obj.type === "HWPT_NESTED") return obj;
  if (obj.type === "IOAS") {
    // The automatic domains (and a new one) are never PASID-compatible: each try is EINVAL.
    return fail(
      EINVAL,
      `PASID ${pasid}: an IOAS gives automatic HWPTs, which are not allocated with IOMMU_HWPT_ALLOC_PASID`,
    );
  }
  return fail(EINVAL, `pt_id ${ptId} is a ${obj.type}; attach takes an IOAS or a HWPT`);
}

/** iommufd_device_attach(idev, pasid != 0, pt_id). Returns the HWPT id. */
export function iommufdDevicePasidAttach(idev: IommufdDevice, pasid: number, ptId: number): number {
  const obj = idev.ictx.objects.get(ptId, undefined, "pt_id");
  if (obj.type === "IOAS" && idev.igroup.pasids.get(pasid)?.devices.has(idev)) {
    // The automatic-domain path tries an attach first, which sees the taken PASID.
    fail(EBUSY, `PASID ${pasid} of ${idev.name} is already attached (replace it instead)`);
  }
  const hwpt = resolveHwpt(idev, ptId, pasid);
  hwptAttachPasid(idev, hwpt, pasid);
  return hwpt.id;
}

/**
 * iommufd_device_replace(idev, pasid != 0, pt_id): the PASID must be
 * attached for this device (EINVAL); the same HWPT is a no-op; a driver
 * failure keeps the old attachment; every group device's reference moves.
 */
export function iommufdDevicePasidReplace(idev: IommufdDevice, pasid: number, ptId: number): number {
  const ig = idev.igroup;
  const obj = idev.ictx.objects.get(ptId, undefined, "pt_id");
  const a = ig.pasids.get(pasid);
  if (obj.type === "IOAS" || a === undefined || !a.devices.has(idev)) {
    if (a === undefined)
      fail(EINVAL, `PASID ${pasid} of iommu_group ${ig.label} is not attached; nothing to replace`);
    if (!a.devices.has(idev)) fail(EINVAL, `${idev.name} is not attached at PASID ${pasid}`);
  }
  const hwpt = resolveHwpt(idev, ptId, pasid);
  const old = a!.hwpt;
  if (old === hwpt) return hwpt.id;
  pasidCompat(ig, hwpt, pasid);
  coreSetPasid(idev, hwpt, pasid, old);
  old.fault?.autoResponse(a!.handle);
  a!.handle = new AttachHandle(idev, pasid);
  a!.hwpt = hwpt;
  const n = a!.devices.size;
  hwpt.refGet(n);
  old.refPut(n);
  return hwpt.id;
}

/** iommufd_device_detach(idev, pasid != 0): a PASID not attached is a silent no-op. */
export function iommufdDevicePasidDetach(idev: IommufdDevice, pasid: number): void {
  pasidDetach(idev, pasid, false);
}

/** The detach; while the device is being destroyed its own references (the attach's among them) are gone. */
function pasidDetach(idev: IommufdDevice, pasid: number, destroying: boolean): void {
  const ig = idev.igroup;
  const a = ig.pasids.get(pasid);
  if (a === undefined || !a.devices.has(idev)) return;
  a.devices.delete(idev);
  if (a.devices.size === 0) {
    coreClearPasid(idev, pasid);
    a.hwpt.fault?.autoResponse(a.handle);
    ig.pasids.delete(pasid);
  }
  a.hwpt.refPut();
  if (!destroying) idev.refPut();
}

/** Every PASID of the device (VFIO unbind, the selftest device's destroy). */
export function iommufdDevicePasidDetachAll(idev: IommufdDevice, destroying: boolean): void {
  for (const [pasid, a] of [...idev.igroup.pasids]) {
    if (!a.devices.has(idev)) continue;
    pasidDetach(idev, pasid, destroying);
  }
}
