import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FaultInject } from "../../src/hw/fault-inject.js";
import { FrameAllocator } from "../../src/hw/frame-alloc.js";
import { PhysMem } from "../../src/hw/phys-mem.js";

const GIB = 1n << 30n;
function machineMem(bytes: bigint) {
  const frames = Number(bytes >> 12n);
  const mem = new PhysMem(bytes, [[0, frames]]);
  return { mem, alloc: new FrameAllocator(mem, 7, new FaultInject()) };
}

describe("PhysMem", () => {
  it("a 64 GiB machine costs nothing until written", () => {
    const { mem, alloc } = machineMem(64n * GIB);
    expect(mem.residentFrames).toBe(0);
    expect(alloc.counters().freeFrames).toBe(64 * 262144 - 512);
    expect(mem.read(0x123456789, 16)).toEqual(new Uint8Array(16));
    expect(mem.residentFrames).toBe(0);
  });

  it("writes across frame boundaries read back, and zeros keep frames untouched", () => {
    const { mem } = machineMem(GIB);
    const bytes = Uint8Array.from({ length: 10000 }, (_, i) => (i * 7 + 1) & 0xff);
    mem.write(0x1ffe, bytes);
    expect(mem.read(0x1ffe, 10000)).toEqual(bytes);
    expect(mem.residentFrames).toBe(4);
    mem.write(0x100000, new Uint8Array(4096));
    expect(mem.residentFrames).toBe(4);
  });
});

describe("FrameAllocator", () => {
  it("never hands out the first 2 MiB (PA 0 means 'unmapped')", () => {
    const { alloc } = machineMem(GIB);
    for (let i = 0; i < 2000; i++) expect(alloc.alloc4k()).toBeGreaterThanOrEqual(512);
  });

  it("is deterministic for a seed", () => {
    const a = machineMem(GIB).alloc;
    const b = machineMem(GIB).alloc;
    const sa = Array.from({ length: 100 }, () => a.alloc4k());
    const sb = Array.from({ length: 100 }, () => b.alloc4k());
    expect(sa).toEqual(sb);
  });

  it("2 MiB and 1 GiB allocations are aligned and freeing restores the counters", () => {
    const { alloc } = machineMem(4n * GIB);
    const before = alloc.counters();
    const h = alloc.alloc2m();
    expect(h % 512).toBe(0);
    const g = alloc.alloc1g();
    expect(g % 262144).toBe(0);
    expect(alloc.counters().usedFrames).toBe(512 + 262144);
    alloc.free2m(h);
    alloc.free1g(g);
    expect(alloc.counters()).toEqual(before);
  });

  it("runs out cleanly and fails at an injected point", () => {
    const mem = new PhysMem(64n << 20n, [[0, 16384]]);
    const faults = new FaultInject();
    const alloc = new FrameAllocator(mem, 1, faults);
    expect(alloc.alloc1g()).toBe(-1);
    faults.arm(2);
    expect(alloc.alloc4k()).toBeGreaterThan(0);
    expect(alloc.alloc4k("pt_table_alloc")).toBe(-1);
    expect(faults.fired).toBe("pt_table_alloc");
    faults.disarm();
    let n = 0;
    while (alloc.alloc4k() >= 0) n++;
    expect(n).toBe(16384 - 512 - 1);
  });

  it("property: random alloc/free keeps frames unique and counters exact", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.nat()), { maxLength: 200 }), (ops) => {
        const { alloc } = machineMem(256n << 20n);
        const base = alloc.counters();
        const small: number[] = [];
        const huge: number[] = [];
        for (const [op, k] of ops) {
          if (op === 0) {
            const p = alloc.alloc4k();
            if (p >= 0) {
              expect(small.includes(p)).toBe(false);
              small.push(p);
            }
          } else if (op === 1) {
            const p = alloc.alloc2m();
            if (p >= 0) huge.push(p);
          } else if (small.length > 0) {
            alloc.free4k(small.splice(k % small.length, 1)[0]);
          }
        }
        expect(alloc.counters().usedFrames).toBe(small.length + huge.length * 512);
        for (const p of small) alloc.free4k(p);
        for (const p of huge) alloc.free2m(p);
        expect(alloc.counters()).toEqual(base);
      }),
      { numRuns: 50 },
    );
  });
});
