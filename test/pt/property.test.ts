import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IommuWalker } from "../../src/hw/iommu-walker.js";
import { createPageTable } from "../../src/pt/engine.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EADDRINUSE } from "../../src/uapi/errno.js";
import { CASES, makeEnv, sizesOf } from "./helpers.js";

/**
 * Random map/unmap sequences against a plain reference of leaves. The
 * reference applies the kernel's rules independently: one leaf size per map
 * (largest bitmap size that fits length and alignment), EADDRINUSE on any
 * overlap, unmap removes whole leaves from the start and stops at a hole or
 * mid-leaf. After every step the engine's iova_to_phys, the HW walker and
 * the reference agree, and forEachLeaf lists the reference's leaves; after
 * destroy no frame is left.
 */
type Op = { kind: "map" | "unmap"; start: number; count: number; size: number; prot: number; paOff: number };

const W = 4096; // pfns in the test window (table units)

describe.each(CASES)("property: $label", (c) => {
  it("engine, walker and reference agree; no frame leaks", () => {
    const probe = createPageTable(makeEnv(), c.format, c.cfg);
    // pfns count the table's unit (4 KiB; 2 KiB on amdv1_mock)
    const u = probe.unitLg2;
    const U = 2 ** u;
    const sizes = sizesOf(probe).filter((s) => s - u <= 10 && 2 ** (s - u) <= W / 2);
    probe.destroy();
    const minSpan = 2 ** (sizes[0] - u);
    const base = c.vaPfn + 2 ** 10 * 4; // 16 MiB in: aligned to every size used
    const readAlways = c.readAlways || c.format === "riscv";

    const op = fc.record({
      kind: fc.constantFrom<"map" | "unmap">("map", "map", "unmap"),
      start: fc.integer({ min: 0, max: W - 1 }),
      count: fc.integer({ min: 1, max: 6 }),
      size: fc.integer({ min: 0, max: sizes.length - 1 }),
      prot: fc.constantFrom(IOMMU_READ, IOMMU_WRITE, IOMMU_READ | IOMMU_WRITE),
      paOff: fc.integer({ min: 0, max: 3 }),
    });

    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops: Op[]) => {
        const env = makeEnv(3);
        const baseline = env.alloc.counters().usedFrames;
        const pt = createPageTable(env, c.format, c.cfg);
        const walker = new IommuWalker(env.mem);
        // reference: leaf start -> [npfn, pa, prot]
        const leaves = new Map<number, [number, number, number]>();
        const covering = (p: number): number | undefined => {
          for (const [s, [n]] of leaves) if (p >= s && p < s + n) return s;
          return undefined;
        };
        for (const o of ops) {
          const span = 2 ** (sizes[o.size] - u);
          const iova = base + Math.floor(o.start / span) * span;
          if (o.kind === "map") {
            const len = span * o.count;
            if (iova + len > base + W) continue;
            const pa = 2 ** 21 + (Math.floor(o.start / span) + o.paOff * 7) * span;
            // reference leaf size
            let leaf = 0;
            for (const s of sizes.concat(sizesOf(pt).filter((x) => !sizes.includes(x)))) {
              const sp = 2 ** (s - u);
              if (sp <= len && iova % sp === 0 && pa % sp === 0 && sp > leaf) leaf = sp;
            }
            // largest power of two <= len
            const r = pt.mapPages(iova, pa, span * U, o.count, o.prot);
            if (len % leaf !== 0) {
              expect(r).toBeLessThan(0);
              continue;
            }
            let busy = false;
            for (let p = iova; p < iova + len && !busy; p += minSpan) busy = covering(p) !== undefined;
            if (busy) {
              expect(r).toBe(-EADDRINUSE);
              continue;
            }
            expect(r, pt.lastError).toBe(len * U);
            for (let p = 0; p < len; p += leaf) leaves.set(iova + p, [leaf, pa + p, o.prot]);
          } else {
            const len = minSpan * o.count;
            const r = pt.unmapPages(iova - (iova % minSpan), minSpan * U, o.count);
            let pos = iova - (iova % minSpan);
            const end = pos + len;
            let total = 0;
            while (pos < end) {
              const s = covering(pos);
              if (s === undefined || s !== pos) break;
              const n = leaves.get(s)![0];
              leaves.delete(s);
              total += n;
              pos += n;
            }
            expect(r).toBe(total * U);
          }
        }
        // forEachLeaf reads the same leaves back from the bytes, in IOVA order, each once
        const seen: [number, number, number][] = [];
        pt.forEachLeaf((iova, pfn, n) => seen.push([iova, pfn, n]));
        const want = [...leaves].sort((a, b) => a[0] - b[0]).map(([s, [n, pa]]) => [s, pa, n]);
        expect(seen).toEqual(want);
        // every page of the window: engine lookup, walker read and write, against the
        // reference (collected and compared once: 4096 expect() calls per run were most
        // of this test's time)
        const ctx = pt.walkCtx();
        const got: number[] = [];
        const ref: number[] = [];
        for (let p = base; p < base + W; p += minSpan) {
          const s = covering(p);
          const want = s === undefined ? -1 : leaves.get(s)![1] + (p - s);
          const prot = s === undefined ? 0 : leaves.get(s)![2];
          got.push(
            pt.iovaToPhysPfn(p),
            walker.translatePfn(ctx, p, true),
            walker.translatePfn(ctx, p, false),
          );
          ref.push(
            want,
            prot & IOMMU_WRITE ? want : -1,
            s !== undefined && (prot & IOMMU_READ || readAlways) ? want : -1,
          );
        }
        expect(got).toEqual(ref);
        pt.destroy();
        expect(env.alloc.counters().usedFrames).toBe(baseline);
      }),
      { numRuns: 60, seed: 20251121 },
    );
  });
});
