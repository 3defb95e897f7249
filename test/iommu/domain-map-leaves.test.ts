import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { IommuDomain } from "../../src/iommu/index.js";
import { MappedRanges } from "../../src/iommu/mapped-ranges.js";
import type { PfnRuns } from "../../src/mm/pfn-runs.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EADDRINUSE, ENOMEM, KernelError } from "../../src/uapi/errno.js";
import { boot, errnoOf } from "./helpers.js";

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

/** One map() per run, stopping at `len` units, the caller unmapping on failure. */
function mapEach(
  d: IommuDomain,
  iova: bigint,
  list: readonly (readonly [number, number])[],
  len: bigint,
  prot: number,
) {
  let cur = iova;
  let left = len;
  try {
    for (const [pfn, n] of list) {
      if (left === 0n) break;
      let l = BigInt(n) << 12n;
      if (l > left) l = left;
      d.map(cur, BigInt(pfn) << 12n, l, prot);
      cur += l;
      left -= l;
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

/**
 * Runs that are mostly single leaves (one 4 KiB page or one aligned 2 MiB
 * folio, as a pinned hugetlb or scattered 4 KiB area gives), now and then
 * a misaligned or longer one, sometimes physically adjacent.
 */
const leafRun = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 400 }).map((x) => [x * 512, 512] as const) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 200000 }).map((x) => [x, 1] as const) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 400 }).map((x) => [x * 512 + 3, 512] as const) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 400 }).map((x) => [x * 512, 1024] as const) },
);

describe("IommuDomain.mapRuns over stretches of single-leaf runs (table batch path)", () => {
  it("maps exactly what one map() per run maps, for any length cut", () => {
    fc.assert(
      fc.property(
        fc.array(leafRun, { minLength: 1, maxLength: 40 }),
        fc.constantFrom("amd" as const, "intel" as const),
        fc.constantFrom(1n << 32n, (1n << 39n) - (4n << 21n), 0x7f_ffe0_0000n, 1n << 44n),
        fc.nat(),
        fc.boolean(),
        (list, kind, iova, cut, full) => {
          const pages = list.reduce((s, r) => s + r[1], 0);
          const len = BigInt(full ? pages : 1 + (cut % pages)) << 12n;
          const a = paging(kind).d;
          const b = paging(kind).d;
          const ra = outcome(() => a.mapRuns(iova, runsOf(list), 0, len, RW));
          const rb = outcome(() => mapEach(b, iova, list, len, RW));
          expect(ra).toEqual(rb);
          expect(a.mapped.all()).toEqual(b.mapped.all());
          expect(a.ptDump()).toEqual(b.ptDump());
        },
      ),
      { numRuns: 80 },
    );
  });

  it("a leaf meeting an existing mapping mid-stretch: EADDRINUSE, everything this call mapped is unmapped", () => {
    const { d } = paging("amd");
    const base = 1n << 40n;
    d.map(base + 5n * (2n << 20n), 0x4000_0000n, 2n << 20n, RW);
    const list = Array.from({ length: 9 }, (_, i) => [(7 + 2 * i) * 512, 512] as const);
    const err = outcome(() => d.mapRuns(base, runsOf(list), 0, 9n * (2n << 20n), RW));
    expect(err.errno).toBe(EADDRINUSE);
    expect(err.reason).toBe(
      `map_pages failed at iova 0x${(base + 5n * (2n << 20n)).toString(16)} (EADDRINUSE)`,
    );
    for (let i = 0n; i < 9n; i++) {
      expect(d.iovaToPhys(base + i * (2n << 20n))).toBe(i === 5n ? 0x4000_0000n : 0n);
    }
    expect(d.mapped.all()).toEqual([{ iova: 0x10000000 + 5 * 512, len: 512, pa: 0x40000, prot: RW }]);
  });

  it("fail_nth at every allocation over a stretch crossing tables: same errno, reason, nothing mapped, no frame leaked", () => {
    // 2 MiB leaves from just below a 1 GiB boundary (a new level-1 table) and 4 KiB leaves across a 2 MiB one
    const huge = Array.from({ length: 6 }, (_, i) => [(3 + 5 * i) * 512, 512] as const);
    const small = Array.from({ length: 600 }, (_, i) => [90001 + 7 * i, 1] as const);
    const cases = [
      { iova: (1n << 30n) - (3n << 21n), list: huge },
      { iova: 0x7f_ffe0_0000n - (300n << 12n), list: small },
    ];
    for (const { iova, list } of cases) {
      const len = BigInt(list.reduce((s, r) => s + r[1], 0)) << 12n;
      let failures = 0;
      for (let n = 1; ; n++) {
        const A = paging("amd");
        const B = paging("amd");
        const framesA = A.ctx.frames.counters().frames4k - A.d.frames();
        A.ctx.faults.arm(n);
        B.ctx.faults.arm(n);
        const ra = outcome(() => A.d.mapRuns(iova, runsOf(list), 0, len, RW));
        const rb = outcome(() => mapEach(B.d, iova, list, len, RW));
        A.ctx.faults.disarm();
        B.ctx.faults.disarm();
        expect(ra).toEqual(rb);
        expect(A.d.mapped.all()).toEqual(B.d.mapped.all());
        expect(A.d.ptDump()).toEqual(B.d.ptDump());
        if (ra.errno === 0) break;
        failures++;
        expect(ra.errno).toBe(ENOMEM);
        expect(A.d.mapped.length).toBe(0);
        A.d.free();
        expect(A.ctx.frames.counters().frames4k).toBe(framesA);
      }
      expect(failures).toBeGreaterThan(0);
    }
  });

  it("a misaligned IOVA takes the per-run path (map() refuses the unaligned run the same way)", () => {
    const a = paging("intel").d;
    const b = paging("intel").d;
    const list = [
      [512, 512],
      [2048, 512],
    ] as const;
    const iova = (1n << 32n) + 4096n;
    const ra = outcome(() => a.mapRuns(iova, runsOf(list), 0, 1024n << 12n, RW));
    const rb = outcome(() => mapEach(b, iova, list, 1024n << 12n, RW));
    expect(ra).toEqual(rb);
    expect(a.ptDump()).toEqual(b.ptDump());
    expect(errnoOf(() => a.unmap(iova, 1024n << 12n))).toBe(0);
  });
});

describe("MappedRanges", () => {
  /** Reference: unit -> [pa, prot], merged into maximal linear runs. */
  function merged(units: Map<number, [number, number]>) {
    const out: { iova: number; len: number; pa: number; prot: number }[] = [];
    for (const u of [...units.keys()].sort((x, y) => x - y)) {
      const [pa, prot] = units.get(u)!;
      const l = out[out.length - 1];
      if (l !== undefined && l.iova + l.len === u && l.pa + l.len === pa && l.prot === prot) l.len++;
      else out.push({ iova: u, len: 1, pa, prot });
    }
    return out;
  }

  it("holds the maximal merged runs of what was added and not removed", () => {
    const op = fc.record({
      add: fc.boolean(),
      iova: fc.integer({ min: 0, max: 200 }),
      len: fc.integer({ min: 1, max: 20 }),
      pa: fc.integer({ min: 0, max: 300 }),
      prot: fc.constantFrom(1, 2, 3),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const m = new MappedRanges();
        const ref = new Map<number, [number, number]>();
        for (const o of ops) {
          if (o.add) {
            let free = true;
            for (let i = 0; i < o.len; i++) if (ref.has(o.iova + i)) free = false;
            if (!free) continue; // the caller guarantees an empty range
            m.add(o.iova, o.len, o.pa, o.prot);
            for (let i = 0; i < o.len; i++) ref.set(o.iova + i, [o.pa + i, o.prot]);
          } else {
            m.remove(o.iova, o.len);
            for (let i = 0; i < o.len; i++) ref.delete(o.iova + i);
          }
          const want = merged(ref);
          expect(m.all()).toEqual(want);
          expect(m.length).toBe(want.length);
          expect(m.totalUnits()).toBe(ref.size);
        }
        for (let u = 0; u < 230; u++) {
          const r = m.find(u);
          expect(r === undefined ? undefined : r.pa + (u - r.iova)).toBe(ref.get(u)?.[0]);
          expect(m.overlaps(u, 3)).toBe(ref.has(u) || ref.has(u + 1) || ref.has(u + 2));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("MappedRanges.addLeaves", () => {
  it("equals one add() per leaf, at the end or not", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 1, max: 3 })), { maxLength: 8 }),
        fc.integer({ min: 0, max: 80 }),
        fc.constantFrom(1, 2, 4),
        fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 12 }),
        fc.constantFrom(1, 3),
        (pre, at, n, frames, prot) => {
          const a = new MappedRanges();
          const b = new MappedRanges();
          const used = new Set<number>();
          for (const [i, l] of pre) {
            let free = true;
            for (let u = i; u < i + l; u++) if (used.has(u)) free = false;
            if (!free) continue;
            for (let u = i; u < i + l; u++) used.add(u);
            a.add(i, l, 100 + i, 3);
            b.add(i, l, 100 + i, 3);
          }
          for (let u = at; u < at + n * frames.length; u++) if (used.has(u)) return; // the caller guarantees room
          const pfns = Float64Array.from(frames, (x) => 100 + at + x * n);
          a.addLeaves(at, n, pfns, 0, pfns.length, prot);
          for (let j = 0; j < pfns.length; j++) b.add(at + j * n, n, pfns[j], prot);
          expect(a.all()).toEqual(b.all());
        },
      ),
      { numRuns: 500 },
    );
  });
});
