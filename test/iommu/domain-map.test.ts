import { describe, expect, it } from "vitest";
import type { IommuDomain } from "../../src/iommu/index.js";
import { iommuPgsize } from "../../src/iommu/index.js";
import type { PtTable } from "../../src/iommu/pt-table.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EADDRINUSE, EINVAL, ENOMEM, ERANGE } from "../../src/uapi/errno.js";
import { boot, errnoOf, GiB, KiB, MiB } from "./helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;

function paging(kind: "amd" | "intel") {
  const { ctx, sub } = boot(kind);
  const dev = sub.device("0000:00:04.0")!;
  const d = dev.driver.allocPaging(dev, 0);
  return { ctx, sub, dev, d };
}

/** Leaf sizes (bytes) the table holds for each 4 KiB-aligned IOVA start, walking leaf by leaf. */
function leafSizes(d: IommuDomain, iova: bigint, len: bigint): bigint[] {
  const t = (d.pt as PtTable).table;
  const out: bigint[] = [];
  let cur = iova;
  while (cur < iova + len) {
    const e = t.leafEntry(Number(cur >> 12n));
    if (e === null) throw new Error(`no leaf at 0x${cur.toString(16)}`);
    const lo = Number(e.raw & 0xffffffffn);
    const hi = Number(e.raw >> 32n);
    const size = 1n << BigInt(12 + t.fmt.leafShift(lo, hi, e.level));
    out.push(size);
    cur += size;
  }
  return out;
}

describe("iommu_pgsize", () => {
  it("picks the largest size allowed by size and alignment, stopping runs at the next size's boundary", () => {
    const sizes = [12, 21, 30];
    // 4 KiB below a 2 MiB boundary with iova and pa equally offset: one 4K page, then 2M can follow.
    expect(iommuPgsize(sizes, 12, 0x1ff, 0x401ff, 0x201)).toEqual({ pgLg2: 12, count: 1 });
    // differently offset: the whole run in 4K pages
    expect(iommuPgsize(sizes, 12, 0x1ff, 0x40100, 0x201)).toEqual({ pgLg2: 12, count: 0x201 });
    // aligned and long enough: 2M pages up to the next 1G boundary
    expect(iommuPgsize(sizes, 12, 0x200, 0x40200, 0x80000)).toEqual({ pgLg2: 21, count: 511 });
    // zero addresses impose no alignment limit
    expect(iommuPgsize(sizes, 12, 0, 0, 0x40000)).toEqual({ pgLg2: 30, count: 1 });
  });
});

describe("IommuDomain.map (core splitting)", () => {
  it("splits into the largest pages alignment allows (VT-d: 4K, 2M, 1G)", () => {
    const { d } = paging("intel");
    const iova = 2n * MiB - 4n * KiB;
    const pa = GiB / 2n - 4n * KiB; // same offset inside 2 MiB
    d.map(iova, pa, 4n * KiB + 2n * MiB + 4n * KiB, RW);
    expect(leafSizes(d, iova, 4n * KiB + 2n * MiB + 4n * KiB)).toEqual([4n * KiB, 2n * MiB, 4n * KiB]);
    expect(d.iovaToPhys(iova + 4n * KiB + 123n)).toBe(pa + 4n * KiB + 123n);
  });

  it("uses 4K pages when iova and paddr are offset differently inside 2M", () => {
    const { d } = paging("intel");
    d.map(2n * MiB, GiB / 2n + 4n * KiB, 2n * MiB, RW);
    const s = leafSizes(d, 2n * MiB, 2n * MiB);
    expect(s.length).toBe(512);
    expect(s.every((x) => x === 4n * KiB)).toBe(true);
  });

  it("AMDv1 maps any power-of-two size with contiguous entries (64K here)", () => {
    const { d } = paging("amd");
    d.map(0x10_0000n, 0x2000_0000n + 0x1_0000n, 64n * KiB, IOMMU_READ);
    expect(leafSizes(d, 0x10_0000n, 64n * KiB)).toEqual([64n * KiB]);
    expect(d.mapped.all()).toEqual([{ iova: 0x100, len: 16, pa: 0x20010, prot: IOMMU_READ }]);
  });

  it("rejects misaligned arguments with EINVAL and maps nothing", () => {
    const { d } = paging("intel");
    const before = d.frames();
    expect(errnoOf(() => d.map(0x1000n, 0x2000_0800n, 0x1000n, RW))).toBe(EINVAL);
    expect(errnoOf(() => d.map(0x1000n, 0x2000_0000n, 0x1800n, RW))).toBe(EINVAL);
    expect(errnoOf(() => d.map(0x1000n, 0x2000_0000n, 0x1000n, 0))).toBe(EINVAL);
    expect(d.frames()).toBe(before);
    expect(d.mapped.length).toBe(0);
  });

  it("mapping over an existing mapping fails EADDRINUSE and undoes only its own part", () => {
    const { d } = paging("intel");
    d.map(0x3000n, 0x4000_3000n, 0x1000n, RW);
    expect(errnoOf(() => d.map(0x1000n, 0x5000_1000n, 0x4000n, RW))).toBe(EADDRINUSE);
    expect(d.iovaToPhys(0x1000n)).toBe(0n);
    expect(d.iovaToPhys(0x2000n)).toBe(0n);
    expect(d.iovaToPhys(0x3000n)).toBe(0x4000_3000n);
    expect(d.mapped.all()).toEqual([{ iova: 3, len: 1, pa: 0x40003, prot: RW }]);
  });

  it("fail_nth at a page-table allocation leaves no mapping and no extra frame", () => {
    let sawEnomem = 0;
    for (let n = 1; n < 20; n++) {
      const { ctx, d } = paging("intel");
      const frames = ctx.frames.counters().frames4k;
      const tableFrames = d.frames();
      ctx.faults.arm(n);
      // 1 GiB + 8 KiB apart: needs new tables at several levels.
      const err = errnoOf(() => {
        d.map(0x40_0000_0000n, 0x1000_0000n, 8n * KiB, RW);
        d.map(0x80_0000_0000n, 0x1000_2000n, 4n * KiB, RW);
      });
      ctx.faults.disarm();
      if (err === 0) {
        expect(n).toBeGreaterThan(1);
        break;
      }
      expect(err).toBe(ENOMEM);
      sawEnomem++;
      // The second map may have failed after the first succeeded; undo the first for the comparison.
      d.unmap(0x40_0000_0000n, 8n * KiB);
      expect(d.iovaToPhys(0x80_0000_0000n)).toBe(0n);
      expect(d.mapped.length).toBe(0);
      d.free();
      expect(ctx.frames.counters().frames4k).toBe(frames - tableFrames);
    }
    expect(sawEnomem).toBeGreaterThan(1);
  });

  it("a failure part way through a split map unmaps the pieces already mapped", () => {
    const { ctx, d } = paging("intel");
    // 4K | 2M | 4K: the third chunk needs a new level-0 table; fail exactly that allocation.
    const iova = 4n * MiB - 4n * KiB;
    const probe = paging("intel");
    probe.ctx.faults.arm(1000);
    probe.d.map(iova, GiB / 2n - 4n * KiB, 4n * KiB + 2n * MiB + 4n * KiB, RW);
    const allocs = probe.ctx.faults.hits.length;
    probe.ctx.faults.disarm();
    const before = ctx.frames.counters().frames4k;
    ctx.faults.arm(allocs);
    expect(errnoOf(() => d.map(iova, GiB / 2n - 4n * KiB, 4n * KiB + 2n * MiB + 4n * KiB, RW))).toBe(ENOMEM);
    ctx.faults.disarm();
    expect(d.iovaToPhys(iova)).toBe(0n);
    expect(d.iovaToPhys(iova + 4n * KiB)).toBe(0n);
    expect(d.mapped.length).toBe(0);
    // Empty tables may stay (as in the kernel); the invariant still holds and free returns them all.
    d.free();
    expect(ctx.frames.counters().frames4k).toBe(before - 1);
  });
});

describe("IommuDomain.unmap", () => {
  it("returns the bytes unmapped, whole large leaves included, stopping at holes", () => {
    const { d } = paging("intel");
    d.map(2n * MiB, GiB / 2n, 2n * MiB, RW);
    expect(d.unmap(2n * MiB, 4n * KiB)).toBe(2n * MiB); // whole leaf goes
    expect(d.iovaToPhys(2n * MiB + 8n * KiB)).toBe(0n);
    expect(d.mapped.length).toBe(0);
    d.map(0x1000n, 0x7000_1000n, 0x2000n, RW);
    d.map(0x4000n, 0x7000_4000n, 0x1000n, RW);
    expect(d.unmap(0x1000n, 0x4000n)).toBe(0x2000n); // hole at 0x3000 stops it
    expect(d.iovaToPhys(0x4000n)).toBe(0x7000_4000n);
    expect(d.unmap(0x800n, 0x1000n)).toBe(0n); // misaligned: nothing
    expect(d.mapped.all()).toEqual([{ iova: 4, len: 1, pa: 0x70004, prot: RW }]);
  });

  it("starting inside a large leaf unmaps nothing", () => {
    const { d } = paging("intel");
    d.map(2n * MiB, GiB / 2n, 2n * MiB, RW);
    expect(d.unmap(2n * MiB + 4n * KiB, 4n * KiB)).toBe(0n);
    expect(d.iovaToPhys(2n * MiB)).toBe(GiB / 2n);
  });

  it("free() returns every table frame", () => {
    const { ctx, sub, d } = paging("amd");
    const base = ctx.frames.counters().frames4k - d.frames();
    const ptBefore = sub.ptFrames();
    d.map(0x12_3456_7000n, 0x3000_0000n, 64n * KiB, RW);
    d.map(0x7f_0000_0000_0000n, 0x3100_0000n, 4n * KiB, RW); // grows the AMD top
    expect(sub.ptFrames()).toBeGreaterThan(ptBefore);
    d.free();
    expect(ctx.frames.counters().frames4k).toBe(base);
    expect(sub.ptFrames()).toBe(ptBefore - 1);
  });
});

describe("geometry", () => {
  it("reports apertures as a list and pgsize_bitmap per driver", () => {
    const amd = paging("amd").d;
    expect(amd.apertures).toEqual([{ start: 0n, last: (1n << 64n) - 1n }]);
    expect(amd.pgsizeBitmap & 0xfffn).toBe(0n);
    expect(amd.pgsizeBitmap & (1n << 12n)).toBe(1n << 12n);
    expect(amd.pgsizeBitmap & (1n << 16n)).toBe(1n << 16n);
    const intel = paging("intel").d;
    expect(intel.apertures).toEqual([{ start: 0n, last: (1n << 48n) - 1n }]);
    expect(intel.pgsizeBitmap).toBe((1n << 12n) | (1n << 21n) | (1n << 30n));
    expect(intel.inAperture((1n << 48n) - 4096n, 4096n)).toBe(true);
    expect(intel.inAperture((1n << 48n) - 4096n, 8192n)).toBe(false);
  });

  it("mapping beyond what the table translates fails ERANGE", () => {
    const { d } = paging("intel");
    expect(errnoOf(() => d.map(1n << 48n, 0x1000_0000n, 4096n, RW))).toBe(ERANGE);
    expect(d.mapped.length).toBe(0);
  });

  it("ptInfo gives format, root and top level", () => {
    const a = paging("amd").d.ptInfo();
    expect(a.format).toBe("amdv1");
    expect(a.topLevel).toBe(2);
    expect(a.rootPhys % 4096n).toBe(0n);
    const v = paging("intel").d.ptInfo();
    expect(v.format).toBe("vtdss");
    expect(v.topLevel).toBe(3);
  });
});
