import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { IommuDomain } from "../../src/iommu/index.js";
import type { PfnRuns } from "../../src/mm/pfn-runs.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EADDRINUSE, ENOMEM, KernelError } from "../../src/uapi/errno.js";
import { boot, errnoOf, MiB } from "./helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;

function paging(kind: "amd" | "intel") {
  const { ctx, sub } = boot(kind);
  const dev = sub.device("0000:00:04.0")!;
  return { ctx, d: dev.driver.allocPaging(dev, 0) };
}

function runsOf(list: readonly (readonly [number, number])[]): PfnRuns {
  return {
    pfn: Float64Array.from(list.map((r) => r[0])),
    len: Float64Array.from(list.map((r) => r[1])),
    count: list.length,
    pages: list.reduce((s, r) => s + r[1], 0),
  };
}

/** What mapRuns must equal: one map() per run, and the caller unmapping the runs before a failure. */
function mapEach(d: IommuDomain, iova: bigint, list: readonly (readonly [number, number])[], prot: number) {
  let cur = iova;
  try {
    for (const [pfn, n] of list) {
      d.map(cur, BigInt(pfn) << 12n, BigInt(n) << 12n, prot);
      cur += BigInt(n) << 12n;
    }
  } catch (e) {
    if (cur > iova) d.unmap(iova, cur - iova);
    throw e;
  }
}

function outcome(fn: () => void): { errno: number; reason: string } {
  try {
    fn();
    return { errno: 0, reason: "" };
  } catch (e) {
    if (e instanceof KernelError) return { errno: e.errno, reason: e.reason };
    throw e;
  }
}

/** Runs of 4 KiB or 2 MiB-aligned pfns inside 1 GiB of RAM, some physically adjacent. */
const runList = fc.array(
  fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 500 }), fc.integer({ min: 1, max: 1100 })),
  { minLength: 1, maxLength: 12 },
);

function toRuns(spec: [boolean, number, number][]): [number, number][] {
  return spec.map(([huge, at, n]) => (huge ? [at * 512, 512 * (1 + (n % 3))] : [at * 512 + (n % 7), n]));
}

describe("IommuDomain.mapRuns (batched iommu_map)", () => {
  it("maps exactly what one map() per run maps (tables, bookkeeping, lookups)", () => {
    fc.assert(
      fc.property(runList, fc.constantFrom("amd" as const, "intel" as const), (spec, kind) => {
        const list = toRuns(spec);
        const a = paging(kind).d;
        const b = paging(kind).d;
        const iova = 1n << 32n;
        const len = BigInt(list.reduce((s, r) => s + r[1], 0)) << 12n;
        const ra = outcome(() => a.mapRuns(iova, runsOf(list), 0, len, RW));
        const rb = outcome(() => mapEach(b, iova, list, RW));
        expect(ra).toEqual(rb);
        expect(a.mapped.all()).toEqual(b.mapped.all());
        expect(a.ptDump()).toEqual(b.ptDump());
      }),
      { numRuns: 60 },
    );
  });

  it("stops at `length` inside the last run, like the per-run loop", () => {
    const a = paging("amd").d;
    const b = paging("amd").d;
    const list: [number, number][] = [
      [0x1000, 512],
      [0x3000, 600],
    ];
    a.mapRuns(2n * MiB, runsOf(list), 0, 3n * MiB, RW);
    mapEach(b, 2n * MiB, [list[0], [0x3000, 256]], RW);
    expect(a.mapped.all()).toEqual(b.mapped.all());
    expect(a.ptDump()).toEqual(b.ptDump());
  });

  it("a run meeting an existing mapping fails EADDRINUSE and unmaps every run it mapped", () => {
    const { d } = paging("intel");
    d.map(0x40_0000_0000n + 5n * 4096n, 0x7000_0000n, 4096n, RW);
    const list: [number, number][] = [
      [0x10000, 2],
      [0x20000, 2],
      [0x30000, 4], // its second page meets the mapping above
    ];
    expect(errnoOf(() => d.mapRuns(0x40_0000_0000n, runsOf(list), 0, 8n * 4096n, RW))).toBe(EADDRINUSE);
    for (let i = 0n; i < 8n; i++) {
      expect(d.iovaToPhys(0x40_0000_0000n + i * 4096n)).toBe(i === 5n ? 0x7000_0000n : 0n);
    }
    expect(d.mapped.all()).toEqual([{ iova: 0x4000005, len: 1, pa: 0x70000, prot: RW }]);
  });

  it("fail_nth at every allocation: the same errno and reason as per-run maps, nothing left mapped, no frame leaked", () => {
    const list: [number, number][] = [
      [0x10000, 512],
      [0x20001, 3],
      [0x30000, 1024],
      [0x2000, 1],
    ];
    const iova = 0x7f_ffe0_0000n; // crosses a 512 GiB boundary: new tables at every level
    const len = 1540n << 12n;
    let failures = 0;
    for (let n = 1; ; n++) {
      const A = paging("amd");
      const B = paging("amd");
      const framesA = A.ctx.frames.counters().frames4k - A.d.frames();
      A.ctx.faults.arm(n);
      B.ctx.faults.arm(n);
      const ra = outcome(() => A.d.mapRuns(iova, runsOf(list), 0, len, RW));
      const rb = outcome(() => mapEach(B.d, iova, list, RW));
      A.ctx.faults.disarm();
      B.ctx.faults.disarm();
      expect(ra).toEqual(rb);
      expect(A.d.mapped.all()).toEqual(B.d.mapped.all());
      if (ra.errno === 0) break;
      failures++;
      expect(ra.errno).toBe(ENOMEM);
      expect(A.d.mapped.length).toBe(0);
      expect(A.d.ptDump()).toEqual(B.d.ptDump());
      // unmapped: 0, or the -ERANGE quirk where the top never grew
      for (let p = 0n; p < len; p += 64n * 4096n)
        expect([0n, (1n << 64n) - 34n]).toContain(A.d.iovaToPhys(iova + p));
      A.d.free();
      expect(A.ctx.frames.counters().frames4k).toBe(framesA);
    }
    expect(failures).toBeGreaterThan(2);
  });
});

/** iommu_pgsize on bigints, as drivers/iommu/iommu.c computes it. */
function pgsizeRef(sizes: number[], unitLg2: number, iova: bigint, pa: bigint, size: bigint) {
  const u = BigInt(unitLg2);
  const [ib, pb, sb] = [iova << u, pa << u, size << u];
  let bitmap = 0n;
  for (const s of sizes) bitmap |= 1n << BigInt(s);
  let cand = bitmap & ((1n << BigInt(sb.toString(2).length)) - 1n);
  const addrMerge = ib | pb;
  if (addrMerge !== 0n) cand &= (addrMerge & -addrMerge) * 2n - 1n;
  const pick = cand.toString(2).length - 1;
  let count = sb >> BigInt(pick);
  const larger = bitmap & ~((1n << BigInt(pick + 1)) - 1n);
  if (larger !== 0n) {
    const nx = BigInt((larger & -larger).toString(2).length - 1);
    const nsz = 1n << nx;
    if (((ib ^ pb) & (nsz - 1n)) === 0n) {
      const offset = nsz - (addrMerge & (nsz - 1n));
      if (offset + nsz <= sb) count = offset >> BigInt(pick);
    }
  }
  return { pgLg2: pick, count: Number(count) };
}

describe("iommu_pgsize on numbers", () => {
  it("agrees with a bigint reference, small and large addresses", async () => {
    const { iommuPgsize } = await import("../../src/iommu/index.js");
    const amd = Array.from({ length: 40 }, (_, i) => 12 + i).filter((s) => s !== 39);
    const addr = fc.oneof(
      fc.integer({ min: 0, max: 0x7fffffff }),
      fc.integer({ min: 0, max: 2 ** 40 }).map((x) => x * 512),
      fc.integer({ min: 0, max: 2 ** 52 - 1 }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(amd, [12, 21, 30]),
        addr,
        addr,
        fc.integer({ min: 1, max: 2 ** 30 }),
        (sizes, iova, pa, size) => {
          expect(iommuPgsize(sizes, 12, iova, pa, size)).toEqual(
            pgsizeRef(sizes, 12, BigInt(iova), BigInt(pa), BigInt(size)),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });
});
