import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PrivPages } from "../../src/mm/priv-pages.js";
import { UndoLog } from "../../src/mm/undo.js";

/** Keys near each other (same and neighbouring leaves) and far apart (up to 2^35, a 4 KiB key of a 47-bit VA). */
const key = fc.oneof(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 0, max: 2 ** 35 - 1 }));
const op = fc.oneof(
  fc.record({ t: fc.constant("set" as const), k: key, h: fc.integer({ min: 0, max: 2 ** 40 }) }),
  fc.record({ t: fc.constant("del" as const), k: key }),
  fc.record({ t: fc.constant("zap" as const), lo: fc.integer({ min: 0, max: 1500 }), n: fc.nat(600) }),
);

describe("PrivPages", () => {
  it("behaves as a Map<number, number>: get, size, and insertion order through deletes, re-adds and zaps", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const ref = new Map<number, number>();
        const pp = new PrivPages();
        const keys: number[] = [];
        for (const o of ops) {
          if (o.t === "set") {
            ref.set(o.k, o.h);
            pp.set(o.k, o.h);
            keys.push(o.k);
          } else if (o.t === "del") {
            expect(pp.delete(o.k)).toBe(ref.delete(o.k));
          } else {
            // the zap loop of munmap: delete while iterating, in insertion order
            const seenRef: number[] = [];
            for (const [k, h] of ref) {
              if (k >= o.lo && k < o.lo + o.n) {
                ref.delete(k);
                seenRef.push(k, h);
              }
            }
            const seen: number[] = [];
            pp.forEach((k, h) => {
              if (k >= o.lo && k < o.lo + o.n) {
                pp.delete(k);
                seen.push(k, h);
              }
            });
            expect(seen).toEqual(seenRef);
          }
          expect(pp.size).toBe(ref.size);
        }
        expect(pp.entries()).toEqual([...ref.entries()]);
        for (const k of keys) expect(pp.get(k)).toBe(ref.get(k) ?? -1);
      }),
      { numRuns: 300 },
    );
  });

  it("visits keys added during a walk, after the others", () => {
    const pp = new PrivPages();
    pp.set(5, 50);
    pp.set(7, 70);
    const seen: number[] = [];
    pp.forEach((k, h) => {
      seen.push(k);
      if (h === 50) {
        pp.delete(5);
        pp.set(5, 51);
        pp.set(9000, 1);
      }
    });
    expect(seen).toEqual([5, 7, 5, 9000]);
    expect(pp.entries()).toEqual([
      [7, 70],
      [5, 51],
      [9000, 1],
    ]);
  });

  it("keeps the order across log compaction", () => {
    const pp = new PrivPages();
    const ref = new Map<number, number>();
    for (let i = 0; i < 5000; i++) {
      const k = (i * 7919) % 3001;
      if (i % 3 === 0) {
        pp.delete(k);
        ref.delete(k);
      } else {
        pp.set(k, i);
        ref.set(k, i);
      }
    }
    expect(pp.entries()).toEqual([...ref.entries()]);
  });
});

describe("UndoLog with PrivPages", () => {
  it("undoes folio records and closures newest first, many records", () => {
    const pp = new PrivPages();
    const log = new UndoLog();
    const put: number[] = [];
    const putFn = (h: number) => put.push(h);
    const order: string[] = [];
    for (let i = 0; i < 100; i++) {
      pp.set(i, 1000 + i);
      log.addFolio(pp, i, 1000 + i, putFn);
      if (i % 40 === 0) log.add(() => order.push(`c${i} after ${put.length}`));
    }
    expect(log.size).toBe(103);
    log.rollback();
    expect(pp.size).toBe(0);
    expect(put).toEqual(Array.from({ length: 100 }, (_, i) => 1099 - i));
    expect(order).toEqual(["c80 after 19", "c40 after 59", "c0 after 99"]);
    expect(log.size).toBe(0);
  });
});

describe("UndoLog range records", () => {
  it("undo a range newest key first, in place among single records and closures", () => {
    const pp = new PrivPages();
    const log = new UndoLog(2);
    const seen: string[] = [];
    const put = (h: number) => seen.push(`put ${h}`);
    pp.set(1, 10);
    log.addFolio(pp, 1, 10, put);
    for (let k = 5; k < 9; k++) pp.set(k, 100 + k);
    log.addFolioRange(pp, 5, 4, put);
    log.add(() => seen.push("closure"));
    log.addFolioRange(pp, 20, 0, put); // empty: no record
    pp.set(30, 300);
    log.addFolioRange(pp, 30, 1, put);
    expect(log.size).toBe(4);
    log.rollback();
    expect(seen).toEqual(["put 300", "closure", "put 108", "put 107", "put 106", "put 105", "put 10"]);
    expect(pp.size).toBe(0);
  });
});
