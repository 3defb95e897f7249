import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_ENABLE,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
  VFIO_SPAPR_TCE_IOMMU,
  VFIO_TYPE1_IOMMU,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from "../../src/uapi/index.js";
import { buffer, type GroupOpened, le, sioctl, withRegions } from "../e2e/driver.js";

// m.debug.vfioContainers(): what a legacy container holds (type1 mappings
// and domain tables, sPAPR windows and TCEs), read without changing anything.

function open(m: Machine, p: Process, type: number): GroupOpened {
  expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
  const group = p.open("/dev/vfio/0");
  const container = p.open("/dev/vfio/vfio");
  expect(p.ioctl(group, VFIO_GROUP_SET_CONTAINER, le(container, 4))).toBe(0);
  expect(p.ioctl(container, VFIO_SET_IOMMU, BigInt(type))).toBe(0);
  const dev = p.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode("0000:00:04.0\0"));
  expect(dev).toBeGreaterThanOrEqual(0);
  return { ...withRegions(p, dev), group, container };
}

const map = (o: GroupOpened, vaddr: bigint, iova: bigint, size: bigint, flags: number) =>
  sioctl(o.p, o.container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
    argsz: 32,
    flags,
    vaddr,
    iova,
    size,
  }).ret;
const unmap = (o: GroupOpened, iova: bigint, size: bigint) =>
  sioctl(o.p, o.container, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { argsz: 24, iova, size }).ret;

describe("m.debug.vfioContainers()", () => {
  it("type1: the mapping with its pinned frames, and the domain's table mapping them", () => {
    const m = new Machine({ iommu: "amd" });
    const p = m.spawn({ rlimitMemlock: 1n << 30n });
    const before = p.open("/dev/vfio/vfio");
    expect(m.debug.vfioContainers(p)).toEqual([{ fd: before, driver: null, groups: [] }]);
    expect(p.close(before)).toBe(0);
    const o = open(m, p, VFIO_TYPE1_IOMMU);
    const buf = buffer(p, 0x4000, (i) => i & 0xff);
    expect(map(o, buf, 0x10000n, 0x4000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    const counters = m.debug.counters();
    const [c] = m.debug.vfioContainers(p);
    expect(c).toMatchObject({ fd: o.container, driver: "vfio-iommu-type1", groups: [0] });
    const t = c.type1!;
    expect(t.v2).toBe(false);
    expect(t.dmas).toHaveLength(1);
    expect(t.dmas[0]).toMatchObject({
      iova: 0x10000n,
      size: 0x4000n,
      vaddr: buf,
      prot: 1,
      vaddrInvalid: false,
    });
    const pfns = t.dmas[0].pinnedRuns.flatMap((r) => Array.from({ length: r.n }, (_, i) => r.pfn + i));
    expect(pfns).toHaveLength(4);
    expect(m.debug.readPhys(BigInt(pfns[1]) << 12n, 4)).toEqual(new Uint8Array([0, 1, 2, 3]));
    expect(t.reserved).toContainEqual({
      start: 0xfee00000n,
      last: 0xfeefffffn,
      owner: "msi region of 0000:00:04.0",
    });
    expect(t.iovaRanges[0]).toEqual({ start: 0n, last: 0xfedfffffn });
    expect(t.pgsizes & 0x1000n).toBe(0x1000n);
    expect(t.domains).toHaveLength(1);
    expect(t.domains[0].groups).toEqual([0]);
    expect(t.domains[0].table.format).toBe("amdv1");
    const leaves = t.domains[0].table.dump!().filter((e) => e.level === 0);
    expect(leaves.map((e) => /pa=(0x[0-9a-f]+)/.exec(e.text)![1])).toEqual(
      pfns.map((pfn) => `0x${(pfn * 4096).toString(16)}`),
    );
    // reading changed nothing
    expect(m.debug.counters()).toEqual(counters);
    expect(unmap(o, 0x10000n, 0x4000n)).toBe(0);
    expect(m.debug.vfioContainers(p)[0].type1!.dmas).toEqual([]);
    p.exit();
    expect(m.debug.vfioContainers(p)).toEqual([]);
  });

  it("sPAPR v1: the default window, each TCE run with its direction and host page, no user address", () => {
    const m = new Machine({ iommu: "spapr" });
    const p = m.spawn({ rlimitMemlock: 2n << 30n });
    const o = open(m, p, VFIO_SPAPR_TCE_IOMMU);
    expect(m.debug.vfioContainers(p)[0].spapr).toMatchObject({ v2: false, enabled: false, mappings: [] });
    expect(p.ioctl(o.container, VFIO_IOMMU_ENABLE)).toBe(0);
    const src = buffer(p, 0x1000, (i) => (i + 7) & 0xff);
    const dst = buffer(p, 0x1000, () => 0);
    expect(map(o, src, 0x1000n, 0x1000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(map(o, dst, 0x8000n, 0x1000n, VFIO_DMA_MAP_FLAG_WRITE)).toBe(0);
    const s = m.debug.vfioContainers(p)[0].spapr!;
    expect(s.enabled).toBe(true);
    expect(s.windows.map((w) => [w.slot, w.start, w.pageShift, w.levels, w.itOffset])).toEqual([
      [0, 0n, 12, 1, 0],
    ]);
    // a WRITE TCE is READ|WRITE on powernv; v1 keeps no user address
    expect(s.mappings.map((x) => [x.slot, x.iova, x.last, x.prot, x.ua])).toEqual([
      [0, 0x1000n, 0x1fffn, 1, undefined],
      [0, 0x8000n, 0x8fffn, 3, undefined],
    ]);
    expect(m.debug.readPhys(BigInt(s.mappings[0].pfn) << 12n, 2)).toEqual(new Uint8Array([7, 8]));
    // the window's dump holds the same TCEs, indexed from it_offset
    const dump = s.windows[0].dump();
    expect(dump.map((e) => [e.level, e.index])).toEqual([
      [0, 1],
      [0, 8],
    ]);
    expect(dump[0].text).toBe(`TCE 4K pa=0x${(s.mappings[0].pfn * 4096).toString(16)} TO_DEVICE(R)`);
    expect(s.prereg).toEqual([]);
  });
});
