import { describe, expect, it } from "vitest";
import {
  accountLockedVm,
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_NONE,
  IOPT_PAGES_ACCOUNT_USER,
  iommufdDefaultAccountMode,
  MemFile,
  mman,
  type PfnRuns,
  runsToArray,
  unaccountLockedVm,
} from "../../src/mm/index.js";
import { EAGAIN, EFAULT, ENOMEM, EPERM } from "../../src/uapi/errno.js";
import { bytes, G1, M2, machine, P, RW } from "./helpers.js";

const {
  MAP_ANONYMOUS,
  MAP_HUGE_1GB,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  RLIM_INFINITY,
} = mman;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

function ok(r: PfnRuns | number): PfnRuns {
  if (typeof r === "number") throw new Error(`pin failed: ${r}`);
  return r;
}

describe("pin_user_pages", () => {
  it("EFAULT for unmapped ranges and holes; nothing pinned", () => {
    const { newMm, pages, snapshot } = machine();
    const m = newMm();
    const va = m.mmap(0n, 8n * P, RW, ANON, null, 0n);
    m.munmap(va + 4n * P, P);
    const before = snapshot();
    expect(m.pinUserPages(0x100000n, 1, false)).toBe(-EFAULT);
    expect(m.pinUserPages(va, 8, true)).toBe(-EFAULT); // hole in the middle
    expect(m.pinUserPages(va + 5n * P, 4, true)).toBe(-EFAULT); // runs off the end
    expect(m.pinUserPages(va - P, 2, true)).toBe(-EFAULT); // starts before
    expect(snapshot()).toEqual(before);
    expect(pages.totalPinnedPages()).toBe(0);
  });

  it("EFAULT for a write pin of a read-only mapping and a read pin of PROT_NONE", () => {
    const { newMm } = machine();
    const m = newMm();
    const ro = m.mmap(0n, 2n * P, PROT_READ, ANON, null, 0n);
    const none = m.mmap(0n, P, 0, ANON, null, 0n);
    expect(m.pinUserPages(ro, 2, true)).toBe(-EFAULT);
    expect(m.pinUserPages(none, 1, false)).toBe(-EFAULT);
    const r = ok(m.pinUserPages(ro, 2, false)); // a read pin is fine, and gets real pages
    expect(r.pages).toBe(2);
    m.unpinUserPages(r);
  });

  it("faults pages in, counts pins, and the same page pins twice", () => {
    const { newMm, pages } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, ANON, null, 0n);
    m.write(va + P, bytes(4096, 1));
    const a = ok(m.pinUserPages(va, 4, true));
    const b = ok(m.pinUserPages(va + P + 123n, 1, false)); // rounded down to the page
    const pfns = runsToArray(a);
    expect(pfns.length).toBe(4);
    expect(runsToArray(b)).toEqual([pfns[1]]);
    expect(pages.pinCount(pfns[1])).toBe(2);
    expect(pages.isPinned(pfns[0])).toBe(true);
    expect(pages.totalPinnedPages()).toBe(5);
    expect(BigInt(pfns[1]) * P).toBe(m.translate(va + P));
    m.unpinUserPages(b);
    m.unpinUserPages(a);
    expect(pages.totalPinnedPages()).toBe(0);
  });

  it("all-or-nothing at every fail point (fail_nth sweep)", () => {
    const { newMm, faults, snapshot } = machine(64n << 20n);
    const m = newMm();
    const va = m.mmap(0n, 6n * P, RW, ANON, null, 0n);
    const sh = m.mmap(va + 6n * P, 2n * P, RW, MAP_SHARED | MAP_ANONYMOUS | mman.MAP_FIXED, null, 0n);
    expect(sh).toBe(va + 6n * P);
    m.write(va + 2n * P, bytes(10, 2));
    const before = snapshot();
    const cnt = m.counters();
    let fired = 0;
    for (let n = 1; ; n++) {
      faults.arm(n);
      const r = m.pinUserPages(va, 8, true);
      faults.disarm();
      if (typeof r !== "number") {
        expect(r.pages).toBe(8);
        m.unpinUserPages(r);
        break;
      }
      fired++;
      expect(r).toBe(-ENOMEM);
      expect(snapshot()).toEqual(before);
      expect(m.counters()).toEqual(cnt);
      expect(m.translate(va)).toBeNull();
    }
    expect(fired).toBe(8); // the pin itself, then each of 5 anonymous and 2 shmem allocations
    expect(m.read(va + 2n * P, 10)).toEqual(bytes(10, 2));
  });

  it("a pinned frame outlives munmap and process exit, and is freed at unpin", () => {
    const { newMm, frames, phys, pages, snapshot } = machine();
    const base = snapshot();
    const m = newMm();
    const va = m.mmap(0n, 2n * P, RW, ANON, null, 0n);
    m.write(va, bytes(64, 3));
    const r = ok(m.pinUserPages(va, 2, true));
    const pfn = r.pfn[0];
    expect(m.munmap(va, 2n * P)).toBe(0);
    expect(m.read(va, 1)).toBe(-EFAULT);
    expect(frames.isAllocated(pfn)).toBe(true);
    expect(phys.read(pfn * 4096, 64)).toEqual(bytes(64, 3)); // the device still sees the data
    m.release();
    expect(pages.totalPinnedPages()).toBe(2);
    m.unpinUserPages(r);
    expect(frames.isAllocated(pfn)).toBe(false);
    expect(snapshot()).toEqual(base);
  });

  it("a read-only long-term pin of a private file mapping unshares first (gup_must_unshare)", () => {
    const { newMm, pages } = machine();
    const f = new MemFile(pages, "ro", 0);
    f.ftruncate(P);
    f.write(0n, bytes(8, 4));
    const m = newMm();
    const va = m.mmap(0n, P, RW, MAP_PRIVATE, f, 0n);
    const r = ok(m.pinUserPages(va, 1, false));
    // the pin holds a private copy, not the page cache's page
    expect(r.pfn[0]).not.toBe(f.pfnAt(0));
    expect(BigInt(r.pfn[0]) * P).toBe(m.translate(va));
    expect(m.read(va, 8)).toEqual(bytes(8, 4));
    // a later CPU write lands in the pinned copy: the pin keeps seeing the process's memory
    m.write(va, new Uint8Array([0xff]));
    expect(m.translate(va)).toBe(BigInt(r.pfn[0]) * P);
    m.unpinUserPages(r);
    m.release();
    f.put();
  });

  it("a write pin of a private file mapping breaks COW first", () => {
    const { newMm, pages } = machine();
    const f = new MemFile(pages, "rw", 0);
    f.ftruncate(P);
    f.write(0n, bytes(8, 5));
    const m = newMm();
    const va = m.mmap(0n, P, RW, MAP_PRIVATE, f, 0n);
    const r = ok(m.pinUserPages(va, 1, true));
    expect(r.pfn[0]).not.toBe(f.pfnAt(0));
    expect(m.read(va, 8)).toEqual(bytes(8, 5));
    m.unpinUserPages(r);
    m.release();
    f.put();
  });

  it("64 GiB of 1 GiB hugetlb pins as a handful of runs and little tracking", () => {
    const { newMm, pages, frames } = machine(80n << 30n);
    const m = newMm();
    const len = 64n * G1;
    const va = m.mmap(0n, len, RW, ANON | MAP_HUGETLB | MAP_HUGE_1GB, null, 0n);
    const r = ok(m.pinUserPages(va, Number(len / P), true));
    expect(r.pages).toBe(Number(len / P));
    expect(r.count).toBeLessThanOrEqual(64);
    expect(frames.counters().huge1g).toBe(64);
    expect(pages.totalPinnedPages()).toBe(Number(len / P));
    expect(pages.pinCount(r.pfn[0] + 12345)).toBe(262144);
    m.release();
    expect(frames.counters().huge1g).toBe(64);
    m.unpinUserPages(r);
    expect(frames.counters().usedFrames).toBe(0);
  });

  it("64 GiB of 2 MiB hugetlb pins in ~32768 runs at most", () => {
    const { newMm, frames } = machine(66n << 30n);
    const m = newMm();
    const len = 64n * G1;
    const va = m.mmap(0n, len, RW, ANON | MAP_HUGETLB, null, 0n);
    const r = ok(m.pinUserPages(va, Number(len / P), false));
    expect(r.count).toBeLessThanOrEqual(32768);
    expect(frames.counters().huge2m).toBe(32768);
    m.unpinUserPages(r);
    m.release();
    expect(frames.counters().usedFrames).toBe(0);
  });

  it("hugetlb pin of part of a folio pins the folio", () => {
    const { newMm, frames } = machine(512n << 20n);
    const m = newMm();
    const va = m.mmap(0n, 2n * M2, RW, ANON | MAP_HUGETLB, null, 0n);
    const r = ok(m.pinUserPages(va + M2 - P, 2, true)); // straddles two folios
    expect(r.pages).toBe(2);
    expect(frames.counters().huge2m).toBe(2);
    expect(m.munmap(va, 2n * M2)).toBe(0);
    expect(frames.counters().huge2m).toBe(2);
    m.unpinUserPages(r);
    expect(frames.counters().huge2m).toBe(0);
  });
});

describe("RLIMIT_MEMLOCK accounting", () => {
  it("USER mode: over the limit is ENOMEM and nothing charged", () => {
    const { newMm } = machine();
    const m = newMm({ cred: { caps: new Set(), rlimitMemlock: 16n * P } });
    expect(iommufdDefaultAccountMode(m.cred)).toBe(IOPT_PAGES_ACCOUNT_USER);
    expect(accountLockedVm(m, 10, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(accountLockedVm(m, 7, IOPT_PAGES_ACCOUNT_USER)).toBe(-ENOMEM);
    expect(m.user.lockedVm).toBe(10);
    expect(m.pinnedVm).toBe(10);
    expect(m.lockedVm).toBe(0);
    expect(accountLockedVm(m, 6, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    unaccountLockedVm(m, 16, IOPT_PAGES_ACCOUNT_USER);
    expect([m.user.lockedVm, m.pinnedVm]).toEqual([0, 0]);
  });

  it("per-user accounting is shared by processes of one uid", () => {
    const { newMm } = machine();
    const cred = () => ({ caps: new Set<string>(), rlimitMemlock: 8n * P });
    const a = newMm({ uid: 7, cred: cred() });
    const b = newMm({ uid: 7, cred: cred() });
    const c = newMm({ uid: 8, cred: cred() });
    expect(a.user).toBe(b.user);
    expect(accountLockedVm(a, 5, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(accountLockedVm(b, 4, IOPT_PAGES_ACCOUNT_USER)).toBe(-ENOMEM);
    expect(accountLockedVm(c, 8, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(accountLockedVm(b, 3, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(a.user.lockedVm).toBe(8);
    expect([a.pinnedVm, b.pinnedVm]).toEqual([5, 3]);
  });

  it("MM mode charges mm->locked_vm; CAP_IPC_LOCK bypasses the limit", () => {
    const { newMm } = machine();
    const m = newMm({ cred: { caps: new Set(), rlimitMemlock: 4n * P } });
    expect(accountLockedVm(m, 5, IOPT_PAGES_ACCOUNT_MM)).toBe(-ENOMEM);
    expect([m.lockedVm, m.pinnedVm, m.user.lockedVm]).toEqual([0, 0, 0]);
    expect(accountLockedVm(m, 4, IOPT_PAGES_ACCOUNT_MM)).toBe(0);
    m.cred.caps.add("CAP_IPC_LOCK");
    expect(accountLockedVm(m, 100, IOPT_PAGES_ACCOUNT_MM)).toBe(0);
    expect(m.lockedVm).toBe(104);
    expect(iommufdDefaultAccountMode(m.cred)).toBe(IOPT_PAGES_ACCOUNT_NONE);
    // NONE charges only pinned_vm
    expect(accountLockedVm(m, 1000, IOPT_PAGES_ACCOUNT_NONE)).toBe(0);
    expect([m.lockedVm, m.pinnedVm, m.user.lockedVm]).toEqual([104, 1104, 0]);
    unaccountLockedVm(m, 104, IOPT_PAGES_ACCOUNT_MM);
    unaccountLockedVm(m, 1000, IOPT_PAGES_ACCOUNT_NONE);
    expect([m.lockedVm, m.pinnedVm]).toEqual([0, 0]);
  });

  it("RLIM_INFINITY never refuses", () => {
    const { newMm } = machine();
    const m = newMm({ cred: { caps: new Set(), rlimitMemlock: RLIM_INFINITY } });
    expect(accountLockedVm(m, 2 ** 40, IOPT_PAGES_ACCOUNT_USER)).toBe(0);
    expect(accountLockedVm(m, 2 ** 40, IOPT_PAGES_ACCOUNT_MM)).toBe(0);
  });

  it("MAP_LOCKED charges mm->locked_vm: EAGAIN over the limit, EPERM with a zero limit", () => {
    const { newMm, frames } = machine();
    const m = newMm({ cred: { caps: new Set(), rlimitMemlock: 4n * P } });
    const used = frames.counters().usedFrames;
    expect(m.mmap(0n, 5n * P, RW, ANON | MAP_LOCKED, null, 0n)).toBe(BigInt(-EAGAIN));
    const va = m.mmap(0n, 4n * P, RW, ANON | MAP_LOCKED, null, 0n);
    expect(m.lockedVm).toBe(4);
    expect(frames.counters().usedFrames).toBe(used + 4); // populated
    expect(accountLockedVm(m, 1, IOPT_PAGES_ACCOUNT_MM)).toBe(-ENOMEM); // same counter
    m.munmap(va + P, P);
    expect(m.lockedVm).toBe(3);
    m.release();
    expect(m.lockedVm).toBe(0);
    const z = newMm({ cred: { caps: new Set(), rlimitMemlock: 0n } });
    expect(z.mmap(0n, P, RW, ANON | MAP_LOCKED, null, 0n)).toBe(BigInt(-EPERM));
  });
});

describe("release", () => {
  it("frees every page, file and VMA of the process", () => {
    const { newMm, pages, snapshot } = machine(512n << 20n);
    const base = snapshot();
    const m = newMm();
    const f = new MemFile(pages, "f", 0);
    f.ftruncate(4n * P);
    const a = m.mmap(0n, 16n * P, RW, ANON, null, 0n);
    const s = m.mmap(0n, 4n * P, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0n);
    const h = m.mmap(0n, M2, RW, ANON | MAP_HUGETLB, null, 0n);
    const fm = m.mmap(0n, 4n * P, RW, MAP_SHARED, f, 0n);
    const fp = m.mmap(0n, 4n * P, RW, MAP_PRIVATE, f, 0n);
    for (const va of [a, s, h, fm, fp]) expect(m.write(va + 100n, bytes(5000, 9))).toBe(0);
    f.put(); // the fd is closed; the mappings keep the file
    expect(pages.counters().memFiles).toBe(2);
    m.release();
    expect(m.counters()).toEqual({
      vmas: 0,
      private4k: 0,
      private2m: 0,
      private1g: 0,
      lockedVm: 0,
      pinnedVm: 0,
    });
    expect(snapshot()).toEqual(base);
    expect(() => m.mmap(0n, P, RW, ANON, null, 0n)).toThrow();
  });
});
