// Type1 rules pinned against drivers/vfio/vfio_iommu_type1.c (vfio_dma_do_map,
// vfio_dma_do_unmap, vfio_iommu_type1_dirty_pages, vfio_iommu_type1_attach_group).
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  EACCES,
  EBUSY,
  EINVAL,
  ENOENT,
  ENOSPC,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1_IOMMU,
  VFIO_UPDATE_VADDR,
} from "../../src/uapi/index.js";
import { BDF, buffer, dmaMap, type GroupOpened, le, openGroup } from "../e2e/driver.js";

const BDF2 = "0000:00:05.0";

function twoDevices(): Machine {
  const m = new Machine({
    pci: [
      { bdf: BDF, kind: "memcpy" },
      { bdf: BDF2, kind: "memcpy" },
    ],
  });
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  expect(m.bindDriver(BDF2, "vfio-pci")).toBe(0);
  return m;
}

/** UNMAP_DMA with raw bytes: returns the errno and the size written back. */
function unmap(o: GroupOpened, iova: bigint, size: bigint, flags = 0, bitmap?: [bigint, bigint, bigint]) {
  const b = new Uint8Array(bitmap ? 48 : 24);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, b.length, true);
  dv.setUint32(4, flags, true);
  dv.setBigUint64(8, iova, true);
  dv.setBigUint64(16, size, true);
  if (bitmap) for (const [i, v] of bitmap.entries()) dv.setBigUint64(24 + 8 * i, v, true);
  const ret = o.p.ioctl(o.container, VFIO_IOMMU_UNMAP_DMA, b);
  return { ret, size: dv.getBigUint64(16, true) };
}

function dirty(
  p: Process,
  c: number,
  flags: number,
  range?: [bigint, bigint, bigint, bigint, bigint],
  argsz = 48,
) {
  const b = new Uint8Array(range ? 48 : 8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, range ? argsz : 8, true);
  dv.setUint32(4, flags, true);
  if (range) for (const [i, v] of range.entries()) dv.setBigUint64(8 + 8 * i, v, true);
  return p.ioctl(c, VFIO_IOMMU_DIRTY_PAGES, b);
}

describe("type1 MAP/UNMAP argument rules (vfio_iommu_type1.c)", () => {
  it("dma_entry_limit bounds the mappings: ENOSPC, and an unmap gives the entry back", () => {
    const m = new Machine({ params: { "vfio_iommu_type1.dma_entry_limit": 2 } });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const va = buffer(p, 3 * 4096);
    expect(dmaMap(o, va, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(o, va + 4096n, 4096, 0x11000n)).toBe(0);
    expect(dmaMap(o, va + 8192n, 4096, 0x12000n)).toBe(-ENOSPC);
    expect(m.debug.counters().vfioType1PinnedPages).toBe(2);
    expect(unmap(o, 0x11000n, 0x1000n).ret).toBe(0);
    expect(dmaMap(o, va + 8192n, 4096, 0x12000n)).toBe(0);
  });

  it("v1 unmap inside a mapping succeeds with size 0; v2 is EINVAL; ALL needs iova = size = 0", () => {
    for (const v2 of [false, true]) {
      const m = new Machine();
      m.bindDriver(BDF, "vfio-pci");
      const p = m.spawn();
      const o = openGroup(p, 0, BDF, v2 ? undefined : VFIO_TYPE1_IOMMU);
      const va = buffer(p, 4 * 4096);
      expect(dmaMap(o, va, 4 * 4096, 0x10000n)).toBe(0);
      const r = unmap(o, 0x11000n, 0x1000n);
      expect(r.ret).toBe(v2 ? -EINVAL : 0);
      if (!v2) expect(r.size).toBe(0n);
      expect(m.debug.counters().vfioType1PinnedPages).toBe(4);
      // v1: a range covering the first iova takes the whole mapping, reported in full.
      if (!v2) expect(unmap(o, 0x10000n, 0x1000n)).toEqual({ ret: 0, size: 0x4000n });
      else {
        expect(unmap(o, 0x1000n, 0x1000n, VFIO_DMA_UNMAP_FLAG_ALL).ret).toBe(-EINVAL);
        expect(unmap(o, 0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL)).toEqual({ ret: 0, size: 0x4000n });
      }
      expect(m.debug.counters().vfioType1PinnedPages).toBe(0);
      expect(m.debug.checkInvariants()).toEqual([]);
    }
  });
});

describe("type1 v2 UNMAP_DMA must not bisect a mapping at either end", () => {
  it("a range ending inside a mapping is EINVAL and unmaps nothing, not even the mappings before it", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const va = buffer(p, 8 * 4096);
    // A: [0x10000, 0x12000)  B: [0x12000, 0x16000)
    expect(dmaMap(o, va, 2 * 4096, 0x10000n)).toBe(0);
    expect(dmaMap(o, va + 0x2000n, 4 * 4096, 0x12000n)).toBe(0);
    const before = m.debug.counters().vfioType1PinnedPages;
    expect(before).toBe(6);
    for (const [iova, size] of [
      [0x12000n, 0x1000n], // starts at B, ends inside B
      [0x10000n, 0x3000n], // covers A whole, ends inside B
      [0x8000n, 0xb000n], // starts in a hole, ends inside B
      [0x10000n, 0x1000n], // starts at A, ends inside A
    ] as const) {
      // the kernel returns before copying the struct back: `size` keeps what the caller wrote
      expect(unmap(o, iova, size)).toEqual({ ret: -EINVAL, size });
      expect(m.debug.counters().vfioType1PinnedPages).toBe(before);
    }
    // both mappings are intact: exact ranges unmap them, reported in full
    expect(unmap(o, 0x10000n, 0x2000n)).toEqual({ ret: 0, size: 0x2000n });
    expect(unmap(o, 0x12000n, 0x4000n)).toEqual({ ret: 0, size: 0x4000n });
    expect(m.debug.counters().vfioType1PinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("VFIO_UPDATE_VADDR (UNMAP/MAP_DMA with the VADDR flag)", () => {
  it("invalidate, refuse a second invalidation and group attach (EBUSY), restore exactly", () => {
    const m = twoDevices();
    const p = m.spawn();
    const o = openGroup(p, 0);
    expect(p.ioctl(o.container, VFIO_CHECK_EXTENSION, BigInt(VFIO_UPDATE_VADDR))).toBe(1);
    const va = buffer(p, 4 * 4096);
    expect(dmaMap(o, va, 2 * 4096, 0x10000n)).toBe(0);
    // MAP VADDR on a mapping whose vaddr is valid: EINVAL; nothing there: ENOENT.
    expect(dmaMap(o, va, 2 * 4096, 0x10000n, VFIO_DMA_MAP_FLAG_VADDR)).toBe(-EINVAL);
    expect(dmaMap(o, va, 4096, 0x40000n, VFIO_DMA_MAP_FLAG_VADDR)).toBe(-ENOENT);
    // VADDR with READ/WRITE is EINVAL before anything is looked up.
    expect(dmaMap(o, va, 4096, 0x40000n, VFIO_DMA_MAP_FLAG_VADDR | VFIO_DMA_MAP_FLAG_READ)).toBe(-EINVAL);
    expect(unmap(o, 0x10000n, 0x2000n, VFIO_DMA_UNMAP_FLAG_VADDR)).toEqual({ ret: 0, size: 0x2000n });
    expect(m.debug.counters().vfioType1PinnedPages).toBe(2); // still pinned and mapped
    expect(unmap(o, 0x10000n, 0x2000n, VFIO_DMA_UNMAP_FLAG_VADDR).ret).toBe(-EINVAL);
    // Another group cannot join while a vaddr is invalid.
    const g2 = p.open("/dev/vfio/1");
    expect(p.ioctl(g2, VFIO_GROUP_SET_CONTAINER, le(o.container, 4))).toBe(-EBUSY);
    // Restoring needs the exact range.
    expect(dmaMap(o, va + 8192n, 4096, 0x10000n, VFIO_DMA_MAP_FLAG_VADDR)).toBe(-EINVAL);
    expect(dmaMap(o, va + 8192n, 2 * 4096, 0x10000n, VFIO_DMA_MAP_FLAG_VADDR)).toBe(0);
    expect(p.ioctl(g2, VFIO_GROUP_SET_CONTAINER, le(o.container, 4))).toBe(0);
    expect(unmap(o, 0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL)).toEqual({ ret: 0, size: 0x2000n });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("UNMAP ALL|VADDR invalidates every mapping; exit with invalid vaddrs releases everything", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const va = buffer(p, 2 * 4096);
    expect(dmaMap(o, va, 2 * 4096, 0x10000n)).toBe(0);
    expect(unmap(o, 0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)).toEqual({
      ret: 0,
      size: 0x2000n,
    });
    p.exit();
    expect(m.debug.counters().vfioType1PinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES, UNMAP GET_DIRTY_BITMAP)", () => {
  it("v1 is EACCES; flags must be exactly one; GET_BITMAP needs tracking, the IOMMU page size and room", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p1 = m.spawn();
    const o1 = openGroup(p1, 0, BDF, VFIO_TYPE1_IOMMU);
    expect(dirty(p1, o1.container, VFIO_IOMMU_DIRTY_PAGES_FLAG_START)).toBe(-EACCES);
    p1.exit();
    const p = m.spawn();
    const o = openGroup(p, 0);
    const c = o.container;
    expect(dirty(p, c, 0)).toBe(-EINVAL);
    expect(dirty(p, c, VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)).toBe(-EINVAL);
    expect(dirty(p, c, 8)).toBe(-EINVAL);
    const va = buffer(p, 4 * 4096);
    const bm = buffer(p, 4096);
    expect(dmaMap(o, va, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(o, va + 8192n, 2 * 4096, 0x12000n)).toBe(0);
    const get = (iova: bigint, size: bigint, pgsize = 4096n, bytes = 8n, argsz = 48) =>
      dirty(p, c, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, [iova, size, pgsize, bytes, bm], argsz);
    expect(get(0x10000n, 0x4000n)).toBe(-EINVAL); // not started
    expect(dirty(p, c, VFIO_IOMMU_DIRTY_PAGES_FLAG_START)).toBe(0);
    expect(get(0x10000n, 0x4000n, 4096n, 8n, 47)).toBe(-EINVAL); // argsz too small
    expect(get(0x10000n, 0x4000n, 0x200000n)).toBe(-EINVAL); // not the smallest IOMMU page
    expect(get(0x10000n, 0x4000n, 4096n, 0n)).toBe(-EINVAL); // bitmap size 0
    expect(get(0x10800n, 0x4000n)).toBe(-EINVAL); // iova not page aligned
    expect(get(0x10000n, 0x3000n)).toBe(-EINVAL); // the end bisects the second mapping
    expect(p.writeMemory(bm, new Uint8Array(8).fill(0))).toBe(0);
    expect(get(0x10000n, 0x4000n)).toBe(0);
    expect((p.readMemory(bm, 8) as Uint8Array)[0]).toBe(0b1101);
    // Unmap harvests the bitmap of what it removes.
    expect(p.writeMemory(bm, new Uint8Array(8).fill(0))).toBe(0);
    expect(unmap(o, 0x12000n, 0x2000n, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, [4096n, 8n, bm])).toEqual({
      ret: 0,
      size: 0x2000n,
    });
    expect((p.readMemory(bm, 8) as Uint8Array)[0]).toBe(0b11);
    expect(dirty(p, c, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)).toBe(0);
    // Tracking stopped: GET_DIRTY_BITMAP on unmap is EINVAL and unmaps nothing.
    expect(unmap(o, 0x10000n, 0x1000n, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, [4096n, 8n, bm]).ret).toBe(
      -EINVAL,
    );
    expect(m.debug.counters().vfioType1PinnedPages).toBe(1);
  });

  it("UNMAP GET_DIRTY_BITMAP: with ALL or VADDR EINVAL; argsz below 48 EINVAL", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const bm = buffer(p, 4096);
    const f = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    expect(unmap(o, 0n, 0n, f | VFIO_DMA_UNMAP_FLAG_ALL, [4096n, 8n, bm]).ret).toBe(-EINVAL);
    expect(unmap(o, 0x1000n, 0x1000n, f | VFIO_DMA_UNMAP_FLAG_VADDR, [4096n, 8n, bm]).ret).toBe(-EINVAL);
    expect(unmap(o, 0x1000n, 0x1000n, f).ret).toBe(-EINVAL);
  });
});
