// PageIndex (src/hw/page-index.ts): the sparse page-number map pins and the
// bridge's attached pages use instead of a Map. It must answer exactly as a
// Map would, with keys in ascending order, for keys far past 2^32.
import fc from "fast-check";
import { expect, it } from "vitest";
import { PageIndex } from "../../src/hw/page-index.js";

const key = fc.oneof(
  fc.integer({ min: 0, max: 4095 }),
  fc.integer({ min: 2 ** 35 - 2048, max: 2 ** 35 + 2048 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 1 }),
);
const op = fc.oneof(
  fc.record({ k: fc.constant("set" as const), key, value: fc.integer({ min: 0, max: 2 ** 52 }) }),
  fc.record({ k: fc.constant("del" as const), key }),
);

it("behaves as a Map of page numbers: get, has, delete's old value, size, keys in order, ranges", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), fc.tuple(key, key), (ops, [x, y]) => {
      const idx = new PageIndex();
      const ref = new Map<number, number>();
      for (const o of ops) {
        if (o.k === "set") {
          idx.set(o.key, o.value);
          ref.set(o.key, o.value);
        } else {
          expect(idx.delete(o.key)).toBe(ref.get(o.key) ?? -1);
          ref.delete(o.key);
        }
        expect(idx.size).toBe(ref.size);
        expect(idx.get(o.key)).toBe(ref.get(o.key) ?? -1);
        expect(idx.has(o.key)).toBe(ref.has(o.key));
      }
      const sorted = [...ref.keys()].sort((a, b) => a - b);
      expect(idx.keys()).toEqual(sorted);
      expect(idx.values()).toEqual(sorted.map((k) => ref.get(k)));
      const [lo, hi] = x <= y ? [x, y] : [y, x];
      const seen: [number, number][] = [];
      idx.forEachIn(lo, hi, (k, v) => seen.push([k, v]));
      expect(seen).toEqual(sorted.filter((k) => k >= lo && k <= hi).map((k) => [k, ref.get(k)]));
    }),
    { numRuns: 300 },
  );
});

it("a value of 0 is present, and emptying a block drops it", () => {
  const idx = new PageIndex();
  idx.set(513, 0);
  expect(idx.get(513)).toBe(0);
  expect(idx.has(512)).toBe(false);
  expect(idx.delete(513)).toBe(0);
  expect(idx.size).toBe(0);
  expect(idx.keys()).toEqual([]);
  // a block emptied and filled again answers from fresh storage
  idx.set(513, 7);
  expect(idx.keys()).toEqual([513]);
  expect(idx.get(513)).toBe(7);
});
