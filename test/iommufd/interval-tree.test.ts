import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { holes, IntervalTree, type ItNode } from "../../src/iommufd/interval-tree.js";
import { IommufdObject, ObjectTable } from "../../src/iommufd/object.js";

describe("IntervalTree", () => {
  it("matches a brute-force reference under random insert/remove/query", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(3), fc.nat(200), fc.nat(30)), { minLength: 1, maxLength: 150 }),
        (ops) => {
          const t = new IntervalTree<number>();
          const ref: ItNode<number>[] = [];
          for (const [op, a, b] of ops) {
            if (op <= 1) ref.push(t.insert(BigInt(a), BigInt(a + b), a));
            else if (op === 2 && ref.length > 0) t.remove(ref.splice(a % ref.length, 1)[0]);
            else {
              const s = BigInt(a);
              const l = BigInt(a + b);
              const want = ref
                .filter((n) => n.start <= l && n.last >= s)
                .sort((x, y) => (x.start === y.start ? x.seq - y.seq : x.start < y.start ? -1 : 1));
              expect([...t.intersecting(s, l)]).toEqual(want);
            }
            expect(t.size).toBe(ref.length);
          }
          // holes over [0, 300] = complement of the union
          const cov = new Set<number>();
          for (const n of ref) for (let i = Number(n.start); i <= Number(n.last); i++) cov.add(i);
          const hs = [...holes([t], 0n, 300n)];
          for (let i = 0; i <= 300; i++) {
            const inHole = hs.some(([s, l]) => BigInt(i) >= s && BigInt(i) <= l);
            expect(inHole).toBe(!cov.has(i));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("ObjectTable IDs", () => {
  it("hands out the lowest free ID from 1 and reuses destroyed ones (xa_alloc)", () => {
    const t = new ObjectTable();
    class O extends IommufdObject {
      readonly type = "IOAS" as const;
      destroy() {}
    }
    const os = [1, 2, 3, 4].map(() => {
      const o = t.alloc(new O());
      t.finalize(o);
      return o;
    });
    expect(os.map((o) => o.id)).toEqual([1, 2, 3, 4]);
    t.remove(3);
    t.remove(2);
    expect(os[2].users).toBe(0);
    expect(t.alloc(new O()).id).toBe(2);
    expect(t.alloc(new O()).id).toBe(3);
    expect(t.alloc(new O()).id).toBe(5);
  });
});
