import { EEXIST, EFAULT, EINVAL, EIO, ENOENT, ENOMEM, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import { IOMMU_HWPT_ALLOC_PASID } from "../../uapi/iommufd.js";
import { copyStructFromUser } from "../../uapi/struct.js";
import type { IommuDevice } from "../device.js";
import type { IommuDomain } from "../domain.js";
import type { InvalidateResult, IommuUserData } from "../driver.js";
import type { HwQueueCore, ViommuCore, ViommuState } from "./viommu-ops.js";

// iommufd_test.h values for the vIOMMU parts of the mock.
export const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
export const IOMMU_HW_QUEUE_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_HW_QUEUE_MAX = 2;
export const MOCK_DEV_CACHE_ID_MAX = 3;
export const MOCK_DEV_CACHE_NUM = 4;
export const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
/** IOMMU_TEST_PASID_RESERVED: every second non-blocking set_dev_pasid of it fails (ENOMEM). */
export const IOMMU_TEST_PASID_RESERVED = 1024;
/** sizeof(struct iommu_viommu_selftest): in_data, out_data, out_mmap_offset, out_mmap_length. */
const VIOMMU_SELFTEST_SIZE = 24;
/** offsetofend(struct iommu_viommu_selftest, out_data): the least iommu_copy_struct_from_user takes. */
const VIOMMU_SELFTEST_MIN = 8;
/** sizeof(struct iommu_viommu_invalidate_selftest) { flags, vdev_id, cache_id }. */
const VIOMMU_INV_SIZE = 12;
const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1;
/** The mock's register page for userspace: two pages (__get_free_pages order 1). */
const MOCK_MMAP_LENGTH = 8192;
/** KMALLOC_MAX_SIZE on x86-64 (order-10 pages): larger kzalloc()s fail. */
const KMALLOC_MAX = 4 << 20;

/**
 * Per mock device state (struct mock_dev beyond its flags): the vIOMMU and
 * virtual ID cached when it attached to a vIOMMU's nested domain, the
 * device cache the vIOMMU invalidation clears, and the PASID 1024 toggle.
 */
export interface MockDevState {
  cache: number[];
  /** The domain the last attach cached the vIOMMU for (mdev->viommu is valid while the device sits on it). */
  domain: IommuDomain | undefined;
  viommu: ViommuCore | undefined;
  vdevId: bigint;
  pasid1024FakeError: boolean;
}

export function mockDevState(dev: IommuDevice): MockDevState {
  // only the mock driver sets driverPriv, and only to a MockDevState
  let s = dev.driverPriv as MockDevState | undefined;
  if (s === undefined) {
    s = {
      cache: new Array<number>(MOCK_DEV_CACHE_NUM).fill(IOMMU_TEST_DEV_CACHE_DEFAULT),
      domain: undefined,
      viommu: undefined,
      vdevId: 0n,
      pasid1024FakeError: false,
    };
    dev.driverPriv = s;
  }
  return s;
}

/**
 * mock_domain_nop_attach()'s vIOMMU part: a nested domain of a vIOMMU
 * needs the device's vDEVICE there (ENOENT otherwise); the vIOMMU and
 * virtual ID are cached for TRIGGER_VEVENT.
 */
export function mockAttachViommu(domain: IommuDomain, dev: IommuDevice): void {
  const viommu = domain.type === "nested" ? (domain.priv.viommu as ViommuCore | undefined) : undefined;
  let vdevId = 0n;
  if (viommu !== undefined) {
    const id = viommu.vdevIdOf(dev);
    if (id === undefined) {
      fail(ENOENT, `mock: ${dev.name} has no vDEVICE on the vIOMMU of nested domain ${domain.id}`);
    }
    vdevId = id;
  }
  const s = mockDevState(dev);
  s.domain = domain;
  s.viommu = viommu;
  s.vdevId = vdevId;
}

/**
 * mock_domain_set_dev_pasid_nop(): PASID 1024 alternates: the first
 * non-blocking set arms a fault, the second fails with ENOMEM (to test the
 * core's rollback on replace), a blocking set (detach) disarms it.
 */
export function mockSetDevPasid(domain: IommuDomain | undefined, dev: IommuDevice, pasid: number): void {
  if (pasid !== IOMMU_TEST_PASID_RESERVED) return;
  const s = mockDevState(dev);
  if (domain === undefined) s.pasid1024FakeError = false;
  else if (s.pasid1024FakeError) {
    s.pasid1024FakeError = false;
    fail(ENOMEM, "mock: PASID 1024 fails every second set_dev_pasid (selftest rollback hook)");
  } else s.pasid1024FakeError = true;
}

/**
 * iommu_copy_struct_from_user() (__iommu_copy_struct_from_user): short of
 * `min` or longer than the kernel's `size` EINVAL (the user's length may not
 * exceed the kernel's struct); zero-extended.
 */
function copyStruct(bytes: Uint8Array, min: number, size: number, what: string): DataView {
  if (bytes.length < min) fail(EINVAL, `${what}: ${bytes.length} bytes is shorter than ${min}`);
  if (bytes.length > size) fail(EINVAL, `${what}: ${bytes.length} bytes is longer than the kernel's ${size}`);
  const k = new Uint8Array(size);
  k.set(bytes.subarray(0, Math.min(size, bytes.length)));
  return new DataView(k.buffer);
}

interface MockHwQueue {
  core: HwQueueCore;
  prev: MockHwQueue | undefined;
  index: number;
}

/**
 * struct mock_viommu: the stage-2 parent, the two HW queue slots and the
 * optional register page userspace may mmap (a loopback of in_data).
 */
class MockViommu implements ViommuState {
  readonly hwQueues: (MockHwQueue | undefined)[] = new Array(IOMMU_TEST_HW_QUEUE_MAX).fill(undefined);
  mmapOffset = 0n;
  outData: Uint8Array | undefined;
  constructor(
    readonly core: ViommuCore,
    readonly s2Parent: IommuDomain,
    readonly nestedAlloc: (
      parent: IommuDomain,
      flags: number,
      ud: IommuUserData,
      v: ViommuCore,
    ) => IommuDomain,
  ) {}

  destroy(): void {
    if (this.mmapOffset !== 0n) this.core.destroyMmap(this.mmapOffset);
    this.mmapOffset = 0n;
  }

  /** mock_viommu_alloc_domain_nested(): flags other than PASID EOPNOTSUPP, then the nested data rules. */
  allocDomainNested(flags: number, userData: IommuUserData): IommuDomain {
    if ((flags & ~IOMMU_HWPT_ALLOC_PASID) !== 0)
      fail(EOPNOTSUPP, "mock vIOMMU nested domains take only PASID");
    return this.nestedAlloc(this.s2Parent, flags, userData, this.core);
  }

  /**
   * mock_viommu_cache_invalidate(): entries are struct
   * iommu_viommu_invalidate_selftest { flags, vdev_id, cache_id }; the whole
   * array is copied first (iommu_copy_struct_from_full_user_array), then
   * each entry clears the cache of the device its vdev_id names.
   */
  cacheInvalidate(
    type: number,
    entryLen: number,
    entryNum: number,
    fetch: () => Uint8Array[] | undefined,
  ): InvalidateResult {
    if (entryNum === 0 && type === IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return { handled: 0, errno: 0 };
    if (entryNum * VIOMMU_INV_SIZE > KMALLOC_MAX)
      return { handled: 0, errno: ENOMEM, reason: `mock: cannot allocate ${entryNum} commands` };
    if (type !== IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) {
      return {
        handled: 0,
        errno: EINVAL,
        reason: `mock: vIOMMU invalidation data type 0x${type.toString(16)} is not SELFTEST`,
      };
    }
    if (entryNum === 0) return { handled: 0, errno: EINVAL, reason: "mock: no entries" };
    const entries = fetch();
    if (entries === undefined)
      return {
        handled: 0,
        errno: EFAULT,
        reason: `mock: cannot read ${entryNum} entries of ${entryLen} bytes`,
      };
    // iommu_copy_struct_from_full_user_array() copies each entry with plain
    // copy_struct_from_user(), not __iommu_copy_struct_from_user(): a short
    // entry is zero-filled and a longer one is taken if its tail is zero
    // (E2BIG otherwise), unlike the nested HWPT's per-entry copy.
    const cmds: DataView[] = [];
    for (const e of entries) {
      const c = copyStructFromUser(
        VIOMMU_INV_SIZE,
        e.subarray(0, entryLen),
        "struct iommu_viommu_invalidate_selftest",
      );
      if (!c.ok) return { handled: 0, errno: c.errno, reason: c.reason };
      cmds.push(new DataView(c.kbuf.buffer, c.kbuf.byteOffset, VIOMMU_INV_SIZE));
    }
    let handled = 0;
    for (const c of cmds) {
      const flags = c.getUint32(0, true);
      const vdevId = c.getUint32(4, true);
      const cacheId = c.getUint32(8, true);
      if ((flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) !== 0)
        return { handled, errno: EOPNOTSUPP, reason: `mock: unknown flags 0x${flags.toString(16)}` };
      if (cacheId > MOCK_DEV_CACHE_ID_MAX)
        return { handled, errno: EINVAL, reason: `mock: cache_id ${cacheId} > ${MOCK_DEV_CACHE_ID_MAX}` };
      const dev = this.core.findDev(BigInt(vdevId));
      if (dev === undefined)
        return {
          handled,
          errno: EINVAL,
          reason: `mock: no vDEVICE with virtual ID 0x${vdevId.toString(16)}`,
        };
      const cache = mockDevState(dev).cache;
      if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) cache.fill(0);
      else cache[cacheId] = 0;
      handled++;
    }
    return { handled, errno: 0 };
  }

  hwQueueSupported(type: number): boolean {
    return type === IOMMU_HW_QUEUE_TYPE_SELFTEST;
  }

  /**
   * mock_hw_queue_init_phys(): index < IOMMU_TEST_HW_QUEUE_MAX (EINVAL),
   * free (EEXIST), index n needs queue n-1 (EIO), the core's PA must be what
   * the stage-2 domain translates the base IOVA to (EFAULT); queue n then
   * depends on queue n-1.
   */
  hwQueueInitPhys(q: HwQueueCore, index: number, basePa: bigint): void {
    if (index >= IOMMU_TEST_HW_QUEUE_MAX)
      fail(EINVAL, `mock: HW queue index ${index} >= ${IOMMU_TEST_HW_QUEUE_MAX}`);
    if (this.hwQueues[index] !== undefined) fail(EEXIST, `mock: HW queue index ${index} is in use`);
    let prev: MockHwQueue | undefined;
    if (index > 0) {
      prev = this.hwQueues[index - 1];
      if (prev === undefined) fail(EIO, `mock: HW queue ${index} needs queue ${index - 1} first`);
    }
    if (basePa !== this.s2Parent.iovaToPhys(q.baseAddr)) {
      fail(EFAULT, "mock: the core's physical address of the queue disagrees with the stage-2 domain");
    }
    if (prev !== undefined) q.depend(prev.core);
    const mq: MockHwQueue = { core: q, prev, index };
    this.hwQueues[index] = mq;
    q.driverDestroy = () => {
      this.hwQueues[mq.index] = undefined;
      if (mq.prev !== undefined) q.undepend(mq.prev.core);
    };
  }
}

/**
 * mock_viommu_init(): with driver data (struct iommu_viommu_selftest) a
 * two-page register window is registered for mmap, in_data is written to
 * it and echoed in out_data with the mmap offset and length.
 */
export function mockViommuInit(
  core: ViommuCore,
  parent: IommuDomain,
  userData: IommuUserData | undefined,
  nestedAlloc: (parent: IommuDomain, flags: number, ud: IommuUserData, v: ViommuCore) => IommuDomain,
): ViommuState {
  const v = new MockViommu(core, parent, nestedAlloc);
  if (userData !== undefined) {
    const dv = copyStruct(userData.bytes, VIOMMU_SELFTEST_MIN, VIOMMU_SELFTEST_SIZE, "iommu_viommu_selftest");
    const inData = dv.getUint32(0, true);
    const page = new Uint8Array(MOCK_MMAP_LENGTH);
    new DataView(page.buffer).setUint32(0, inData, true);
    v.mmapOffset = core.allocMmap(page);
    dv.setUint32(4, inData, true);
    dv.setBigUint64(8, v.mmapOffset, true);
    dv.setBigUint64(16, BigInt(MOCK_MMAP_LENGTH), true);
    // iommu_copy_struct_to_user(): min(user length, kernel size) bytes go back.
    v.outData = new Uint8Array(dv.buffer, 0, Math.min(userData.bytes.length, VIOMMU_SELFTEST_SIZE));
  }
  return v;
}
