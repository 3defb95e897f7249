import type { InvalidateResult, IommuDriver, IommuUserData } from "../iommu/driver.js";
import { type ViommuCore, type ViommuState, viommuDriverOf } from "../iommu/drivers/viommu-ops.js";
import type { KFile } from "../kernel/file.js";
import type { IoMem } from "../mm/io-mem.js";
import { EEXIST, EINVAL, ENXIO, EOPNOTSUPP, EPERM, fail } from "../uapi/errno.js";
import { IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_FAULT_ID_VALID } from "../uapi/iommufd.js";
import { PAGE_SIZE_B as PAGE, PROT_EXEC } from "../uapi/linux.js";
import type { IommufdCtx } from "./ctx.js";
import { getDevice, type IommufdDevice } from "./device.js";
import { type IommufdVeventq, viommuReportEvent } from "./eventq.js";
import {
  getHwptPaging,
  HwptNested,
  type HwptPaging,
  installNested,
  readNestedUserData,
  readUserData,
} from "./hw-pagetable.js";
import { IommufdObject } from "./object.js";
import type { UcmdOf } from "./ucmd.js";

// vIOMMU and vDEVICE objects (drivers/iommu/iommufd/viommu.c). Only the
// selftest mock driver implements viommu_init in the model; on amd and
// intel IOMMU_VIOMMU_ALLOC is EOPNOTSUPP after the flag/type and device
// checks, as in a kernel whose driver has no vIOMMU support.

/** A region a driver registered for mmap() of the iommufd fd (struct iommufd_mmap). */
export interface Immap {
  owner: IommufdViommu;
  offset: bigint;
  bytes: Uint8Array;
}

/** _iommufd_alloc_mmap(): the lowest page-aligned offset >= PAGE_SIZE where the region fits (mt_mmap). */
function allocMmap(ictx: IommufdCtx, owner: IommufdViommu, bytes: Uint8Array): bigint {
  const t = ictx.mmaps;
  const len = BigInt(bytes.length);
  const used = [...t.values()].sort((a, b) => (a.offset < b.offset ? -1 : 1));
  let off = PAGE;
  for (const r of used) {
    if (off + len <= r.offset) break;
    const end = r.offset + BigInt(r.bytes.length);
    if (end > off) off = end;
  }
  t.set(off, { owner, offset: off, bytes });
  return off;
}

/**
 * iommufd_fops_mmap(): a region registered by a driver, mapped whole and
 * shared; the mapping holds +1 on the owning object (a vIOMMU cannot be
 * destroyed while mapped: EBUSY) and on the file.
 */
export function iommufdMmap(ictx: IommufdCtx, file: KFile, len: bigint, off: bigint, prot: number): IoMem {
  if (prot & PROT_EXEC) fail(EPERM, "mmap of an iommufd region cannot be executable");
  const imm = [...ictx.mmaps.values()].find(
    (r) => off >= r.offset && off < r.offset + BigInt(r.bytes.length),
  );
  if (imm === undefined || imm.owner.users === 0)
    fail(ENXIO, `no region registered at offset 0x${off.toString(16)}`);
  const rlen = BigInt(imm.bytes.length);
  if (off !== imm.offset || ((len + PAGE - 1n) & ~(PAGE - 1n)) !== rlen) {
    fail(
      ENXIO,
      `mmap must cover the whole region [0x${imm.offset.toString(16)}, +0x${rlen.toString(16)}), not offset 0x${off.toString(16)} length 0x${len.toString(16)}`,
    );
  }
  const base = Number(imm.offset);
  return {
    kind: "io",
    read: (o, n) => imm.bytes.slice(o - base, o - base + n),
    write: (o, b) => {
      imm.bytes.set(b, o - base);
      return 0;
    },
    get: () => {
      imm.owner.refGet();
      imm.owner.mappings++;
      file.get();
    },
    put: () => {
      imm.owner.refPut();
      imm.owner.mappings--;
      file.put();
    },
  };
}

/**
 * struct iommufd_viommu: a slice of the physical IOMMU for one VM, over a
 * NEST_PARENT paging HWPT (+1 on it). Its vDEVICEs by virtual ID, its
 * vEVENTQs (one per type), and the driver's state (struct iommufd_viommu_ops).
 */
export class IommufdViommu extends IommufdObject {
  readonly type = "VIOMMU" as const;
  readonly vdevs = new Map<bigint, IommufdVdevice>();
  readonly veventqs: IommufdVeventq[] = [];
  /** Set once viommu_init succeeded (viommu->ops). */
  state: ViommuState | undefined;
  /** User mappings of its mmap region (each holds +1: DESTROY is EBUSY while mapped). */
  mappings = 0;
  readonly core: ViommuCore;
  constructor(
    readonly ictx: IommufdCtx,
    readonly hwpt: HwptPaging,
    readonly driver: IommuDriver,
    readonly viommuType: number,
  ) {
    super();
    const t = ictx.mmaps;
    this.core = {
      type: viommuType,
      vdevIdOf: (dev) => {
        for (const v of this.vdevs.values()) if (v.idev.dev === dev) return v.virtId;
        return undefined;
      },
      findDev: (virtId) => this.vdevs.get(virtId)?.idev.dev,
      reportEvent: (type, data) => viommuReportEvent(this, type, data),
      allocMmap: (bytes) => allocMmap(ictx, this, bytes),
      destroyMmap: (offset) => void t.delete(offset),
    };
  }
  /** The +1 on the parent HWPT is taken once the object has its ID. */
  holdsHwpt = false;
  destroy(): void {
    this.state?.destroy();
    this.state = undefined;
    if (this.holdsHwpt) this.hwpt.refPut();
    this.holdsHwpt = false;
    this.vdevs.clear();
  }
}

/** struct iommufd_vdevice: a device's virtual ID on a vIOMMU (+1 on the vIOMMU). */
export class IommufdVdevice extends IommufdObject {
  readonly type = "VDEVICE" as const;
  constructor(
    readonly viommu: IommufdViommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {
    super();
  }
  destroy(): void {
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.viommu.refPut();
    if (this.idev.vdev === this) this.idev.vdev = undefined;
  }
}

/**
 * IOMMU_VIOMMU_ALLOC (iommufd_viommu_alloc_ioctl): flags/type checks, the
 * device, the driver's vIOMMU support and type (EOPNOTSUPP), the HWPT
 * (a paging one, ENOENT; NEST_PARENT, EINVAL), then viommu_init with the
 * driver data (which it may write back).
 */
export function viommuAlloc(u: UcmdOf<"IOMMU_VIOMMU_ALLOC">): number {
  const type = u.cmd.type;
  if (u.cmd.flags !== 0 || type === 0) {
    fail(EOPNOTSUPP, "flags must be 0 and type must not be IOMMU_VIOMMU_TYPE_DEFAULT");
  }
  const idev = getDevice(u.ictx, u.cmd.dev_id);
  const dev = idev.dev;
  const drv = dev === undefined ? undefined : viommuDriverOf(dev.driver);
  if (dev === undefined || drv === undefined) {
    fail(
      EOPNOTSUPP,
      `the ${dev?.driver.name ?? "noiommu"} IOMMU driver has no vIOMMU support (get_viommu_size/viommu_init)`,
    );
  }
  if (!drv.viommuSupported(dev, type)) {
    fail(EOPNOTSUPP, `the ${dev.driver.name} IOMMU driver has no vIOMMU of type 0x${type.toString(16)}`);
  }
  const hwpt = getHwptPaging(u.ictx, u.cmd.hwpt_id);
  if (!hwpt.nestParent) fail(EINVAL, `HWPT ${hwpt.id} was not allocated with IOMMU_HWPT_ALLOC_NEST_PARENT`);
  const dataLen = u.cmd.data_len;
  const v = new IommufdViommu(u.ictx, hwpt, dev.driver, type);
  u.createObject(v, () => {
    hwpt.refGet();
    v.holdsHwpt = true;
    const ud: IommuUserData | undefined = dataLen !== 0 ? readUserData(u, type, dataLen) : undefined;
    const state = drv.viommuInit(v.core, hwpt.domain, ud);
    if (state.outData !== undefined) {
      try {
        u.task.copyToUser(u.cmd.data_uptr, state.outData);
      } catch (e) {
        state.destroy();
        throw e;
      }
    }
    v.state = state;
    u.cmd.out_viommu_id = v.id;
    u.respond();
  });
  return 0;
}

/**
 * IOMMU_VDEVICE_ALLOC (iommufd_vdevice_alloc_ioctl): the vIOMMU and device
 * (ENOENT), the same physical IOMMU (EINVAL), one vDEVICE per device
 * (EEXIST) and one device per virtual ID on the vIOMMU (EEXIST).
 */
export function vdeviceAlloc(u: UcmdOf<"IOMMU_VDEVICE_ALLOC">): number {
  const viommu = u.ictx.objects.get(u.cmd.viommu_id, "VIOMMU", "vIOMMU");
  const idev = getDevice(u.ictx, u.cmd.dev_id);
  if (idev.dev === undefined || idev.dev.driver !== viommu.driver) {
    fail(EINVAL, `${idev.name} is not behind the physical IOMMU of vIOMMU ${viommu.id}`);
  }
  if (idev.vdev !== undefined) fail(EEXIST, `${idev.name} already has vDEVICE ${idev.vdev.id}`);
  const virtId = u.cmd.virt_id;
  const vdev = new IommufdVdevice(viommu, idev, virtId);
  u.createObject(vdev, () => {
    viommu.refGet();
    idev.vdev = vdev;
    if (viommu.vdevs.has(virtId)) {
      fail(EEXIST, `virtual ID 0x${virtId.toString(16)} is taken on vIOMMU ${viommu.id}`);
    }
    viommu.vdevs.set(virtId, vdev);
    u.cmd.out_vdevice_id = vdev.id;
    u.respond();
  });
  return 0;
}

/**
 * iommufd_viommu_alloc_hwpt_nested() from IOMMU_HWPT_ALLOC: the device
 * must sit behind the vIOMMU's physical IOMMU (EINVAL); flags beyond
 * FAULT_ID_VALID|PASID or no driver data (EOPNOTSUPP); the driver gets the
 * flags without FAULT_ID_VALID. The nested HWPT holds +1 on the vIOMMU.
 */
export function viommuAllocHwptNested(
  u: UcmdOf<"IOMMU_HWPT_ALLOC">,
  viommu: IommufdViommu,
  idev: IommufdDevice,
  flags: number,
  dataType: number,
  dataLen: number,
): HwptNested {
  if (idev.dev === undefined || idev.dev.driver !== viommu.driver) {
    fail(EINVAL, `${idev.name} is not behind the physical IOMMU of vIOMMU ${viommu.id}`);
  }
  if ((flags & ~(IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID)) !== 0) {
    fail(
      EOPNOTSUPP,
      `flags 0x${flags.toString(16)}: a vIOMMU's nested HWPT takes FAULT_ID_VALID and PASID only`,
    );
  }
  if (dataLen === 0) fail(EOPNOTSUPP, "a vIOMMU's nested HWPT needs driver data");
  const st = viommu.state;
  const allocNested = st?.allocDomainNested?.bind(st);
  if (allocNested === undefined) fail(EOPNOTSUPP, "the vIOMMU has no alloc_domain_nested");
  const drvFlags = flags & ~IOMMU_HWPT_FAULT_ID_VALID;
  const alloc = (ud: IommuUserData) => allocNested(drvFlags, ud);
  const domain = alloc(readNestedUserData(u, dataType, dataLen, alloc));
  return installNested(u, new HwptNested(viommu.hwpt, domain, viommu), flags);
}

/**
 * HWPT_INVALIDATE on a vIOMMU: the driver's cache_invalidate (EOPNOTSUPP
 * without it). The mock copies the whole array first, so an unreadable
 * array fails with nothing handled.
 */
export function viommuCacheInvalidate(
  u: UcmdOf<"IOMMU_HWPT_INVALIDATE">,
  viommu: IommufdViommu,
  num: number,
  len: number,
  ptr: bigint,
): InvalidateResult {
  const st = viommu.state;
  if (st?.cacheInvalidate === undefined) fail(EOPNOTSUPP, "the vIOMMU has no cache_invalidate");
  // iommu_copy_struct_from_full_user_array() reads the whole array at once.
  const fetch = (): Uint8Array[] | undefined => {
    let all: Uint8Array;
    try {
      all = u.task.copyFromUser(ptr, num * len);
    } catch {
      return undefined;
    }
    const out: Uint8Array[] = [];
    for (let i = 0; i < num; i++) out.push(all.subarray(i * len, (i + 1) * len));
    return out;
  };
  return st.cacheInvalidate(u.cmd.data_type >>> 0, len, num, fetch);
}

/** The vIOMMU a device's vDEVICE is on (tests, m.debug). */
export function vdevOf(idev: IommufdDevice): IommufdVdevice | undefined {
  return idev.vdev;
}

export function getViommu(ictx: IommufdCtx, id: number): IommufdViommu {
  return ictx.objects.get(id, "VIOMMU", "vIOMMU");
}
