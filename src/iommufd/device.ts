import type { IommuDevice } from "../iommu/device.js";
import type { IommuGroup } from "../iommu/group.js";
import { IOMMU_RESV_DIRECT_RELAXABLE, IOMMU_RESV_MSI, IOMMU_RESV_SW_MSI } from "../iommu/types.js";
import { EINVAL, EOPNOTSUPP, fail, KernelError } from "../uapi/errno.js";
import { IOMMU_HW_INFO_TYPE_AMD, IOMMU_HW_INFO_TYPE_NONE, iommu_hw_info_v6_12 } from "../uapi/iommufd.js";
import { structView } from "../uapi/struct.js";
import type { IommufdCtx } from "./ctx.js";
import { type Hwpt, HwptPaging, hwptPagingAlloc } from "./hw-pagetable.js";
import { deviceIsNoiommu } from "./hwpt-noiommu.js";
import type { IommufdIoas } from "./ioas.js";
import { IommufdObject } from "./object.js";
import { AttachHandle, iommufdDevicePasidDetachAll, type PasidAttach, ridPasidCompat } from "./pasid.js";
import type { UcmdOf } from "./ucmd.js";
import type { IommufdVdevice } from "./viommu.js";

/**
 * struct iommufd_group: the context's view of one iommu_group, shared by
 * every bound device of it. All its devices are attached to the same HWPT.
 * A noiommu device gets a dummy igroup of its own with no iommu_group
 * (`group` null), never shared and never in the context's table.
 */
export class Igroup {
  readonly devices = new Set<IommufdDevice>();
  hwpt: Hwpt | undefined;
  /** The RID attachment's handle (page requests point at it). */
  handle: AttachHandle | undefined;
  /** Attachments of non-zero PASIDs (igroup->pasid_attach past IOMMU_NO_PASID). */
  readonly pasids = new Map<number, PasidAttach>();
  refs = 0;
  constructor(
    readonly ictx: IommufdCtx,
    readonly group: IommuGroup | null,
  ) {}

  /** For messages: the iommu_group id, or what a dummy igroup stands for. */
  get label(): string {
    return this.group === null ? "of the noiommu device (dummy igroup)" : `${this.group.id}`;
  }
}

function igroupGet(ictx: IommufdCtx, group: IommuGroup): Igroup {
  const m = ictx.igroups;
  let g = m.get(group);
  if (g === undefined) {
    g = new Igroup(ictx, group);
    m.set(group, g);
  }
  g.refs++;
  return g;
}

function igroupPut(g: Igroup): void {
  if (--g.refs > 0 || g.group === null) return;
  g.ictx.igroups.delete(g.group);
}

export interface BindOpts {
  /** A selftest mock device: it does not hold the iommufd file (selftest.c). */
  mock?: boolean;
  /** The device's name (BDF) when it has no IommuDevice (a noiommu bind). */
  name?: string;
}

/**
 * struct iommufd_device: a device bound to a context. users: the table,
 * +1 for the binding driver until unbind, +1 on itself while attached.
 */
export class IommufdDevice extends IommufdObject {
  readonly type = "DEVICE" as const;
  hwpt: Hwpt | undefined;
  igroup!: Igroup;
  ownerClaimed = false;
  /** iommufd_device_is_noiommu(): bound with no IOMMU driver behind it (dev->iommu NULL). */
  readonly noiommu: boolean;
  /** The device's name (BDF or mock name). */
  readonly name: string;
  constructor(
    readonly ictx: IommufdCtx,
    /** The device's IommuDevice; undefined for a noiommu device (dev->iommu is NULL). */
    readonly dev: IommuDevice | undefined,
    readonly mock: boolean,
    name?: string,
  ) {
    super();
    this.noiommu = dev === undefined;
    this.name = dev?.name ?? name ?? "noiommu device";
  }
  /** The vDEVICE representing this device on a vIOMMU (idev->vdev): one at a time. */
  vdev: IommufdVdevice | undefined;
  destroy(): void {
    // iommufd_device_remove_vdev(): the vDEVICE goes with its device.
    if (this.vdev !== undefined) this.ictx.objects.removeInternal(this.vdev);
    if (this.igroup !== undefined) iommufdDevicePasidDetachAll(this, true);
    if (this.hwpt !== undefined) deviceDoDetach(this, true);
    if (this.ownerClaimed) this.dev?.releaseDmaOwner();
    this.ownerClaimed = false;
    if (this.igroup !== undefined) igroupPut(this.igroup);
    if (!this.mock) this.ictx.put();
  }
}

export function getDevice(ictx: IommufdCtx, id: number): IommufdDevice {
  return ictx.objects.get(id, "DEVICE", "device");
}

/**
 * iommufd_device_bind(): claim DMA ownership of the device's group for
 * this context and create the DEVICE object (published at once; the
 * caller — VFIO — holds a reference until iommufdDeviceUnbind). A device
 * with no IOMMU (`dev` undefined) binds through a dummy igroup when
 * CONFIG_IOMMUFD_NOIOMMU is built, with no DMA-ownership claim and no
 * coherency or MSI checks; without it, device_iommu_capable() is false
 * for it and the bind is EINVAL.
 */
export function iommufdDeviceBind(
  ictx: IommufdCtx,
  dev: IommuDevice | undefined,
  opts: BindOpts = {},
): IommufdDevice {
  if (deviceIsNoiommu(ictx.k, dev)) return bindNoiommu(ictx, opts);
  if (dev === undefined) {
    fail(
      EINVAL,
      "the device has no IOMMU: IOMMU_CAP_CACHE_COHERENCY cannot hold (no CONFIG_IOMMUFD_NOIOMMU)",
    );
  }
  if (!dev.capable("CACHE_COHERENCY")) {
    fail(EINVAL, `${dev.name}'s IOMMU cannot provide cache-coherent DMA (IOMMU_CAP_CACHE_COHERENCY)`);
  }
  dev.claimDmaOwner(ictx);
  const idev = new IommufdDevice(ictx, dev, opts.mock === true);
  idev.ownerClaimed = true;
  try {
    ictx.objects.alloc(idev);
  } catch (e) {
    dev.releaseDmaOwner();
    throw e;
  }
  idev.igroup = igroupGet(ictx, dev.group);
  if (!idev.mock) ictx.get();
  idev.refGet(); // the binding driver's reference
  ictx.objects.finalize(idev);
  return idev;
}

/** iommufd_bind_noiommu(): a dummy igroup of its own; nothing is claimed. */
function bindNoiommu(ictx: IommufdCtx, opts: BindOpts): IommufdDevice {
  const idev = new IommufdDevice(ictx, undefined, opts.mock === true, opts.name);
  ictx.objects.alloc(idev);
  idev.igroup = new Igroup(ictx, null);
  idev.igroup.refs = 1;
  if (!idev.mock) ictx.get();
  idev.refGet(); // the binding driver's reference
  ictx.objects.finalize(idev);
  return idev;
}

/** iommufd_device_unbind(): detach if needed, then destroy the object. */
export function iommufdDeviceUnbind(idev: IommufdDevice): void {
  if (idev.hwpt !== undefined) iommufdDeviceDetach(idev);
  idev.refPut();
  idev.ictx.objects.removeInternal(idev);
}

/**
 * Reserve the device's regions in the IOAS (iopt_table_enforce_dev_resv_regions).
 * A noiommu device has none (the series skips the step: attach_resv is false).
 */
function enforceResv(idev: IommufdDevice, ioas: IommufdIoas): void {
  if (idev.dev === undefined) return;
  const iopt = ioas.iopt;
  let swMsi = 0;
  let hwMsi = 0;
  try {
    for (const r of idev.dev.resvRegions()) {
      if (r.type === IOMMU_RESV_DIRECT_RELAXABLE) continue;
      if (r.type === IOMMU_RESV_MSI) hwMsi++;
      if (r.type === IOMMU_RESV_SW_MSI) swMsi++;
      iopt.reserve(r.start, r.last, { kind: "device", dev: idev });
    }
    if ((swMsi > 0 && hwMsi > 0) || swMsi > 1) {
      fail(EINVAL, `${idev.name} reports ${swMsi} software-MSI and ${hwMsi} hardware-MSI regions`);
    }
  } catch (e) {
    dropResv(idev, ioas);
    throw e;
  }
}

function dropResv(idev: IommufdDevice, ioas: IommufdIoas): void {
  ioas.iopt.removeReserved((o) => o.kind === "device" && o.dev === idev);
}

function ioasOf(h: Hwpt): IommufdIoas | undefined {
  return h instanceof HwptPaging ? h.ioas : undefined;
}

/**
 * iommufd_hw_pagetable_attach(): every device of a group shares one HWPT;
 * the first device attaches the whole group. Reserved regions go into the
 * IOAS first so a colliding area fails the attach (EADDRINUSE). For a
 * noiommu device the hardware step is a no-op that cannot fail
 * (iommufd_hwpt_attach_device returns 0); the bookkeeping is the same.
 */
export function deviceDoAttach(idev: IommufdDevice, hwpt: Hwpt): void {
  const ig = idev.igroup;
  if (ig.hwpt !== undefined && ig.hwpt !== hwpt) {
    fail(EINVAL, `iommu_group ${ig.label} is attached to HWPT ${ig.hwpt.id}; all its devices must share it`);
  }
  if (idev.hwpt !== undefined) fail(EINVAL, `device ${idev.id} is already attached to HWPT ${idev.hwpt.id}`);
  const ioas = ioasOf(hwpt);
  if (ioas !== undefined) enforceResv(idev, ioas);
  try {
    if (ig.devices.size === 0) {
      ridPasidCompat(ig, hwpt);
      if (ig.group !== null) ig.group.attach(hwpt.domain);
    }
  } catch (e) {
    if (ioas !== undefined) dropResv(idev, ioas);
    throw e;
  }
  if (ig.devices.size === 0) ig.handle = new AttachHandle(idev, 0);
  ig.hwpt = hwpt;
  ig.devices.add(idev);
  idev.hwpt = hwpt;
  hwpt.refGet();
  idev.refGet();
}

/**
 * iommufd_hw_pagetable_detach(): the last device of the group detaches the
 * group (back to blocking DMA); an auto domain dies with its last user.
 */
export function deviceDoDetach(idev: IommufdDevice, destroying: boolean): void {
  const hwpt = idev.hwpt;
  if (hwpt === undefined) return;
  const ig = idev.igroup;
  ig.devices.delete(idev);
  const ioas = ioasOf(hwpt);
  if (ioas !== undefined) dropResv(idev, ioas);
  if (ig.devices.size === 0) {
    ig.group?.detach();
    if (ig.handle !== undefined) hwpt.fault?.autoResponse(ig.handle);
    ig.hwpt = undefined;
    ig.handle = undefined;
  }
  idev.hwpt = undefined;
  hwpt.refPut();
  // The self reference taken at attach; during destroy the table's is already gone.
  if (!destroying) idev.refPut();
  putAutoHwpt(hwpt);
}

function putAutoHwpt(hwpt: Hwpt): void {
  if (hwpt instanceof HwptPaging && hwpt.autoDomain && hwpt.users === 1) {
    hwpt.ioas.ictx.objects.removeInternal(hwpt);
  }
}

/**
 * iommufd_device_auto_get_domain(): reuse an auto HWPT of the IOAS that
 * takes the device (EINVAL means "incompatible, try the next"), else make
 * a new one.
 */
function autoGetDomain(idev: IommufdDevice, ioas: IommufdIoas, replace: boolean): Hwpt {
  for (const o of [...ioas.hwptList]) {
    const h = o;
    if (!h.autoDomain) continue;
    try {
      if (replace) deviceDoReplace(idev, h);
      else deviceDoAttach(idev, h);
      return h;
    } catch (e) {
      if (e instanceof KernelError && e.errno === EINVAL) continue;
      throw e;
    }
  }
  const ictx = idev.ictx;
  let hwpt: HwptPaging;
  if (replace) {
    hwpt = hwptPagingAlloc(ictx, ioas, idev, 0, false);
    try {
      deviceDoReplace(idev, hwpt);
    } catch (e) {
      ictx.objects.abortAndDestroy(hwpt);
      throw e;
    }
  } else {
    hwpt = hwptPagingAlloc(ictx, ioas, idev, 0, true);
  }
  hwpt.autoDomain = true;
  ictx.objects.finalize(hwpt);
  return hwpt;
}

/**
 * iommufd_device_do_replace(): move the whole group to `hwpt`. Reserved
 * regions of every group device go into the new IOAS first; the old
 * HWPT's references move; an old auto domain dies when unused.
 */
function deviceDoReplace(idev: IommufdDevice, hwpt: Hwpt): void {
  const ig = idev.igroup;
  const old = ig.hwpt;
  if (old === undefined) fail(EINVAL, `iommu_group ${ig.label} is not attached; nothing to replace`);
  if (old === hwpt) return;
  const oldIoas = ioasOf(old);
  const newIoas = ioasOf(hwpt);
  const devs = [...ig.devices];
  const moved: IommufdDevice[] = [];
  if (newIoas !== undefined && newIoas !== oldIoas) {
    try {
      for (const d of devs) {
        enforceResv(d, newIoas);
        moved.push(d);
      }
    } catch (e) {
      for (const d of moved) dropResv(d, newIoas);
      throw e;
    }
  }
  try {
    ridPasidCompat(ig, hwpt);
    ig.group?.replace(hwpt.domain);
  } catch (e) {
    if (newIoas !== undefined && newIoas !== oldIoas) for (const d of devs) dropResv(d, newIoas);
    throw e;
  }
  if (oldIoas !== undefined && oldIoas !== newIoas) for (const d of devs) dropResv(d, oldIoas);
  if (ig.handle !== undefined) old.fault?.autoResponse(ig.handle);
  ig.handle = new AttachHandle(idev, 0);
  ig.hwpt = hwpt;
  for (const d of devs) {
    d.hwpt = hwpt;
    hwpt.refGet();
    old.refPut();
  }
  putAutoHwpt(old);
}

/** Resolve pt_id for attach/replace: an IOAS (auto domain), a paging or nested HWPT. */
function changePt(idev: IommufdDevice, ptId: number, replace: boolean): number {
  const obj = idev.ictx.objects.get(ptId, undefined, "pt_id");
  switch (obj.type) {
    case "HWPT_PAGING":
    case "HWPT_NESTED": {
      const h = obj;
      if (replace) deviceDoReplace(idev, h);
      else deviceDoAttach(idev, h);
      return h.id;
    }
    case "IOAS":
      return autoGetDomain(idev, obj, replace).id;
    default:
      return fail(EINVAL, `pt_id ${ptId} is a ${obj.type}; attach takes an IOAS or a HWPT`);
  }
}

/**
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach, or replace when the device is
 * already attached. Returns the HWPT ID to write back into pt_id.
 */
export function iommufdDeviceAttach(idev: IommufdDevice, ptId: number): number {
  if (idev.hwpt !== undefined) return iommufdDeviceReplace(idev, ptId);
  return changePt(idev, ptId, false);
}

export function iommufdDeviceReplace(idev: IommufdDevice, ptId: number): number {
  if (idev.hwpt === undefined) fail(EINVAL, `device ${idev.id} is not attached; nothing to replace`);
  return changePt(idev, ptId, true);
}

/** VFIO_DEVICE_DETACH_IOMMUFD_PT: a no-op when nothing is attached. */
export function iommufdDeviceDetach(idev: IommufdDevice): void {
  deviceDoDetach(idev, false);
}

// --- IOMMU_GET_HW_INFO --------------------------------------------------------

const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1;

export function getHwInfo(u: UcmdOf<"IOMMU_GET_HW_INFO">): number {
  // A 6.12 kernel's struct has no in_data_type union, no PASID width and a u32 __reserved at 28.
  const v612 = u.def.fields.some((f) => f.name === "in_data_type")
    ? undefined
    : structView(iommu_hw_info_v6_12, u.kbuf);
  const latest = v612 === undefined;
  const flags = u.cmd.flags;
  const validFlags = latest && u.ictx.k.profile !== "6.12" ? IOMMU_HW_INFO_FLAG_INPUT_TYPE : 0;
  const reservedNonZero = v612 === undefined ? u.cmd.__reserved.some((b) => b !== 0) : v612.__reserved !== 0;
  if ((flags & ~validFlags) !== 0 || reservedNonZero)
    fail(EOPNOTSUPP, "unknown flags or non-zero __reserved");
  const idev = getDevice(u.ictx, u.cmd.dev_id);
  const dev = idev.dev;
  if (dev === undefined) fail(EOPNOTSUPP, `${idev.name} is a noiommu device: there is no IOMMU to describe`);
  const reqType = (flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE) !== 0 ? u.cmd.in_data_type : 0;
  const raw = dev.hwInfo(reqType);
  // 6.12's uapi knows only the VT-d (and selftest) hw_info types: AMD had no
  // hw_info op yet, so iommufd reported IOMMU_HW_INFO_TYPE_NONE with no data.
  const info =
    u.ictx.k.profile === "6.12" && raw.type === IOMMU_HW_INFO_TYPE_AMD
      ? { type: IOMMU_HW_INFO_TYPE_NONE, data: new Uint8Array(0) }
      : raw;
  const userLen = u.cmd.data_len;
  const ptr = u.cmd.data_uptr;
  if (userLen > 0) {
    // Copy what fits and zero the rest of the user's buffer.
    const out = new Uint8Array(userLen);
    out.set(info.data.subarray(0, Math.min(userLen, info.data.length)));
    u.task.copyToUser(ptr, out);
  }
  u.cmd.data_len = info.data.length;
  u.cmd.out_data_type = info.type >>> 0;
  let caps = 0n;
  if (dev.capable("DIRTY_TRACKING")) caps |= 1n;
  if (latest) {
    const pasid = dev.maxPasidLog2();
    u.cmd.out_max_pasid_log2 = pasid;
  }
  u.cmd.out_capabilities = caps;
  u.respond();
  return 0;
}
