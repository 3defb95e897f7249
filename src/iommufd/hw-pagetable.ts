import type { IommuDomain } from "../iommu/domain.js";
import type { IommuUserData } from "../iommu/driver.js";
import { EFAULT, EINVAL, ENOENT, EOPNOTSUPP, EOVERFLOW, fail, KernelError } from "../uapi/errno.js";
import { PAGE_SIZE } from "../uapi/linux.js";
import type { IommufdCtx } from "./ctx.js";
import { deviceDoAttach, deviceDoDetach, getDevice, type IommufdDevice } from "./device.js";
import { getFault, type IommufdFault } from "./eventq.js";
import { noiommuOps } from "./hwpt-noiommu.js";
import type { IommufdIoas } from "./ioas.js";
import { hex, U64_MAX } from "./iova-alloc.js";
import { IommufdObject } from "./object.js";
import type { Ucmd, UcmdOf } from "./ucmd.js";
import { type IommufdViommu, viommuAllocHwptNested, viommuCacheInvalidate } from "./viommu.js";

export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 2;
export const IOMMU_HWPT_FAULT_ID_VALID = 4;
export const IOMMU_HWPT_ALLOC_PASID = 8;

/**
 * struct iommufd_hwpt_paging: a paging domain kept filled with its IOAS's
 * areas. Holds +1 on the IOAS. `autoDomain` ones were made by a device
 * attach to an IOAS and die with their last device.
 */
export class HwptPaging extends IommufdObject {
  readonly type = "HWPT_PAGING" as const;
  autoDomain = false;
  nestParent = false;
  /** Allocated with IOMMU_HWPT_ALLOC_PASID (hwpt->pasid_compat). */
  pasidCompat = false;
  /** The fault queue of IOMMU_HWPT_FAULT_ID_VALID (holds +1 on it). */
  fault: IommufdFault | undefined;
  /** Added to the IOAS's io_pagetable (iopt_table_add_domain succeeded). */
  inIopt = false;
  constructor(
    readonly ioas: IommufdIoas,
    readonly domain: IommuDomain,
  ) {
    super();
    ioas.refGet();
    ioas.hwptList.push(this);
  }
  destroy(): void {
    if (this.inIopt) this.ioas.iopt.removeDomain(this.domain);
    this.inIopt = false;
    const l = this.ioas.hwptList;
    const i = l.indexOf(this);
    if (i >= 0) l.splice(i, 1);
    this.ioas.refPut();
    if (this.fault !== undefined) this.fault.refPut();
    this.fault = undefined;
    this.domain.free();
  }
}

/**
 * struct iommufd_hwpt_nested: a stage-1 domain over a NEST_PARENT paging
 * HWPT. Holds +1 on that parent, or on the vIOMMU it was allocated
 * through (whose parent it then is).
 */
export class HwptNested extends IommufdObject {
  readonly type = "HWPT_NESTED" as const;
  pasidCompat = false;
  fault: IommufdFault | undefined;
  constructor(
    readonly parent: HwptPaging,
    readonly domain: IommuDomain,
    readonly viommu?: IommufdViommu,
  ) {
    super();
    if (viommu !== undefined) viommu.refGet();
    else parent.refGet();
  }
  destroy(): void {
    if (this.viommu !== undefined) this.viommu.refPut();
    else this.parent.refPut();
    if (this.fault !== undefined) this.fault.refPut();
    this.fault = undefined;
    this.domain.free();
  }
}

export type Hwpt = HwptPaging | HwptNested;

/**
 * iommufd_hwpt_paging_alloc(): a paging domain for `idev` on `ioas`. With
 * `immediateAttach` (auto domains) the device is attached before the domain
 * joins the IOAS, as the kernel does so the driver sees the device first.
 * The object must already have its ID reserved by the caller's createObject.
 */
export function hwptPagingAlloc(
  ictx: IommufdCtx,
  ioas: IommufdIoas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  userData?: IommuUserData,
): HwptPaging {
  const valid =
    IOMMU_HWPT_ALLOC_NEST_PARENT |
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
    (ictx.k.profile === "6.12" ? 0 : IOMMU_HWPT_ALLOC_PASID);
  if ((flags & ~valid) !== 0)
    fail(EOPNOTSUPP, `HWPT flags 0x${(flags & ~valid).toString(16)} are not valid for a paging HWPT`);
  const dev = idev.dev;
  if ((flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0 && dev?.capable("DIRTY_TRACKING") !== true) {
    fail(EOPNOTSUPP, `${idev.name}'s IOMMU cannot track dirty pages (IOMMU_CAP_DIRTY_TRACKING)`);
  }
  // get_iommu_ops(): a dummy igroup (no iommu_group) means iommufd_noiommu_ops.
  const ops = idev.igroup.group === null || dev === undefined ? noiommuOps(ictx.globals) : dev.driver;
  const domain = ops.allocPaging(dev, flags, userData);
  let hwpt: HwptPaging;
  try {
    hwpt = new HwptPaging(ioas, domain);
  } catch (e) {
    domain.free();
    throw e;
  }
  try {
    // Inside the try: a failed ID allocation must still drop the IOAS reference and free the domain.
    ictx.objects.alloc(hwpt);
    hwpt.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
    hwpt.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
    // A device that can enforce coherency gets an enforcing domain before anything is mapped.
    if (dev?.capable("ENFORCE_CACHE_COHERENCY") === true && !domain.enforceCacheCoherency()) {
      fail(EINVAL, "the driver could not make the new domain enforce cache coherency");
    }
    if (immediateAttach) deviceDoAttach(idev, hwpt);
    try {
      ioas.iopt.addDomain(domain);
      hwpt.inIopt = true;
    } catch (e) {
      if (immediateAttach) deviceDoDetach(idev, false);
      throw e;
    }
  } catch (e) {
    ictx.objects.abortAndDestroy(hwpt);
    throw e;
  }
  return hwpt;
}

/** IOMMU_HWPT_ALLOC. */
export function hwptAlloc(u: UcmdOf<"IOMMU_HWPT_ALLOC">): number {
  const ictx = u.ictx;
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  // __reserved2 (after fault_id) is not checked by iommufd_hwpt_alloc (hw_pagetable.c).
  const dataType = u.cmd.data_type;
  const dataLen = u.cmd.data_len;
  if ((dataType === 0 && dataLen !== 0) || (dataType !== 0 && dataLen === 0)) {
    fail(EINVAL, `data_type ${dataType} and data_len ${dataLen} disagree (NONE needs 0, others need data)`);
  }
  const idev = getDevice(ictx, u.cmd.dev_id);
  const ptId = u.cmd.pt_id;
  const pt = ictx.objects.tryGet(ptId);
  if (pt === undefined) fail(EINVAL, `pt_id ${ptId} does not exist`);
  const flags = u.cmd.flags;
  let hwpt: Hwpt;
  if (pt.type === "IOAS") {
    const ud = dataType !== 0 ? readUserData(u, dataType, dataLen) : undefined;
    hwpt = hwptPagingAlloc(ictx, pt, idev, flags, false, ud);
  } else if (pt.type === "HWPT_PAGING") {
    hwpt = hwptNestedAlloc(u, pt, idev, flags, dataType, dataLen);
  } else if (pt.type === "VIOMMU") {
    hwpt = viommuAllocHwptNested(u, pt, idev, flags, dataType, dataLen);
  } else {
    return fail(EINVAL, `pt_id ${ptId} is a ${pt.type}, not an IOAS, paging HWPT or vIOMMU`);
  }
  try {
    if ((flags & IOMMU_HWPT_FAULT_ID_VALID) !== 0) {
      // The domain's iopf_handler becomes iommufd's: its page requests go to this queue.
      const fault = getFault(ictx, u.cmd.fault_id);
      hwpt.fault = fault;
      fault.refGet();
    }
    u.cmd.out_hwpt_id = hwpt.id;
    u.respond();
  } catch (e) {
    ictx.objects.abortAndDestroy(hwpt);
    throw e;
  }
  ictx.objects.finalize(hwpt);
  return 0;
}

/** The commands that carry driver data at data_uptr. */
export type UcmdWithData = UcmdOf<"IOMMU_HWPT_ALLOC"> | UcmdOf<"IOMMU_VIOMMU_ALLOC">;

export function readUserData(u: UcmdWithData, type: number, len: number): IommuUserData {
  return { type, bytes: u.task.copyFromUser(u.cmd.data_uptr, len) };
}

function hwptNestedAlloc(
  u: UcmdOf<"IOMMU_HWPT_ALLOC">,
  parent: HwptPaging,
  idev: IommufdDevice,
  flags: number,
  dataType: number,
  dataLen: number,
): HwptNested {
  const valid = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
  if ((flags & ~valid) !== 0 || dataLen === 0) {
    fail(EOPNOTSUPP, "nested HWPTs take only FAULT_ID_VALID/PASID flags and need driver data");
  }
  const dev = idev.dev;
  if (dev === undefined) fail(EOPNOTSUPP, "iommufd_noiommu_ops has no domain_alloc_nested");
  if (parent.autoDomain || !parent.nestParent || parent.domain.driver !== dev.driver) {
    fail(EINVAL, `parent HWPT ${parent.id} is an auto domain, not NEST_PARENT, or from another IOMMU driver`);
  }
  const alloc = (ud: IommuUserData) =>
    dev.driver.allocNested(dev, parent.domain, flags & ~IOMMU_HWPT_FAULT_ID_VALID, ud);
  const domain = alloc(readNestedUserData(u, dataType, dataLen, alloc));
  return installNested(u, new HwptNested(parent, domain), flags);
}

/**
 * The driver data of a nested HWPT. The driver checks the data type before it
 * copies the data: when the copy faults, a probe with no payload lets an
 * unknown type (EOPNOTSUPP) win over the bad pointer.
 */
export function readNestedUserData(
  u: UcmdWithData,
  type: number,
  len: number,
  alloc: (ud: IommuUserData) => IommuDomain,
): IommuUserData {
  try {
    return readUserData(u, type, len);
  } catch (e) {
    try {
      alloc({ type, bytes: new Uint8Array(0) }).free();
    } catch (e2) {
      if (e2 instanceof KernelError && e2.errno === EOPNOTSUPP) throw e2;
    }
    throw e;
  }
}

/** Give a new nested HWPT its id (PASID-compatible as the flags say); on failure it is destroyed. */
export function installNested(u: Ucmd, h: HwptNested, flags: number): HwptNested {
  h.pasidCompat = (flags & IOMMU_HWPT_ALLOC_PASID) !== 0;
  try {
    u.ictx.objects.alloc(h);
  } catch (e) {
    u.ictx.objects.abortAndDestroy(h);
    throw e;
  }
  return h;
}

export function getHwptPaging(ictx: IommufdCtx, id: number): HwptPaging {
  return ictx.objects.get(id, "HWPT_PAGING", "paging HWPT");
}

/** IOMMU_HWPT_SET_DIRTY_TRACKING. Enabling starts from a clean snapshot (iopt_clear_dirty_data). */
export function hwptSetDirtyTracking(u: UcmdOf<"IOMMU_HWPT_SET_DIRTY_TRACKING">): number {
  const flags = u.cmd.flags;
  if ((flags & ~1) !== 0 || u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "unknown flags or non-zero __reserved");
  const hwpt = getHwptPaging(u.ictx, u.cmd.hwpt_id);
  const d = hwpt.domain;
  if (!d.dirtyOps) fail(EOPNOTSUPP, `HWPT ${hwpt.id} was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING`);
  const enable = (flags & 1) !== 0;
  d.setDirtyTracking(enable);
  if (enable) {
    for (const n of hwpt.ioas.iopt.areas.all())
      d.readAndClearDirty(n.value.iova, n.value.length, false, () => {});
  }
  return 0;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP: the kernel only sets bits in the user's bitmap. */
export function hwptGetDirtyBitmap(u: UcmdOf<"IOMMU_HWPT_GET_DIRTY_BITMAP">): number {
  const flags = u.cmd.flags;
  if ((flags & ~1) !== 0 || u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "unknown flags or non-zero __reserved");
  const hwpt = getHwptPaging(u.ictx, u.cmd.hwpt_id);
  const iopt = hwpt.ioas.iopt;
  const d = hwpt.domain;
  if (!d.dirtyOps) fail(EOPNOTSUPP, `HWPT ${hwpt.id} has no dirty tracking ops`);
  const iova = u.cmd.iova;
  const length = u.cmd.length;
  const pageSize = u.cmd.page_size;
  const last = iova + length - 1n;
  if (length === 0n || last > U64_MAX)
    fail(EOVERFLOW, `iova ${hex(iova)} + length ${hex(length)} - 1 overflows`);
  const al = iopt.iovaAlignment;
  if (iova % al !== 0n || (last + 1n) % al !== 0n) {
    fail(EINVAL, `[${hex(iova)}, ${hex(last)}] is not aligned to the IOAS alignment ${hex(al)}`);
  }
  if (pageSize === 0n) fail(EINVAL, "page_size is 0");
  if (iova % pageSize !== 0n || (last + 1n) % pageSize !== 0n) {
    fail(EINVAL, `[${hex(iova)}, ${hex(last)}] is not aligned to page_size ${hex(pageSize)}`);
  }
  const nbits = Number(length / pageSize);
  const bitmap = new Uint8Array(Math.ceil(nbits / 8));
  let any = false;
  const record = (di: bigint, dl: bigint) => {
    let s = di < iova ? iova : di;
    const e = di + dl - 1n > last ? last : di + dl - 1n;
    for (; s <= e; s += pageSize) {
      const bit = Number((s - iova) / pageSize);
      bitmap[bit >> 3] |= 1 << (bit & 7);
      any = true;
    }
  };
  // Walk contiguous areas. iommu_read_and_clear_dirty() ignores what iova_bitmap_for_each()
  // returns: a gap, or the driver refusing (dirty tracking disabled: EINVAL), stops the walk
  // and the ioctl still succeeds with the bits gathered so far.
  let cur = iova;
  for (const n of iopt.areas.intersecting(iova, last)) {
    const a = n.value;
    if (a.iova > cur) break;
    const e = a.last < last ? a.last : last;
    try {
      d.readAndClearDirty(cur, e - cur + 1n, (flags & 1) !== 0, record);
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      break;
    }
    cur = e + 1n;
    if (cur > last || cur === 0n) break;
  }
  if (any) {
    const ptr = u.cmd.data;
    const old = u.task.copyFromUser(ptr, bitmap.length);
    for (let i = 0; i < bitmap.length; i++) bitmap[i] |= old[i];
    u.task.copyToUser(ptr, bitmap);
  }
  return 0;
}

/** The most entries one IOMMU_HWPT_INVALIDATE may carry. */
export const IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX = 1 << 19;

/** IOMMU_HWPT_INVALIDATE: entry_num is written back with the entries handled, also on error. */
export function hwptInvalidate(u: UcmdOf<"IOMMU_HWPT_INVALIDATE">): number {
  if (u.cmd.__reserved !== 0) fail(EOPNOTSUPP, "__reserved must be 0");
  const num = u.cmd.entry_num;
  const len = u.cmd.entry_len;
  const ptr = u.cmd.data_uptr;
  let handled = 0;
  let err: KernelError | undefined;
  try {
    // bounded so one call cannot pin the CPU; entry_len also bounds the zero-tail scan
    if (
      num > 0 &&
      (ptr === 0n || len === 0 || len > PAGE_SIZE || num > IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX)
    ) {
      fail(EINVAL, "entry_num > 0 needs data_uptr and entry_len <= PAGE_SIZE, and entry_num <= 1 << 19");
    }
    const obj = u.ictx.objects.get(u.cmd.hwpt_id);
    // 6.12 looks the id up as a nested HWPT only (iommufd_get_hwpt_nested): anything else ENOENT
    if (u.ictx.k.profile === "6.12" && obj.type !== "HWPT_NESTED") {
      fail(ENOENT, `hwpt_id ${obj.id} is a ${obj.type}, not a nested HWPT`);
    }
    if (obj.type === "HWPT_NESTED") {
      const h = obj;
      const drv = h.domain.driver;
      if (drv.cacheInvalidateUser === undefined) fail(EOPNOTSUPP, "the driver has no cache_invalidate_user");
      const entries: Uint8Array[] = [];
      for (let i = 0; i < num; i++) {
        try {
          entries.push(u.task.copyFromUser(ptr + BigInt(i) * BigInt(len), len));
        } catch {
          break;
        }
      }
      const r = drv.cacheInvalidateUser(h.domain, u.cmd.data_type, len, entries);
      handled = r.handled;
      if (r.errno !== 0) fail(r.errno, r.reason ?? "cache_invalidate_user failed");
      if (entries.length < num) fail(EFAULT, `cannot read invalidation entry ${entries.length}`);
    } else if (obj.type === "VIOMMU") {
      const r = viommuCacheInvalidate(u, obj, num, len, ptr);
      handled = r.handled;
      if (r.errno !== 0) fail(r.errno, r.reason ?? "cache_invalidate failed");
    } else {
      fail(EINVAL, `hwpt_id ${obj.id} is a ${obj.type}; only nested HWPTs and vIOMMUs take invalidations`);
    }
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    err = e;
  }
  u.cmd.entry_num = handled;
  u.respond();
  if (err !== undefined) throw err;
  return 0;
}

export function hwptOf(o: IommufdObject): Hwpt | undefined {
  return o instanceof HwptPaging || o instanceof HwptNested ? o : undefined;
}
