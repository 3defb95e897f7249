import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import {
  EEXIST,
  EINVAL,
  ENOMEM,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UPDATE_VADDR,
  vfio_group_status,
  vfio_iommu_type1_info,
} from "../../src/uapi/index.js";
import { BDF, buffer, dmaMap, le, openGroup, sioctl } from "../e2e/driver.js";

describe("legacy container", () => {
  it("API version, extensions before and after SET_IOMMU, EINVAL before SET_IOMMU", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(c, VFIO_GET_API_VERSION)).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_UPDATE_VADDR))).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, 6n)).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(-EINVAL); // no group yet
    expect(p.ioctl(c, VFIO_IOMMU_MAP_DMA, new Uint8Array(32))).toBe(-EINVAL);
    const g = p.open("/dev/vfio/0");
    const st = sioctl(p, g, VFIO_GROUP_GET_STATUS, vfio_group_status, { argsz: 8 });
    expect(st.out.flags).toBe(1n);
    expect(sioctl(p, g, VFIO_GROUP_GET_STATUS, vfio_group_status, { argsz: 7 }).ret).toBe(-EINVAL);
    expect(p.ioctl(g, VFIO_GROUP_UNSET_CONTAINER)).toBe(-EINVAL);
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1_IOMMU))).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1_IOMMU))).toBe(-EINVAL);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_DMA_CC_IOMMU))).toBe(1);
    expect(p.ioctl(g, VFIO_GROUP_UNSET_CONTAINER)).toBe(0);
    // the last group took the IOMMU driver with it
    expect(p.ioctl(c, VFIO_IOMMU_MAP_DMA, new Uint8Array(32))).toBe(-EINVAL);
  });

  it("MAP_DMA errors change nothing: no READ/WRITE, unaligned, overlap, RLIMIT_MEMLOCK", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 16384n });
    const o = openGroup(p, 0);
    const va = buffer(p, 8 * 4096);
    expect(dmaMap(o, va, 4096, 0x10000n, 0)).toBe(-EINVAL);
    expect(dmaMap(o, va + 1n, 4096, 0x10000n)).toBe(-EINVAL);
    expect(dmaMap(o, va, 4096, 0x10800n)).toBe(-EINVAL);
    expect(dmaMap(o, va, 0, 0x10000n)).toBe(-EINVAL);
    expect(dmaMap(o, va, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(o, va, 8192, 0xf000n)).toBe(-EEXIST);
    expect(dmaMap(o, va, 4 * 4096, 0x40000n)).toBe(-ENOMEM);
    expect(m.debug.counters().pinnedPages).toBe(1);
    expect(m.debug.counters().vfioType1PinnedPages).toBe(1);
  });

  it("GET_INFO: page sizes, and the caps chain (migration, DMA avail, IOVA ranges) with argsz growth", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const small = sioctl(p, o.container, VFIO_IOMMU_GET_INFO, vfio_iommu_type1_info, { argsz: 16 });
    expect(small.ret).toBe(0);
    expect(small.out.flags).toBe(3n);
    expect(small.out.iova_pgsizes & 0xfffn).toBe(0n);
    expect(small.out.iova_pgsizes & 0x1000n).toBe(0x1000n);
    const need = Number(small.out.argsz);
    expect(need).toBeGreaterThan(24 + 32 + 16);
    const buf = new Uint8Array(need);
    new DataView(buf.buffer).setUint32(0, need, true);
    expect(p.ioctl(o.container, VFIO_IOMMU_GET_INFO, buf)).toBe(0);
    const dv = new DataView(buf.buffer);
    expect(dv.getUint32(16, true)).toBe(24);
    const ids: number[] = [];
    for (let off = 24; off !== 0; off = dv.getUint32(off + 4, true)) ids.push(dv.getUint16(off, true));
    expect(ids).toEqual([2, 3, 1]);
    expect(dv.getUint32(24 + 32 + 8, true)).toBe(65535);
  });
});
