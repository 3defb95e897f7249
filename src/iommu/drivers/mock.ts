import type { KernelCtx } from "../../kernel/kctx.js";
import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import {
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_NONE,
} from "../../uapi/iommufd.js";
import type { IommuDevice } from "../device.js";
import { IommuDomain } from "../domain.js";
import type { InvalidateResult, IommuUserData } from "../driver.js";
import type { HwInfo, IommuCap, ResvRegion } from "../types.js";
import { DriverBase } from "./common.js";
import { MOCK_HUGE_PAGE_LG2, MOCK_IO_PAGE_LG2, newMockTable } from "./mock-table.js";
import {
  IOMMU_VIOMMU_TYPE_SELFTEST,
  mockAttachViommu,
  mockSetDevPasid,
  mockViommuInit,
} from "./mock-viommu.js";
import type { PasidDriver, ViommuCore, ViommuDriver, ViommuState } from "./viommu-ops.js";

// iommufd_test.h values (a test-only uapi header).
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const MOCK_PASID_WIDTH = 20;
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
/** sizeof(struct iommu_hwpt_selftest) in 7.x (iotlb, pagetable_type); 6.12 programs send its first 4 bytes. */
export const HWPT_SELFTEST_SIZE = 8;
/** struct iommu_hwpt_selftest.pagetable_type (iommufd_test.h). */
export const MOCK_IOMMUPT_DEFAULT = 0;
export const MOCK_IOMMUPT_HUGE = 1;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1;
export const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
export const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
/** MOCK_FLAGS_DEVICE_* (IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS). */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 2;
export const MOCK_FLAGS_DEVICE_PASID = 4;

/** struct iommu_test_hw_info { __u32 flags; __u32 test_reg; } (8 bytes). */
export const IOMMU_TEST_HW_INFO_SIZE = 8;

/**
 * The iommufd selftest's mock IOMMU (drivers/iommu/iommufd/selftest.c):
 * 2 KiB pages in a generic_pt amdv1_mock table (mock-table.ts), the
 * [1<<24, (1<<31)-1] aperture, a blocking default domain,
 * dirty tracking unless the device says NO_DIRTY, nested domains holding a
 * four-entry mock IOTLB invalidated with IOMMU_HWPT_INVALIDATE_DATA_SELFTEST.
 */
export class MockIommuDriver extends DriverBase implements ViommuDriver, PasidDriver {
  readonly name = "mock" as const;

  constructor(ctx: KernelCtx) {
    super(ctx, false);
  }

  capable(dev: IommuDevice, cap: IommuCap): boolean {
    if (cap === "CACHE_COHERENCY") return true;
    if (cap === "DIRTY_TRACKING") return !dev.flags.noDirty;
    return false;
  }

  /** The mock registers no get_resv_regions in the selftest.c we follow. */
  resvRegions(_dev: IommuDevice): ResvRegion[] {
    return [];
  }

  /** mock_domain_hw_info(): struct iommu_test_hw_info with test_reg = IOMMU_HW_INFO_SELFTEST_REGVAL. */
  hwInfo(_dev: IommuDevice, reqType: number): HwInfo {
    if (reqType !== IOMMU_HW_INFO_TYPE_DEFAULT && reqType !== IOMMU_HW_INFO_TYPE_SELFTEST) {
      fail(EOPNOTSUPP, `the mock IOMMU reports only IOMMU_HW_INFO_TYPE_SELFTEST (asked for type ${reqType})`);
    }
    const data = new Uint8Array(IOMMU_TEST_HW_INFO_SIZE);
    const dv = new DataView(data.buffer);
    dv.setUint32(0, 0, true);
    dv.setUint32(4, IOMMU_HW_INFO_SELFTEST_REGVAL, true);
    return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
  }

  override maxPasidLog2(dev: IommuDevice): number {
    return dev.flags.pasid ? MOCK_PASID_WIDTH : 0;
  }

  /**
   * mock_domain_alloc_paging_flags(): flags beyond NEST_PARENT |
   * DIRTY_TRACKING | PASID, or DIRTY_TRACKING on a NO_DIRTY device:
   * EOPNOTSUPP. Since the selftest moved to iommupt (7.x) the driver data
   * may be a struct iommu_hwpt_selftest choosing the table
   * (mock_domain_alloc_pgtable): MOCK_IOMMUPT_DEFAULT (2 KiB pages, the
   * mock aperture) or MOCK_IOMMUPT_HUGE (only 1 MiB leaves plus PAGE_SIZE,
   * the table's own aperture); any other type EOPNOTSUPP. 6.12's mock
   * takes no driver data at all.
   */
  allocPaging(dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain {
    const allowed = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID;
    const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
    if ((flags & ~allowed) !== 0 || (dirty && dev?.flags.noDirty)) {
      fail(EOPNOTSUPP, "mock: unsupported flags, or DIRTY_TRACKING on a MOCK_FLAGS_DEVICE_NO_DIRTY device");
    }
    let ptType = MOCK_IOMMUPT_DEFAULT;
    if (userData !== undefined) {
      if (this.ctx.profile === "6.12") fail(EOPNOTSUPP, "the 6.12 mock's paging domains take no driver data");
      if (userData.type !== IOMMU_HWPT_DATA_SELFTEST && userData.type !== IOMMU_HWPT_DATA_NONE) {
        fail(EOPNOTSUPP, `mock paging domains take IOMMU_HWPT_DATA_SELFTEST (got ${userData.type})`);
      }
      if (userData.type !== IOMMU_HWPT_DATA_SELFTEST) {
        fail(EINVAL, "iommu_copy_struct_from_user: the data type is not IOMMU_HWPT_DATA_SELFTEST");
      }
      ptType = copyU32Struct(userData.bytes, 4, HWPT_SELFTEST_SIZE, "struct iommu_hwpt_selftest")[1];
      if (ptType !== MOCK_IOMMUPT_DEFAULT && ptType !== MOCK_IOMMUPT_HUGE) {
        fail(EOPNOTSUPP, `mock: pagetable_type ${ptType} is not modelled (DEFAULT 0 and HUGE 1 are)`);
      }
    }
    const huge = ptType === MOCK_IOMMUPT_HUGE;
    const sizes = huge ? [12, MOCK_HUGE_PAGE_LG2] : [MOCK_IO_PAGE_LG2];
    if (!huge && dev?.flags.hugeIova) sizes.push(MOCK_HUGE_PAGE_LG2);
    // DEFAULT overrides the table's geometry with the mock aperture; HUGE keeps
    // the 3-level amdv1_mock table's own (38 VA bits).
    const apertures = huge
      ? [{ start: 0n, last: (1n << 38n) - 1n }]
      : [{ start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST }];
    const pt = newMockTable(this.ctx.phys, this.ctx.frames, sizes);
    return this.track(
      new IommuDomain({
        driver: this,
        type: "paging",
        pt,
        apertures,
        pgsizesLg2: sizes,
        dirtyOps: dirty,
        nestParent: (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0,
      }),
    );
  }

  /**
   * mock_domain_alloc_nested(): flags other than PASID EOPNOTSUPP; the
   * parent must be a mock paging domain (EINVAL); data type must be
   * IOMMU_HWPT_DATA_SELFTEST (EOPNOTSUPP); struct iommu_hwpt_selftest
   * { __u32 iotlb } copied with the extensible-struct rules (short EINVAL,
   * non-zero tail E2BIG).
   */
  override allocNested(
    _dev: IommuDevice,
    parent: IommuDomain,
    flags: number,
    userData: IommuUserData,
  ): IommuDomain {
    if ((flags & ~IOMMU_HWPT_ALLOC_PASID) !== 0)
      fail(EOPNOTSUPP, "mock nested domains take no flags but PASID");
    if (parent.driver !== this || parent.type !== "paging") {
      fail(EINVAL, "mock nested domain needs a mock paging parent");
    }
    return this.nestedDomain(parent, userData, undefined);
  }

  /**
   * __mock_domain_alloc_nested(): the data type must be
   * IOMMU_HWPT_DATA_SELFTEST (EOPNOTSUPP); struct iommu_hwpt_selftest
   * { __u32 iotlb; __u32 pagetable_type } copied with the extensible-struct rules. A vIOMMU's
   * nested domain remembers its vIOMMU (attach then needs a vDEVICE).
   */
  private nestedDomain(
    parent: IommuDomain,
    userData: IommuUserData,
    viommu: ViommuCore | undefined,
  ): IommuDomain {
    if (userData.type !== IOMMU_HWPT_DATA_SELFTEST) {
      fail(EOPNOTSUPP, `mock nested domains take IOMMU_HWPT_DATA_SELFTEST (got ${userData.type})`);
    }
    const iotlb = copyU32Struct(userData.bytes, 4, HWPT_SELFTEST_SIZE, "struct iommu_hwpt_selftest")[0];
    return this.track(
      new IommuDomain({
        driver: this,
        type: "nested",
        parent,
        priv: { iotlb: new Array<number>(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(iotlb), viommu },
      }),
    );
  }

  /** mock_get_viommu_size(): only IOMMU_VIOMMU_TYPE_SELFTEST. */
  viommuSupported(_dev: IommuDevice, type: number): boolean {
    return type >>> 0 === IOMMU_VIOMMU_TYPE_SELFTEST;
  }

  /** mock_viommu_init() (mock-viommu.ts). */
  viommuInit(core: ViommuCore, parent: IommuDomain, userData: IommuUserData | undefined): ViommuState {
    return mockViommuInit(core, parent, userData, (p, _flags, ud, v) => this.nestedDomain(p, ud, v));
  }

  /** mock_domain_set_dev_pasid_nop() on every mock domain, blocking included. */
  setDevPasid(domain: IommuDomain | undefined, dev: IommuDevice, pasid: number): void {
    mockSetDevPasid(domain, dev, pasid);
  }

  /** The mock's def_domain: its blocking domain. */
  defaultDomainType(_dev: IommuDevice): "dma" | "identity" | "blocked" {
    return "blocked";
  }

  /** mock_domain_nop_attach(): a dirty-tracking domain refuses a NO_DIRTY device. */
  attachDev(domain: IommuDomain, dev: IommuDevice): void {
    if (domain.dirtyOps && dev.flags.noDirty) {
      fail(
        EINVAL,
        `mock: ${dev.name} was created with MOCK_FLAGS_DEVICE_NO_DIRTY; it cannot use a dirty-tracking domain`,
      );
    }
    mockAttachViommu(domain, dev);
  }

  /** The mock has no enforce_cache_coherency op. */
  enforceCacheCoherency(_domain: IommuDomain): boolean {
    return false;
  }

  /**
   * mock_domain_cache_invalidate_user(): entries are struct
   * iommu_hwpt_invalidate_selftest { __u32 flags; __u32 iotlb_id; }.
   */
  cacheInvalidateUser(
    domain: IommuDomain,
    type: number,
    entryLen: number,
    entries: Uint8Array[],
  ): InvalidateResult {
    if (type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) {
      return {
        handled: 0,
        errno: EINVAL,
        reason: `mock: invalidation data type 0x${type.toString(16)} is not SELFTEST`,
      };
    }
    const iotlb = domain.priv.iotlb as number[];
    let handled = 0;
    for (const e of entries) {
      let flagsId: number[];
      try {
        flagsId = copyU32Struct(e.subarray(0, entryLen), 8, 8, "struct iommu_hwpt_invalidate_selftest");
      } catch (err) {
        const k = err as { errno: number; reason: string };
        return { handled, errno: k.errno, reason: k.reason };
      }
      const [flags, id] = flagsId;
      if ((flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) !== 0) {
        return {
          handled,
          errno: EOPNOTSUPP,
          reason: `mock: unknown invalidation flags 0x${flags.toString(16)}`,
        };
      }
      if (id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX) {
        return {
          handled,
          errno: EINVAL,
          reason: `mock: iotlb_id ${id} > ${MOCK_NESTED_DOMAIN_IOTLB_ID_MAX}`,
        };
      }
      if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) iotlb.fill(0);
      else iotlb[id] = 0;
      handled++;
    }
    return { handled, errno: 0 };
  }
}

/**
 * iommu_copy_struct_from_user() (__iommu_copy_struct_from_user): `bytes`
 * must reach the last mandatory field (`min`) and may not be longer than the
 * kernel's struct (`size`), both EINVAL; copy_struct_from_user() then
 * zero-extends. Returns the little-endian u32 fields of the kernel's struct.
 */
function copyU32Struct(bytes: Uint8Array, min: number, size: number, what: string): number[] {
  if (bytes.length < min) fail(EINVAL, `${what}: ${bytes.length} bytes is shorter than ${min}`);
  if (bytes.length > size) fail(EINVAL, `${what}: ${bytes.length} bytes is longer than the kernel's ${size}`);
  const k = new Uint8Array(size);
  k.set(bytes);
  const dv = new DataView(k.buffer);
  const out: number[] = [];
  for (let o = 0; o < size; o += 4) out.push(dv.getUint32(o, true));
  return out;
}
