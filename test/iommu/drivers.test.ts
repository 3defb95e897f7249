import { describe, expect, it } from "vitest";
import {
  AMD_MODEL_EFR,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  VTD_MODEL_CAP,
  VTD_MODEL_ECAP,
} from "../../src/iommu/index.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EADDRINUSE, EINVAL, ENOENT, ENOMEM, EOPNOTSUPP } from "../../src/uapi/errno.js";
import {
  IOMMU_HW_INFO_TYPE_AMD,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
} from "../../src/uapi/iommufd.js";
import { boot, errnoOf, MiB } from "./helpers.js";

const A = "0000:00:04.0";
const RW = IOMMU_READ | IOMMU_WRITE;
const le = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe("GET_HW_INFO data", () => {
  it("amd: struct iommu_hw_info_amd { efr, efr2 } (16 bytes, little endian)", () => {
    const dev = boot("amd").sub.device(A)!;
    const i = dev.hwInfo();
    expect(i.type).toBe(IOMMU_HW_INFO_TYPE_AMD);
    expect(i.data.length).toBe(16);
    expect(le(i.data).getBigUint64(0, true)).toBe(AMD_MODEL_EFR);
    expect(le(i.data).getBigUint64(8, true)).toBe(0n);
    expect((AMD_MODEL_EFR >> 52n) & 1n).toBe(1n); // HDSUP: dirty tracking reported
    expect(dev.capable("DIRTY_TRACKING")).toBe(true);
    expect(dev.hwInfo(IOMMU_HW_INFO_TYPE_AMD).type).toBe(IOMMU_HW_INFO_TYPE_AMD);
    expect(errnoOf(() => dev.hwInfo(IOMMU_HW_INFO_TYPE_INTEL_VTD))).toBe(EOPNOTSUPP);
  });

  it("intel: struct iommu_hw_info_vtd { flags, __reserved, cap_reg, ecap_reg } (24 bytes)", () => {
    const dev = boot("intel").sub.device(A)!;
    const i = dev.hwInfo();
    expect(i.type).toBe(IOMMU_HW_INFO_TYPE_INTEL_VTD);
    expect(i.data.length).toBe(24);
    expect(le(i.data).getUint32(0, true)).toBe(0);
    expect(le(i.data).getUint32(4, true)).toBe(0);
    expect(le(i.data).getBigUint64(8, true)).toBe(VTD_MODEL_CAP);
    expect(le(i.data).getBigUint64(16, true)).toBe(VTD_MODEL_ECAP);
    // MGAW 48 bits, SAGAW 4-level, snoop control and SLADS set
    expect((VTD_MODEL_CAP >> 16n) & 0x3fn).toBe(47n);
    expect((VTD_MODEL_CAP >> 8n) & 0x1fn).toBe(4n);
    expect((VTD_MODEL_ECAP >> 7n) & 1n).toBe(1n);
    expect((VTD_MODEL_ECAP >> 45n) & 1n).toBe(1n);
    expect(errnoOf(() => dev.hwInfo(IOMMU_HW_INFO_TYPE_AMD))).toBe(EOPNOTSUPP);
  });

  it("mock: struct iommu_test_hw_info { flags = 0, test_reg = 0xdeadbeef }, type 0xfeedbeef", () => {
    const dev = boot("mock").sub.device(A)!;
    const i = dev.hwInfo();
    expect(i.type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
    expect([...i.data]).toEqual([0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde]);
    expect(dev.maxPasidLog2()).toBe(0);
    expect(
      boot("mock", [{ bdf: A, flags: { pasid: true } }])
        .sub.device(A)!
        .maxPasidLog2(),
    ).toBe(20);
  });
});

describe("mock driver", () => {
  it("2 KiB pages and the MOCK aperture", () => {
    const dev = boot("mock").sub.device(A)!;
    const d = dev.driver.allocPaging(dev, 0);
    expect(d.pgsizeBitmap).toBe(2048n);
    expect(d.apertures).toEqual([{ start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST }]);
    d.map(MOCK_APERTURE_START + 0x800n, 0x1234_5800n, 0x1000n, RW);
    expect(d.iovaToPhys(MOCK_APERTURE_START + 0x1000n)).toBe(0x1234_6000n);
    expect(errnoOf(() => d.map(MOCK_APERTURE_START + 0x400n, 0x1234_5400n, 0x800n, RW))).toBe(EINVAL);
    expect(d.unmap(MOCK_APERTURE_START + 0x800n, 0x1000n)).toBe(0x1000n);
    // a real amdv1_mock table: top (level 2), level 1 and level 0 stay until the domain goes
    expect(d.frames()).toBe(3);
    d.free();
    expect(d.frames()).toBe(0);
  });

  it("HUGE_IOVA devices add the 1 MiB page; dirty reads report whole huge pages", () => {
    const { ctx, sub } = boot("mock", [{ bdf: A, flags: { hugeIova: true } }]);
    const dev = sub.device(A)!;
    const d = dev.driver.allocPaging(dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    expect(d.pgsizeBitmap).toBe(2048n | MiB);
    d.map(MOCK_APERTURE_START, 0x4000_0000n, 2n * MiB, RW);
    const got: bigint[][] = [];
    expect(errnoOf(() => d.readAndClearDirty(MOCK_APERTURE_START, 2n * MiB, false, () => {}))).toBe(EINVAL);
    d.setDirtyTracking(true);
    expect(d.pt!.setDirty(Number((MOCK_APERTURE_START + MiB + 0x800n) >> 11n))).toBe(0);
    d.readAndClearDirty(MOCK_APERTURE_START, 2n * MiB, true, (i, l) => got.push([i, l]));
    expect(got).toEqual([[MOCK_APERTURE_START + MiB, MiB]]);
    d.readAndClearDirty(MOCK_APERTURE_START, 2n * MiB, false, (i, l) => got.push([i, l]));
    expect(got.length).toBe(2); // NO_CLEAR kept it
    d.readAndClearDirty(MOCK_APERTURE_START, 2n * MiB, false, (i, l) => got.push([i, l]));
    expect(got.length).toBe(2); // cleared by the previous read
    expect(d.pt!.setDirty(0)).toBe(-ENOENT);
    expect(ctx.klog.taint()).toEqual([]);
  });

  it("nested domains: SELFTEST data, the mock IOTLB and its invalidation", () => {
    const dev = boot("mock").sub.device(A)!;
    const drv = dev.driver;
    const parent = drv.allocPaging(dev, IOMMU_HWPT_ALLOC_NEST_PARENT);
    const cfg = new Uint8Array(4);
    le(cfg).setUint32(0, 0xbadbeef, true);
    expect(errnoOf(() => drv.allocNested(dev, parent, 0, { type: 0, bytes: cfg }))).toBe(EOPNOTSUPP);
    expect(
      errnoOf(() =>
        drv.allocNested(dev, parent, 0, { type: IOMMU_HWPT_DATA_SELFTEST, bytes: cfg.subarray(0, 2) }),
      ),
    ).toBe(EINVAL);
    expect(
      errnoOf(() =>
        drv.allocNested(dev, parent, 0, {
          type: IOMMU_HWPT_DATA_SELFTEST,
          // one byte longer than the kernel's 8-byte struct, even all zero
          bytes: new Uint8Array(9),
        }),
      ),
    ).toBe(EINVAL);
    const n = drv.allocNested(dev, parent, 0, { type: IOMMU_HWPT_DATA_SELFTEST, bytes: cfg });
    expect(n.type).toBe("nested");
    expect(n.parent).toBe(parent);
    expect(n.priv.iotlb).toEqual([0xbadbeef, 0xbadbeef, 0xbadbeef, 0xbadbeef]);
    const entry = (flags: number, id: number) => {
      const b = new Uint8Array(8);
      le(b).setUint32(0, flags, true);
      le(b).setUint32(4, id, true);
      return b;
    };
    expect(drv.cacheInvalidateUser!(n, 0, 8, [entry(0, 1)])).toMatchObject({ handled: 0, errno: EINVAL });
    const r = drv.cacheInvalidateUser!(n, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, [
      entry(0, 1),
      entry(0, 4),
      entry(0, 2),
    ]);
    expect(r).toMatchObject({ handled: 1, errno: EINVAL });
    expect(n.priv.iotlb).toEqual([0xbadbeef, 0, 0xbadbeef, 0xbadbeef]);
    expect(drv.cacheInvalidateUser!(n, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, [entry(2, 0)])).toMatchObject({
      handled: 0,
      errno: EOPNOTSUPP,
    });
    // the id is range-checked even with FLAG_ALL (selftest.c order)
    expect(drv.cacheInvalidateUser!(n, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, [entry(1, 99)]).errno).toBe(
      EINVAL,
    );
    expect(drv.cacheInvalidateUser!(n, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 8, [entry(1, 3)])).toEqual({
      handled: 1,
      errno: 0,
    });
    expect(n.priv.iotlb).toEqual([0, 0, 0, 0]);
  });

  it("no hardware dirty bits: a DMA write through a dirty-tracking mock domain leaves D clear", () => {
    const { sub } = boot("mock");
    const dev = sub.device(A)!;
    const d = dev.driver.allocPaging(dev, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    d.setDirtyTracking(true);
    d.map(MOCK_APERTURE_START, 0x1000_0000n, 0x800n, RW);
    expect(d.pt!.translate(MOCK_APERTURE_START + 0x10n, true)).toMatchObject({
      ok: true,
      pa: 0x1000_0010,
      left: 0x7f0,
    });
    const got: bigint[][] = [];
    d.readAndClearDirty(MOCK_APERTURE_START, 0x800n, false, (i, l) => got.push([i, l]));
    expect(got).toEqual([]);
    // IOMMU_TEST_OP_DIRTY's set_dirty is the only way D gets set
    expect(d.pt!.setDirty(Number(MOCK_APERTURE_START >> 11n))).toBe(0);
    d.readAndClearDirty(MOCK_APERTURE_START, 0x800n, false, (i, l) => got.push([i, l]));
    expect(got).toEqual([[MOCK_APERTURE_START, 0x800n]]);
  });

  it("fail_nth fails the generic_pt table allocation (ENOMEM), leaving nothing mapped or held", () => {
    const { ctx, sub } = boot("mock");
    const dev = sub.device(A)!;
    const d = dev.driver.allocPaging(dev, 0);
    const frames = d.frames();
    ctx.faults.arm(1);
    expect(errnoOf(() => d.map(MOCK_APERTURE_START, 0x1000_0000n, 0x2000n, RW))).toBe(ENOMEM);
    ctx.faults.disarm();
    expect(d.iovaToPhys(MOCK_APERTURE_START)).toBe(0n);
    expect(d.mapped.length).toBe(0);
    expect(d.frames()).toBe(frames);
  });

  it("generic_pt semantics: partial unmaps remove whole 2 KiB leaves, mapping over a leaf is EADDRINUSE", () => {
    const { ctx, sub } = boot("mock");
    const dev = sub.device(A)!;
    const d = dev.driver.allocPaging(dev, 0);
    d.map(MOCK_APERTURE_START, 0x1000_0000n, 0x2000n, RW);
    expect(d.unmap(MOCK_APERTURE_START + 0x800n, 0x800n)).toBe(0x800n);
    expect(d.iovaToPhys(MOCK_APERTURE_START + 0x800n)).toBe(0n);
    expect(d.iovaToPhys(MOCK_APERTURE_START + 0x1000n)).toBe(0x1000_1000n);
    // no xarray start/last markers any more: nothing to WARN about
    expect(ctx.klog.taint()).toEqual([]);
    expect(errnoOf(() => d.map(MOCK_APERTURE_START, 0x2000_0000n, 0x800n, RW))).toBe(EADDRINUSE);
    expect(d.iovaToPhys(MOCK_APERTURE_START)).toBe(0x1000_0000n);
  });
});
