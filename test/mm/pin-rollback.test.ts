import { describe, expect, it } from "vitest";
import { mman } from "../../src/mm/index.js";
import { ENOMEM } from "../../src/uapi/errno.js";
import { bytes, M2, machine, P, RW } from "./helpers.js";

const ANON = mman.MAP_PRIVATE | mman.MAP_ANONYMOUS;

/**
 * A failed pin of a private anonymous mapping gives back the folios it
 * installed newest first (the order decides the allocator's later choices,
 * so every physical address after it), skipping folios that were there
 * before, and leaves every counter as it was.
 */
describe("pin rollback of private anonymous folios", () => {
  for (const [label, flags, unit, n] of [
    ["2 MiB hugetlb", ANON | mman.MAP_HUGETLB, M2, 12],
    ["4 KiB", ANON, P, 40],
  ] as const) {
    it(`${label}: frees exactly what it allocated, in reverse order, at every fail point`, () => {
      const { newMm, faults, frames, snapshot } = machine(256n << 20n);
      const m = newMm({ cred: { caps: new Set(["CAP_IPC_LOCK"]), rlimitMemlock: 1n << 40n } });
      const va = m.mmap(0n, BigInt(n) * unit, RW, flags, null, 0n);
      // folios present before the pin: gaps in the runs of fresh ones
      for (const i of [0, 3, 4, 9]) m.write(va + BigInt(i) * unit, bytes(8, i + 1));
      const before = snapshot();
      const cnt = m.counters();
      const alloc: number[] = [];
      const freed: number[] = [];
      const a2 = frames.alloc2m.bind(frames);
      const a4 = frames.alloc4k.bind(frames);
      const f2 = frames.free2m.bind(frames);
      const f4 = frames.free4k.bind(frames);
      frames.alloc2m = (s?: string) => {
        const p = a2(s);
        if (p >= 0) alloc.push(p);
        return p;
      };
      frames.alloc4k = (s?: string) => {
        const p = a4(s);
        if (p >= 0) alloc.push(p);
        return p;
      };
      frames.free2m = (p: number) => {
        freed.push(p);
        f2(p);
      };
      frames.free4k = (p: number) => {
        freed.push(p);
        f4(p);
      };
      let fired = 0;
      for (let k = 2; ; k++) {
        alloc.length = 0;
        freed.length = 0;
        faults.arm(k);
        const r = m.pinUserPages(va, Number((BigInt(n) * unit) / P), true);
        faults.disarm();
        if (typeof r !== "number") {
          m.unpinUserPages(r);
          break;
        }
        fired++;
        expect(r).toBe(-ENOMEM);
        expect(freed).toEqual([...alloc].reverse());
        expect(snapshot()).toEqual(before);
        expect(m.counters()).toEqual(cnt);
        expect(m.read(va + 3n * unit, 8)).toEqual(bytes(8, 4));
      }
      expect(fired).toBe(n - 4); // each fresh folio can be the one that fails
    });
  }
});
