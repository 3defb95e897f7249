import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { KeyBits } from "../../src/mm/hugetlb-pool.js";
import { EFAULT, EINVAL, ENOMEM, EPERM } from "../../src/uapi/errno.js";
import { syscalls } from "./helpers.js";

const M2 = 2n << 20n;
const G1 = 1n << 30n;
const RW = 3;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const MAP_HUGETLB = 0x40000;
const MAP_HUGE_1GB = 30 << 26;
const MFD_HUGETLB = 0x4;
const HUGE2 = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
const D2 = "/sys/kernel/mm/hugepages/hugepages-2048kB";
const D1 = "/sys/kernel/mm/hugepages/hugepages-1048576kB";

function pool(m: Machine, dir = D2) {
  const r = (a: string) => Number(m.readFile(`${dir}/${a}`).trim());
  return {
    nr: r("nr_hugepages"),
    free: r("free_hugepages"),
    resv: r("resv_hugepages"),
    surplus: r("surplus_hugepages"),
    over: m.readFile(`${dir}/nr_overcommit_hugepages`).trim(),
  };
}

function sysWrite(p: Process, path: string, text: string): number {
  const fd = p.open(path, 1);
  if (fd < 0) return fd;
  const r = p.write(fd, new TextEncoder().encode(text));
  p.close(fd);
  return r;
}

function touch(p: Process, va: bigint, n: number, size = M2): number {
  for (let i = 0; i < n; i++) {
    const r = p.writeMemory(va + BigInt(i) * size, new Uint8Array([i + 1]));
    if (r < 0) return r;
  }
  return 0;
}

describe("hugetlb pools", () => {
  it("default machine: unlimited pools, no reservations, mmap of more than the pool succeeds", () => {
    const m = new Machine();
    const p = m.spawn();
    expect(pool(m)).toEqual({ nr: 0, free: 0, resv: 0, surplus: 0, over: "18446744073709551615" });
    const va = p.mmap(0n, 8n * M2, RW, HUGE2);
    expect(va).toBeGreaterThan(0n);
    expect(touch(p, va, 3)).toBe(0);
    // pages in use show as surplus of an unlimited pool
    expect(pool(m)).toMatchObject({ nr: 3, free: 0, resv: 0, surplus: 3 });
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 0, surplus: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("boot option fills the pools from the allocator; /sys reads them", () => {
    const m = new Machine({ memoryBytes: 8n * G1, hugepages: { "2M": 16, "1G": 1 } });
    expect(pool(m)).toEqual({ nr: 16, free: 16, resv: 0, surplus: 0, over: "0" });
    expect(pool(m, D1)).toEqual({ nr: 1, free: 1, resv: 0, surplus: 0, over: "0" });
    expect(m.frames.counters().huge2m).toBe(16);
    expect(m.frames.counters().huge1g).toBe(1);
    expect(m.debug.checkInvariants()).toEqual([]);
    expect(() => new Machine({ hugepages: { "4M": 1 } as never })).toThrow();
  });

  it("private MAP_HUGETLB reserves at mmap, faults consume, munmap returns the rest", () => {
    const m = new Machine({ hugepages: { "2M": 8 } });
    const p = m.spawn();
    const va = p.mmap(0n, 6n * M2, RW, HUGE2);
    expect(va).toBeGreaterThan(0n);
    expect(pool(m)).toMatchObject({ nr: 8, free: 8, resv: 6 });
    expect(touch(p, va, 2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 6, resv: 4 });
    // re-touching a consumed page takes nothing
    expect(touch(p, va, 2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 6, resv: 4 });
    // unmapping a touched and an untouched page: one page back, one reservation back
    expect(p.munmap(va + M2, 2n * M2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 7, resv: 3 });
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 8, free: 8, resv: 0, surplus: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("mmap is ENOMEM when the pool is short, with nothing changed", () => {
    const m = new Machine({ hugepages: { "2M": 4 } });
    const p = m.spawn();
    const a = p.mmap(0n, 3n * M2, RW, HUGE2);
    expect(a).toBeGreaterThan(0n);
    const before = { pool: pool(m), maps: p.task.mm.maps().length, used: m.frames.counters().usedFrames };
    expect(p.mmap(0n, 2n * M2, RW, HUGE2)).toBe(BigInt(-ENOMEM));
    expect(p.lastError()?.reason).toMatch(/hugetlb_reserve_pages/);
    expect(p.mmap(0n, 2n * M2, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB)).toBe(BigInt(-ENOMEM));
    expect(pool(m)).toEqual(before.pool);
    expect(p.task.mm.maps().length).toBe(before.maps);
    expect(m.frames.counters().usedFrames).toBe(before.used);
    expect(m.debug.counters().memFiles).toBe(0);
    // one page still fits
    expect(p.mmap(0n, M2, RW, HUGE2)).toBeGreaterThan(0n);
    expect(pool(m)).toMatchObject({ free: 4, resv: 4 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("overcommit: a short pool reserves surplus pages, which go back when released", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const root = m.spawn({ uid: 0 });
    expect(sysWrite(root, `${D2}/nr_overcommit_hugepages`, "3\n")).toBe(2);
    const p = m.spawn();
    const va = p.mmap(0n, 5n * M2, RW, HUGE2);
    expect(va).toBeGreaterThan(0n);
    expect(pool(m)).toMatchObject({ nr: 5, free: 5, resv: 5, surplus: 3, over: "3" });
    expect(p.mmap(0n, M2, RW, HUGE2)).toBe(BigInt(-ENOMEM));
    expect(touch(p, va, 5)).toBe(0);
    expect(pool(m)).toMatchObject({ nr: 5, free: 0, resv: 0, surplus: 3 });
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 2, free: 2, resv: 0, surplus: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("hugetlbfs memfd: a shared mapping reserves per file index, kept until truncate or last close", () => {
    const m = new Machine({ hugepages: { "2M": 4 } });
    const p = m.spawn();
    const fd = p.memfdCreate("guest", MFD_HUGETLB);
    expect(p.ftruncate(fd, 4n * M2)).toBe(0);
    expect(pool(m).resv).toBe(0); // memfd_create and ftruncate reserve nothing
    const a = p.mmap(0n, 3n * M2, RW, MAP_SHARED, fd, 0n);
    expect(a).toBeGreaterThan(0n);
    expect(pool(m).resv).toBe(3);
    // a second mapping of the same indices reserves nothing more
    const b = p.mmap(0n, 2n * M2, RW, MAP_SHARED, fd, M2);
    expect(b).toBeGreaterThan(0n);
    expect(pool(m).resv).toBe(3);
    expect(touch(p, a, 1)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 3, resv: 2 });
    // the page is in the file: the other mapping sees it without a new page
    expect(p.readMemory(a, 1)).toEqual(new Uint8Array([1]));
    expect(p.munmap(a, 3n * M2)).toBe(0);
    expect(p.munmap(b, 2n * M2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 3, resv: 2 }); // the file keeps them
    expect(p.ftruncate(fd, M2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 3, resv: 0 });
    expect(p.close(fd)).toBe(0);
    expect(pool(m)).toMatchObject({ nr: 4, free: 4, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("MAP_NORESERVE reserves nothing; a fault without a free page is SIGBUS (EFAULT, nothing allocated)", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const p = m.spawn();
    const va = p.mmap(0n, 4n * M2, RW, HUGE2 | MAP_NORESERVE);
    expect(va).toBeGreaterThan(0n);
    expect(pool(m)).toMatchObject({ free: 2, resv: 0 });
    expect(touch(p, va, 2)).toBe(0);
    const before = pool(m);
    expect(p.writeMemory(va + 2n * M2, new Uint8Array([9]))).toBe(-EFAULT);
    const mm = syscalls(p.task.mm);
    expect(mm.write(va + 2n * M2, new Uint8Array([9]))).toBe(-EFAULT);
    expect(mm.lastReason).toMatch(/SIGBUS/);
    expect(p.readMemory(va + 3n * M2, 1)).toBe(-EFAULT);
    // pin_user_pages sees the SIGBUS as EFAULT and leaves nothing pinned
    expect(mm.pinUserPages(va + M2, 1024, true)).toBe(-EFAULT);
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(pool(m)).toEqual(before);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("a reserved mapping cannot be starved by a MAP_NORESERVE one", () => {
    const m = new Machine({ hugepages: { "2M": 3 } });
    const p = m.spawn();
    const r = p.mmap(0n, 2n * M2, RW, HUGE2);
    const n = p.mmap(0n, 3n * M2, RW, HUGE2 | MAP_NORESERVE);
    expect(touch(p, n, 1)).toBe(0);
    expect(p.writeMemory(n + M2, new Uint8Array([1]))).toBe(-EFAULT);
    expect(touch(p, r, 2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 0, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("pins consume reservations; a pin rollback gives them back", () => {
    const m = new Machine({ hugepages: { "2M": 4 } });
    const p = m.spawn();
    const va = p.mmap(0n, 4n * M2, RW, HUGE2);
    const runs = syscalls(p.task.mm).pinUserPages(va, 1024, true);
    expect(typeof runs).toBe("object");
    expect(pool(m)).toMatchObject({ free: 2, resv: 2 });
    // a pin crossing into an unmapped range fails before faulting; one that a fault
    // injection stops after allocating rolls back the consumed reservation
    m.debug.failNth(1);
    expect(syscalls(p.task.mm).pinUserPages(va + 2n * M2, 1024, true, "pin_user_pages")).toBe(-ENOMEM);
    expect(pool(m)).toMatchObject({ free: 2, resv: 2 });
    if (typeof runs !== "number") p.task.mm.unpinUserPages(runs);
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 4, free: 4, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("a pin that faults in reserved folios and then fails gives every reservation back before freeing", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const p = m.spawn();
    const before = m.debug.counters();
    // two reserved huge pages, then a MAP_NORESERVE one right after them with no page left for it
    const va = p.mmap(0n, 3n * M2, RW, HUGE2 | MAP_NORESERVE);
    expect(p.munmap(va, 2n * M2)).toBe(0);
    expect(p.mmap(va, 2n * M2, RW, HUGE2 | 0x10)).toBe(va);
    expect(pool(m)).toMatchObject({ free: 2, resv: 2 });
    const mm = syscalls(p.task.mm);
    expect(mm.pinUserPages(va, 3 * 512, true)).toBe(-EFAULT);
    expect(mm.lastReason).toMatch(/pin: fault at 0x[0-9a-f]+ \(SIGBUS/);
    // nothing allocated, pinned or consumed: the two reservations still stand and serve a fault
    expect(pool(m)).toMatchObject({ nr: 2, free: 2, resv: 2, surplus: 0 });
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.counters().ownedFrames).toBe(before.ownedFrames);
    expect(touch(p, va, 2)).toBe(0);
    expect(pool(m)).toMatchObject({ free: 0, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 2, free: 2, resv: 0 });
  });

  it("a forked child's private copy has no reservation: its COW fault can SIGBUS", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const p = m.spawn();
    const va = p.mmap(0n, 2n * M2, RW, HUGE2);
    expect(touch(p, va, 2)).toBe(0);
    const c = p.fork() as Process;
    expect(typeof c).toBe("object");
    expect(c.writeMemory(va, new Uint8Array([7]))).toBe(-EFAULT);
    expect(c.readMemory(va, 1)).toEqual(new Uint8Array([1]));
    c.exit();
    p.exit();
    expect(pool(m)).toMatchObject({ nr: 2, free: 2, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("1 GiB pool: reservation, ENOMEM, fault", () => {
    const m = new Machine({ memoryBytes: 8n * G1, hugepages: { "1G": 2 } });
    const p = m.spawn();
    expect(pool(m, D1)).toMatchObject({ nr: 2, free: 2 });
    expect(pool(m)).toMatchObject({ nr: 0, free: 0, over: "0" }); // an unnamed size has none
    expect(p.mmap(0n, 3n * G1, RW, HUGE2 | MAP_HUGE_1GB)).toBe(BigInt(-ENOMEM));
    const va = p.mmap(0n, 2n * G1, RW, HUGE2 | MAP_HUGE_1GB);
    expect(va).toBeGreaterThan(0n);
    expect(pool(m, D1)).toMatchObject({ free: 2, resv: 2 });
    expect(touch(p, va, 1, G1)).toBe(0);
    expect(pool(m, D1)).toMatchObject({ free: 1, resv: 1 });
    // the 2 MiB pool is empty
    expect(p.mmap(0n, M2, RW, HUGE2)).toBe(BigInt(-ENOMEM));
    p.exit();
    expect(pool(m, D1)).toMatchObject({ nr: 2, free: 2, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("writing nr_hugepages grows and shrinks the pool, never below what is in use or reserved", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const root = m.spawn({ uid: 0 });
    const user = m.spawn();
    expect(sysWrite(user, `${D2}/nr_hugepages`, "8")).toBe(-EPERM);
    expect(sysWrite(root, `${D2}/nr_hugepages`, "eight")).toBe(-EINVAL);
    expect(sysWrite(root, `${D2}/free_hugepages`, "1")).toBe(-EINVAL);
    expect(pool(m).nr).toBe(2);
    expect(sysWrite(root, `${D2}/nr_hugepages`, "8\n")).toBe(2);
    expect(pool(m)).toMatchObject({ nr: 8, free: 8 });
    const va = user.mmap(0n, 3n * M2, RW, HUGE2);
    expect(touch(user, va, 1)).toBe(0);
    expect(sysWrite(root, `${D2}/nr_hugepages`, "0")).toBe(1);
    // 1 in use becomes surplus, 2 free pages stay for the reservations
    expect(pool(m)).toMatchObject({ nr: 3, free: 2, resv: 2, surplus: 3 });
    user.exit();
    expect(pool(m)).toMatchObject({ nr: 0, free: 0, resv: 0, surplus: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("writing nr_hugepages on a default machine limits its pool", () => {
    const m = new Machine();
    const root = m.spawn({ uid: 0 });
    expect(sysWrite(root, `${D2}/nr_hugepages`, "1")).toBe(1);
    expect(pool(m)).toEqual({ nr: 1, free: 1, resv: 0, surplus: 0, over: "0" });
    expect(root.mmap(0n, 2n * M2, RW, HUGE2)).toBe(BigInt(-ENOMEM));
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("fail_nth: hugetlb_reserve_pages and gather_surplus_pages fail mmap with ENOMEM, nothing leaks", () => {
    for (const site of ["hugetlb_reserve_pages", "gather_surplus_pages"]) {
      const m = new Machine({ hugepages: { "2M": 1 } });
      const root = m.spawn({ uid: 0 });
      expect(sysWrite(root, `${D2}/nr_overcommit_hugepages`, "4")).toBe(1);
      const p = m.spawn();
      const before = { pool: pool(m), used: m.frames.counters().usedFrames };
      let fired = false;
      for (let n = 1; n < 10 && !fired; n++) {
        m.debug.failNth(n);
        const r = p.mmap(0n, 3n * M2, RW, HUGE2);
        if (m.debug.failNthFired() === site) {
          fired = true;
          expect(r).toBe(BigInt(-ENOMEM));
          expect(pool(m)).toEqual(before.pool);
          expect(m.frames.counters().usedFrames).toBe(before.used);
        }
        m.debug.failNth(0);
        if (r > 0n) expect(p.munmap(r, 3n * M2)).toBe(0);
      }
      expect(fired).toBe(true);
      expect(m.debug.checkInvariants()).toEqual([]);
    }
  });

  it("fail_nth over a fault with a reservation never fires; a NORESERVE fault's does (EFAULT)", () => {
    const m = new Machine({ hugepages: { "2M": 2 } });
    const p = m.spawn();
    const va = p.mmap(0n, M2, RW, HUGE2);
    const nr = p.mmap(0n, M2, RW, HUGE2 | MAP_NORESERVE);
    m.debug.failNth(1);
    expect(p.writeMemory(va, new Uint8Array([1]))).toBe(0);
    expect(m.debug.failNthFired()).toBeUndefined();
    expect(p.writeMemory(nr, new Uint8Array([1]))).toBe(-EFAULT);
    expect(m.debug.failNthFired()).toBe("alloc_hugetlb_folio");
    m.debug.failNth(0);
    expect(pool(m)).toMatchObject({ free: 1, resv: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("hugetlb pools: random operation sequences", () => {
  it("keep the pool's counters consistent and return to the boot state when every process exits", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            op: fc.constantFrom("mmap", "mmapShared", "mmapNoresv", "touch", "munmap", "fork", "exit", "pin"),
            n: fc.integer({ min: 1, max: 4 }),
            i: fc.nat(),
          }),
          { maxLength: 25 },
        ),
        (ops) => {
          const m = new Machine({ hugepages: { "2M": 6 } });
          const boot = pool(m);
          const procs: Process[] = [m.spawn()];
          const maps: { p: Process; va: bigint; n: number }[] = [];
          for (const o of ops) {
            const p = procs[o.i % procs.length];
            if (p === undefined) break;
            if (o.op.startsWith("mmap")) {
              const flags =
                o.op === "mmapShared"
                  ? MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB
                  : HUGE2 | (o.op === "mmapNoresv" ? MAP_NORESERVE : 0);
              const before = pool(m);
              const va = p.mmap(0n, BigInt(o.n) * M2, RW, flags);
              if (va < 0n) {
                expect(va).toBe(BigInt(-ENOMEM));
                expect(pool(m)).toEqual(before);
              } else maps.push({ p, va, n: o.n });
            } else if (o.op === "touch" || o.op === "munmap" || o.op === "pin") {
              const mp = maps.filter((x) => x.p === p);
              const t = mp[o.i % Math.max(1, mp.length)];
              if (t === undefined) continue;
              if (o.op === "touch") {
                const r = p.writeMemory(t.va + BigInt(o.i % t.n) * M2, new Uint8Array([1]));
                expect([0, -EFAULT]).toContain(r);
              } else if (o.op === "pin") {
                const r = syscalls(p.task.mm).pinUserPages(t.va, t.n * 512, true);
                if (typeof r !== "number") p.task.mm.unpinUserPages(r);
                else expect([-EFAULT]).toContain(r);
              } else {
                expect(p.munmap(t.va, BigInt(t.n) * M2)).toBe(0);
                maps.splice(maps.indexOf(t), 1);
              }
            } else if (o.op === "fork") {
              const c = p.fork();
              if (typeof c !== "number") {
                procs.push(c);
                for (const x of maps.filter((y) => y.p === p)) maps.push({ ...x, p: c });
              }
            } else {
              p.exit();
              procs.splice(procs.indexOf(p), 1);
              for (let k = maps.length - 1; k >= 0; k--) if (maps[k].p === p) maps.splice(k, 1);
            }
            expect(m.debug.checkInvariants()).toEqual([]);
          }
          for (const p of procs) p.exit();
          expect(pool(m)).toEqual(boot);
          expect(m.debug.checkInvariants()).toEqual([]);
        },
      ),
      { numRuns: 150, seed: 7 },
    );
  });
});

describe("KeyBits (a reservation map's consumed keys)", () => {
  it("answers has/add/delete as a Set<number> does, across leaves", () => {
    const op = fc.record({
      kind: fc.constantFrom("add", "delete", "has"),
      key: fc.oneof(fc.integer({ min: 0, max: 9000 }), fc.integer({ min: 0, max: 2 ** 35 })),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const bits = new KeyBits();
        const ref = new Set<number>();
        for (const o of ops) {
          if (o.kind === "add") {
            bits.add(o.key);
            ref.add(o.key);
          } else if (o.kind === "delete") expect(bits.delete(o.key)).toBe(ref.delete(o.key));
          else expect(bits.has(o.key)).toBe(ref.has(o.key));
        }
        for (const k of ref) expect(bits.has(k)).toBe(true);
      }),
      { numRuns: 200, seed: 1204 },
    );
  });
});
