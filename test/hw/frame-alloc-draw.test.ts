import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { prngBelow } from "../../src/hw/frame-alloc.js";
import { Prng } from "../../src/hw/prng.js";

describe("prngBelow (the allocator's draw on int32 arithmetic)", () => {
  it("gives Prng.below's value and consumes the same draws, for every n", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.array(fc.oneof(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 0, max: 2 ** 32 })), {
          minLength: 1,
          maxLength: 50,
        }),
        (seed, ns) => {
          const a = new Prng(seed);
          const b = new Prng(seed);
          for (const n of ns) expect(prngBelow(a, n)).toBe(b.below(n));
          expect(a.next()).toBe(b.next());
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("is exact at the edges of the int32 reduction", () => {
    for (const n of [2, 3, 512, 0x3fffffff, 0x40000000, 0x40000001, 0x7fffffff]) {
      const a = new Prng(n);
      const b = new Prng(n);
      for (let i = 0; i < 200; i++) expect(prngBelow(a, n)).toBe(b.below(n));
    }
  });
});
