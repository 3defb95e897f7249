import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createPageTable, type PageTable } from "../../src/pt/engine.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { CASES, makeEnv, sizesOf } from "./helpers.js";

/**
 * PageTable.mapLeaves(iova, pfns, from, count, pgsize, prot) must be one
 * mapPages(iova + i * span, pfns[from + i], pgsize, 1, prot) per leaf until
 * one fails: the same leaves, the same stop, errno and reason, the same
 * table frames, for every format (cached-table fast path or not).
 */
function singles(
  pt: PageTable,
  iova: number,
  pfns: Float64Array,
  from: number,
  count: number,
  pgsize: number,
  prot: number,
) {
  const span = pgsize / 2 ** pt.unitLg2;
  for (let i = 0; i < count; i++) {
    const r = pt.mapPages(iova + i * span, pfns[from + i], pgsize, 1, prot);
    if (r < 0) return { done: i, err: r, why: pt.lastError };
  }
  return { done: count, err: 0, why: "" };
}

function batch(
  pt: PageTable,
  iova: number,
  pfns: Float64Array,
  from: number,
  count: number,
  pgsize: number,
  prot: number,
) {
  const done = pt.mapLeaves(iova, pfns, from, count, pgsize, prot);
  return done < count ? { done, err: pt.lastMapErr, why: pt.lastError } : { done, err: 0, why: "" };
}

describe.each(CASES)("mapLeaves: $label", (c) => {
  it("equals one mapPages per leaf (leaves, stop, errno, reason, frames)", () => {
    const probe = createPageTable(makeEnv(), c.format, c.cfg);
    const sizes = sizesOf(probe).filter((s) => s <= 21);
    probe.destroy();
    const call = fc.record({
      size: fc.integer({ min: 0, max: sizes.length - 1 }),
      start: fc.integer({ min: 0, max: 3000 }),
      count: fc.integer({ min: 1, max: 40 }),
      from: fc.integer({ min: 0, max: 3 }),
      // mostly aligned frames; now and then a misaligned one or one past the output size
      pfns: fc.array(
        fc.oneof(
          { weight: 8, arbitrary: fc.integer({ min: 1, max: 2000 }).map((x) => ({ k: "al" as const, x })) },
          {
            weight: 1,
            arbitrary: fc.integer({ min: 1, max: 2 ** 20 }).map((x) => ({ k: "raw" as const, x })),
          },
          { weight: 1, arbitrary: fc.constant({ k: "big" as const, x: 0 }) },
        ),
        { minLength: 44, maxLength: 44 },
      ),
      prot: fc.constantFrom(IOMMU_READ | IOMMU_WRITE, IOMMU_READ, IOMMU_WRITE, 0),
    });
    fc.assert(
      fc.property(fc.array(call, { minLength: 1, maxLength: 6 }), (calls) => {
        const ea = makeEnv(5);
        const eb = makeEnv(5);
        const a = createPageTable(ea, c.format, c.cfg);
        const b = createPageTable(eb, c.format, c.cfg);
        for (const k of calls) {
          const lg2 = sizes[k.size];
          const span = 2 ** (lg2 - a.unitLg2);
          const pfns = Float64Array.from(k.pfns, (p) =>
            p.k === "al" ? p.x * span : p.k === "raw" ? p.x : 2 ** (a.maxOaLg2 - a.unitLg2),
          );
          const iova = c.vaPfn + k.start * span;
          const ra = batch(a, iova, pfns, k.from, k.count, 2 ** lg2, k.prot);
          const rb = singles(b, iova, pfns, k.from, k.count, 2 ** lg2, k.prot);
          expect(ra).toEqual(rb);
        }
        expect(a.dump()).toEqual(b.dump());
        expect(a.tableFrames).toBe(b.tableFrames);
        expect(ea.alloc.counters()).toEqual(eb.alloc.counters());
      }),
      { numRuns: 60 },
    );
  });

  it("stops at an injected table-allocation failure like the single maps, and the leaves before stay", () => {
    const probe = createPageTable(makeEnv(), c.format, c.cfg);
    const lg2 = sizesOf(probe)[0];
    const span = 2 ** (lg2 - probe.unitLg2);
    probe.destroy();
    // 1100 leaves from just below a 512-leaf table boundary: a new leaf table part way
    const count = 1100;
    const iova = c.vaPfn + 300 * span;
    const pfns = Float64Array.from({ length: count }, (_, i) => (5000 + 3 * i) * span);
    let failed = 0;
    for (let n = 1; n <= 4; n++) {
      const ea = makeEnv(9);
      const eb = makeEnv(9);
      const a = createPageTable(ea, c.format, c.cfg);
      const b = createPageTable(eb, c.format, c.cfg);
      ea.faults.arm(n);
      eb.faults.arm(n);
      const ra = batch(a, iova, pfns, 0, count, 2 ** lg2, IOMMU_READ | IOMMU_WRITE);
      const rb = singles(b, iova, pfns, 0, count, 2 ** lg2, IOMMU_READ | IOMMU_WRITE);
      expect(ra).toEqual(rb);
      if (ra.err !== 0) failed++;
      expect(a.dump()).toEqual(b.dump());
      expect(ea.alloc.counters()).toEqual(eb.alloc.counters());
    }
    expect(failed).toBeGreaterThan(0);
  });
});
