// fork(2) through the syscall contract: COW both ways, shared mappings,
// pinned pages, fd sharing, exit, accounting, and fail_nth over fork.
import { describe, expect, it } from "vitest";
import type { Process } from "../../src/index.js";
import { errno, Machine, uapi } from "../../src/index.js";
import { ioasAlloc, map, mockDomain, ok, setup } from "../conformance/helpers.js";

const { ENOMEM, ESRCH } = errno;
const { PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS, MAP_HUGETLB, MAP_LOCKED } = uapi;
const RW = PROT_READ | PROT_WRITE;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;
const P = 4096n;
const M2 = 2n << 20n;

function child(p: Process): Process {
  const c = p.fork();
  if (typeof c === "number") throw new Error(`fork failed ${c}: ${p.lastError()?.reason}`);
  return c;
}

const b = (...v: number[]) => new Uint8Array(v);
const rd = (p: Process, va: bigint, n = 1) => Array.from(p.readMemory(va, n) as Uint8Array);
const pa = (p: Process, va: bigint) => p.task.mm.translate(va);

/** Everything a leak would show, machine-wide. */
function leakState(m: Machine) {
  const c = m.debug.counters();
  return {
    usedFrames: c.usedFrames,
    ownedFrames: c.ownedFrames,
    pinned: c.pinnedPages,
    memFiles: c.memFiles,
    openFiles: c.openFiles,
    processes: c.processes,
  };
}

describe("fork: private memory is copy-on-write", () => {
  it("4 KiB anonymous: both see the old bytes; a write copies in the writer only, both ways", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const va = p.mmap(0n, 2n * P, RW, ANON);
    ok(p, p.writeMemory(va, b(1)));
    ok(p, p.writeMemory(va + P, b(2)));
    const before = leakState(m);
    const c = child(p);
    // same frames, nothing allocated by the fork itself (page tables aside)
    expect(pa(c, va)).toBe(pa(p, va));
    expect(leakState(m).ownedFrames).toBe(before.ownedFrames);
    expect(rd(c, va)).toEqual([1]);
    // the child writes: it gets a copy, the parent keeps its page and bytes
    const parentPa = pa(p, va);
    ok(c, c.writeMemory(va, b(9)));
    expect(pa(c, va)).not.toBe(parentPa);
    expect(pa(p, va)).toBe(parentPa);
    expect([rd(p, va), rd(c, va)]).toEqual([[1], [9]]);
    // the parent is now the only user of its page: its write reuses it (no copy)
    ok(p, p.writeMemory(va, b(5)));
    expect(pa(p, va)).toBe(parentPa);
    expect([rd(p, va), rd(c, va)]).toEqual([[5], [9]]);
    // the other direction: the parent writes the second page first
    const shared2 = pa(p, va + P);
    ok(p, p.writeMemory(va + P, b(7)));
    expect(pa(p, va + P)).not.toBe(shared2);
    expect(pa(c, va + P)).toBe(shared2);
    expect([rd(p, va + P), rd(c, va + P)]).toEqual([[7], [2]]);
    expect(m.debug.checkInvariants()).toEqual([]);
    c.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("an untouched private page stays the zero page in both; a private file page is the cache until written", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const va = p.mmap(0n, P, RW, ANON);
    const mfd = p.memfdCreate("f");
    ok(p, p.ftruncate(mfd, 2n * P));
    ok(p, p.pwrite(mfd, b(3), 0n));
    ok(p, p.pwrite(mfd, b(4), P));
    const fva = p.mmap(0n, 2n * P, RW, MAP_PRIVATE, mfd);
    ok(p, p.writeMemory(fva, b(30))); // COWed in the parent
    const c = child(p);
    expect(rd(c, va)).toEqual([0]);
    expect(pa(c, va)).toBeNull();
    expect([rd(c, fva), rd(c, fva + P)]).toEqual([[30], [4]]);
    expect(pa(c, fva)).toBe(pa(p, fva));
    ok(c, c.writeMemory(fva + P, b(40)));
    expect([rd(p, fva + P), rd(c, fva + P)]).toEqual([[4], [40]]);
    expect(p.pread(mfd, 1, P)).toEqual(b(4));
    ok(c, c.writeMemory(fva, b(31)));
    expect([rd(p, fva), rd(c, fva)]).toEqual([[30], [31]]);
    c.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
    expect(leakState(m)).toMatchObject({ ownedFrames: 0, memFiles: 0, processes: 0 });
  });

  it("MAP_PRIVATE hugetlb (2 MiB) is COW-shared like the kernel's copy_hugetlb_page_range", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const va = p.mmap(0n, M2, RW, ANON | MAP_HUGETLB);
    ok(p, p.writeMemory(va + 100n, b(6)));
    const c = child(p);
    expect(pa(c, va)).toBe(pa(p, va));
    expect(p.task.mm.counters().private2m).toBe(1);
    expect(c.task.mm.counters().private2m).toBe(1);
    const owned = m.debug.counters().ownedFrames;
    ok(c, c.writeMemory(va + 5n, b(1)));
    // a whole 2 MiB folio was copied, bytes and all
    expect(m.debug.counters().ownedFrames).toBe(owned + 512);
    expect(pa(c, va)).not.toBe(pa(p, va));
    expect([rd(p, va + 5n), rd(c, va + 5n), rd(c, va + 100n)]).toEqual([[0], [1], [6]]);
    c.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
    expect(m.debug.counters().ownedFrames).toBe(0);
  });
});

describe("fork: shared mappings stay shared", () => {
  it("a MAP_SHARED memfd and shared anonymous memory: a write in one is seen by the other", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const mfd = p.memfdCreate("shm");
    ok(p, p.ftruncate(mfd, P));
    const sva = p.mmap(0n, P, RW, MAP_SHARED, mfd);
    const ava = p.mmap(0n, P, RW, MAP_SHARED | MAP_ANONYMOUS);
    ok(p, p.writeMemory(sva, b(1)));
    const c = child(p);
    ok(c, c.writeMemory(sva, b(2)));
    ok(c, c.writeMemory(ava, b(3)));
    expect([rd(p, sva), rd(p, ava)]).toEqual([[2], [3]]);
    ok(p, p.writeMemory(ava, b(4)));
    expect(rd(c, ava)).toEqual([4]);
    expect(pa(c, sva)).toBe(pa(p, sva));
    expect(p.pread(mfd, 1, 0n)).toEqual(b(2));
    // the parent's unmap leaves the child's mapping (and the file) alive
    ok(p, p.munmap(ava, P));
    ok(p, p.close(mfd));
    ok(p, p.munmap(sva, P));
    expect(rd(c, sva)).toEqual([2]);
    expect(rd(c, ava)).toEqual([4]);
    expect(m.debug.counters().memFiles).toBe(2);
    c.exit();
    expect(m.debug.counters().memFiles).toBe(0);
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("VM_LOCKED is not inherited: the child's mapping is unlocked and its locked_vm 0", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn({ rlimitMemlock: 1n << 20n });
    const va = p.mmap(0n, 4n * P, RW, ANON | MAP_LOCKED);
    expect(va > 0n).toBe(true);
    const c = child(p);
    expect(p.task.mm.lockedVm).toBe(4);
    expect(c.task.mm.lockedVm).toBe(0);
    expect(c.task.mm.maps()[0].locked).toBe(false);
    expect(p.task.mm.maps()[0].locked).toBe(true);
    // the child still has the parent's limits and credentials
    expect(c.cred).toEqual(p.cred);
    expect(c.cred).not.toBe(p.cred);
    expect(m.debug.checkInvariants()).toEqual([]);
    c.exit();
    p.exit();
  });
});

describe("fork: pinned pages and DMA", () => {
  it("a pinned private page is copied for the child at once; the parent keeps the page the device uses", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const d = mockDomain(e, ioas);
    ok(e.p, d.rc);
    const va = e.p.mmap(0n, 4n * P, RW, ANON);
    for (let i = 0n; i < 4n; i++) ok(e.p, e.p.writeMemory(va + i * P, b(Number(i) + 1)));
    // pin the first two pages (IOAS_MAP with a domain pins them)
    const r = map(e, ioas, va, 2n * P);
    ok(e.p, r.rc);
    const pinnedPa = [pa(e.p, va), pa(e.p, va + P)];
    const pinsBefore = e.m.debug.counters().pinnedPages;
    const c = child(e.p);
    // pinned: the child has its own copy with the same bytes; the parent's page is unchanged
    for (let i = 0; i < 2; i++) {
      const v = va + BigInt(i) * P;
      expect(pa(e.p, v)).toBe(pinnedPa[i]);
      expect(pa(c, v)).not.toBe(pinnedPa[i]);
      expect(rd(c, v)).toEqual([i + 1]);
    }
    // not pinned: COW-shared
    expect(pa(c, va + 2n * P)).toBe(pa(e.p, va + 2n * P));
    expect(e.m.debug.counters().pinnedPages).toBe(pinsBefore);
    // the parent's write after fork lands in the pinned page the device sees (no COW break)
    ok(e.p, e.p.writeMemory(va, b(0x55)));
    expect(pa(e.p, va)).toBe(pinnedPa[0]);
    expect(e.m.debug.readPhys(pinnedPa[0]!, 1)).toEqual(b(0x55));
    expect(rd(c, va)).toEqual([1]);
    // the child's pin_user_pages of a page still COW-shared unshares it first
    expect(c.task.mm.pinnedVm).toBe(0);
    expect(c.task.mm.lockedVm).toBe(0);
    expect(e.p.task.mm.pinnedVm).toBe(2);
    expect(e.m.debug.checkInvariants()).toEqual([]);
    c.exit();
    expect(pa(e.p, va + 2n * P)).not.toBeNull();
    expect(rd(e.p, va + 2n * P)).toEqual([3]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
    e.p.exit();
    const cnt = e.m.debug.counters();
    expect([cnt.pinnedPages, cnt.ownedFrames, cnt.objects, cnt.processes]).toEqual([0, 0, 0, 0]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
  });

  it("a long-term pin in the child of a page still COW-shared gives the child its own page", () => {
    const e = setup();
    const va = e.p.mmap(0n, P, RW, ANON);
    ok(e.p, e.p.writeMemory(va, b(8)));
    const c = child(e.p);
    const shared = pa(c, va);
    expect(shared).toBe(pa(e.p, va));
    const runs = c.task.mm.pinUserPages(va, 1, false);
    expect(typeof runs).not.toBe("number");
    expect(pa(c, va)).not.toBe(shared);
    expect(pa(e.p, va)).toBe(shared);
    expect(rd(c, va)).toEqual([8]);
    if (typeof runs !== "number") c.task.mm.unpinUserPages(runs);
    c.exit();
    e.p.exit();
    expect(e.m.debug.counters().ownedFrames).toBe(0);
  });
});

describe("fork: the fd table", () => {
  it("each fd is a new reference to the same open file; the last close releases it", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const efd = p.eventfd(0);
    const mfd = p.memfdCreate("f");
    ok(p, p.ftruncate(mfd, P));
    const c = child(p);
    expect(c.task.fds.length).toBe(p.task.fds.length);
    for (let fd = 0; fd < p.task.fds.length; fd++) expect(c.task.fds[fd]).toBe(p.task.fds[fd]);
    expect(p.task.fds[mfd]!.refs).toBe(2);
    // one open file description: what the child writes the parent reads
    ok(c, c.write(efd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0])));
    expect(p.read(efd, 8)).toEqual(new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    ok(p, p.close(mfd));
    expect(c.pwrite(mfd, b(9), 0n)).toBe(1);
    expect(m.debug.counters().memFiles).toBe(1);
    ok(c, c.close(mfd));
    expect(m.debug.counters().memFiles).toBe(0);
    expect(m.debug.counters().openFiles).toBe(2);
    c.exit();
    expect(m.debug.counters().openFiles).toBe(1);
    expect(p.read(efd, 8)).toBeLessThan(0); // counter 0 again: EAGAIN or blocking refused
    p.exit();
    expect(m.debug.counters().openFiles).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("the child has its own pid; an exited process cannot fork; the trace records fork", () => {
    const m = new Machine({ iommu: "none", trace: true });
    const p = m.spawn();
    const c = child(p);
    expect(c.pid).not.toBe(p.pid);
    expect(m.liveProcesses().map((x) => x.pid)).toEqual([p.pid, c.pid]);
    const ev = m.debug.trace().find((t) => t.call === "fork");
    expect(ev).toMatchObject({ pid: p.pid, ret: c.pid });
    c.exit();
    expect(c.fork()).toBe(-ESRCH);
    // a grandchild
    const g = child(p);
    const gg = child(g);
    gg.exit();
    g.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("exit of either releases exactly its own: the other's memory and files stay", () => {
    const m = new Machine({ iommu: "none" });
    const p = m.spawn();
    const va = p.mmap(0n, 2n * P, RW, ANON);
    ok(p, p.writeMemory(va, b(1)));
    const base = leakState(m);
    const c = child(p);
    ok(c, c.writeMemory(va + P, b(2))); // the child's own page
    p.exit();
    expect(rd(c, va)).toEqual([1]);
    expect(rd(c, va + P)).toEqual([2]);
    expect(m.debug.checkInvariants()).toEqual([]);
    const after = leakState(m);
    expect(after.processes).toBe(base.processes);
    c.exit();
    expect(leakState(m)).toMatchObject({ ownedFrames: 0, pinned: 0, openFiles: 0, processes: 0 });
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("fork: fail_nth", () => {
  it("every allocation fork makes can fail: -ENOMEM, the parent unchanged, nothing leaked", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    ok(e.p, mockDomain(e, ioas).rc);
    const p = e.p;
    const anon = p.mmap(0n, 4n * P, RW, ANON);
    for (let i = 0n; i < 4n; i++) ok(p, p.writeMemory(anon + i * P, b(Number(i) + 1)));
    ok(p, map(e, ioas, anon, 2n * P).rc); // two pinned pages: copied at fork
    const huge = p.mmap(0n, M2, RW, ANON | MAP_HUGETLB);
    ok(p, p.writeMemory(huge, b(1)));
    const mfd = p.memfdCreate("f");
    ok(p, p.ftruncate(mfd, P));
    const shm = p.mmap(0n, P, RW, MAP_SHARED, mfd);
    ok(p, p.writeMemory(shm, b(1)));
    p.eventfd(0);
    const snap = () => ({
      leak: leakState(e.m),
      maps: p.task.mm.maps(),
      mm: p.task.mm.counters(),
      refs: p.task.fds.map((f) => f?.refs),
      pa: [anon, anon + P, anon + 2n * P, huge, shm].map((v) => pa(p, v)),
      pids: e.m.liveProcesses().map((x) => x.pid),
    });
    const before = snap();
    const sites: string[] = [];
    for (let n = 1; n < 200; n++) {
      e.m.debug.failNth(n);
      const r = p.fork();
      const fired = e.m.debug.failNthFired();
      e.m.debug.failNth(0);
      if (fired === undefined) {
        expect(typeof r).not.toBe("number");
        (r as Process).exit();
        break;
      }
      sites.push(fired);
      expect({ n, fired, r }).toEqual({ n, fired, r: -ENOMEM });
      expect(p.lastError()?.errno).toBe(ENOMEM);
      expect(snap()).toEqual(before);
      expect(e.m.debug.checkInvariants()).toEqual([]);
    }
    // task, fd table, mm, 4 VMAs (one the ioctl scratch area), the 2 pinned pages copied
    expect(sites).toEqual([
      "dup_task_struct",
      "dup_fd",
      "dup_mm",
      "vm_area_dup", // in address order, top down: shm, huge, anon (its 2 pinned pages), scratch
      "vm_area_dup",
      "vm_area_dup",
      "copy_present_page",
      "copy_present_page",
      "vm_area_dup",
    ]);
    expect(snap()).toEqual(before);
    p.exit();
    const c = e.m.debug.counters();
    expect([c.pinnedPages, c.ownedFrames, c.objects, c.processes]).toEqual([0, 0, 0, 0]);
    expect(e.m.debug.checkInvariants()).toEqual([]);
  });
});
