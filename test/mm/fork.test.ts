// MmStruct.fork (dup_mmap) and the COW breaks it makes necessary, below the syscall layer.
import { describe, expect, it } from "vitest";
import type { IoMem, MmStruct } from "../../src/mm/index.js";
import { M2, machine, P, RW, type Syscalls, syscalls } from "./helpers.js";

const ANON = 0x22;
const HUGE = 0x40000;
const SHARED = 0x01;

function forkOf(mm: MmStruct, users: ReturnType<typeof machine>["users"]): Syscalls<MmStruct> {
  return syscalls(mm.fork({ user: users.get(1000), cred: mm.cred }));
}

describe("MmStruct.fork", () => {
  it("a pinned MAP_PRIVATE hugetlb folio is copied for the child; an unpinned one is COW-shared", () => {
    const t = machine();
    const mm = t.newMm();
    const va = mm.mmap(0n, 2n * M2, RW, ANON | HUGE, null, 0n);
    expect(mm.write(va, new Uint8Array([1]))).toBe(0);
    expect(mm.write(va + M2, new Uint8Array([2]))).toBe(0);
    const runs = mm.pinUserPages(va, 1, true);
    expect(typeof runs).not.toBe("number");
    const owned = t.pages.counters().ownedFrames;
    const c = forkOf(mm, t.users);
    expect(t.pages.counters().ownedFrames).toBe(owned + 512);
    expect(c.translate(va)).not.toBe(mm.translate(va));
    expect(c.translate(va + M2)).toBe(mm.translate(va + M2));
    expect(Array.from(c.read(va, 1) as Uint8Array)).toEqual([1]);
    if (typeof runs !== "number") mm.unpinUserPages(runs);
    c.release();
    mm.release();
    expect(t.pages.counters().ownedFrames).toBe(0);
  });

  it("device memory (VM_IO | VM_PFNMAP) is shared and referenced once more per child VMA", () => {
    const t = machine();
    const mm = t.newMm();
    const bar = new Uint8Array(4096);
    let refs = 0;
    const io: IoMem = {
      kind: "io",
      read: (off, len) => bar.slice(off, off + len),
      write: (off, bytes) => {
        bar.set(bytes, off);
        return 0;
      },
      get: () => {
        refs++;
      },
      put: () => {
        refs--;
      },
    };
    const va = mm.mmap(0n, P, RW, SHARED, io, 0n);
    expect(refs).toBe(1);
    const c = forkOf(mm, t.users);
    expect(refs).toBe(2);
    expect(c.write(va, new Uint8Array([7]))).toBe(0);
    expect(Array.from(mm.read(va, 1) as Uint8Array)).toEqual([7]);
    c.release();
    expect(refs).toBe(1);
    mm.release();
    expect(refs).toBe(0);
  });

  it("a failed write that broke COW on its first page undoes the copy: both mms as before, nothing leaked", () => {
    const t = machine();
    const mm = t.newMm();
    const va = mm.mmap(0n, 2n * P, RW, ANON, null, 0n);
    expect(mm.write(va, new Uint8Array(8192).fill(3))).toBe(0);
    const c = forkOf(mm, t.users);
    const snap = t.snapshot();
    const pas = [mm.translate(va), mm.translate(va + P)];
    t.faults.arm(2); // the second page's copy fails
    expect(c.write(va + P - 1n, new Uint8Array([9, 9]))).toBe(-14);
    t.faults.arm(0);
    expect(t.snapshot()).toEqual(snap);
    expect([c.translate(va), c.translate(va + P)]).toEqual(pas);
    expect(Array.from(c.read(va + P - 1n, 2) as Uint8Array)).toEqual([3, 3]);
    // a pin that unshares the first page and then fails is undone the same way
    t.faults.arm(2);
    expect(c.pinUserPages(va, 2, true)).toBe(-12);
    t.faults.arm(0);
    expect(t.snapshot()).toEqual(snap);
    expect([c.translate(va), c.translate(va + P)]).toEqual(pas);
    c.release();
    mm.release();
    expect(t.pages.counters().ownedFrames).toBe(0);
  });

  it("the child keeps mmap_base, has no locked or pinned pages, and fails cleanly at every allocation", () => {
    const t = machine();
    const mm = t.newMm({ seed: 5, cred: { caps: new Set(), rlimitMemlock: 1n << 20n } });
    const a = mm.mmap(0n, 4n * P, RW, ANON | 0x2000, null, 0n);
    expect(mm.lockedVm).toBe(4);
    const b = mm.mmap(0n, P, RW, ANON, null, 0n);
    expect(mm.write(b, new Uint8Array([1]))).toBe(0);
    const runs = mm.pinUserPages(a, 2, true);
    expect(typeof runs).not.toBe("number");
    const snap = t.snapshot();
    const sites: string[] = [];
    for (let n = 1; ; n++) {
      t.faults.arm(n);
      const r = mm.fork({ user: t.users.get(1000), cred: mm.cred });
      const fired = t.faults.fired;
      t.faults.arm(0);
      if (fired === undefined) {
        expect(typeof r).not.toBe("number");
        const c = r as MmStruct;
        expect([c.lockedVm, c.pinnedVm]).toEqual([0, 0]);
        expect(c.mmapBase).toBe(mm.mmapBase);
        expect(c.maps().map((m) => [m.start, m.end, m.locked])).toEqual(
          mm.maps().map((m) => [m.start, m.end, false]),
        );
        c.release();
        break;
      }
      sites.push(fired);
      expect(r).toBe(-12);
      expect(t.snapshot()).toEqual(snap);
    }
    expect(sites).toEqual(["dup_mm", "vm_area_dup", "vm_area_dup", "copy_present_page", "copy_present_page"]);
    if (typeof runs !== "number") mm.unpinUserPages(runs);
    mm.release();
    expect(t.snapshot()).toMatchObject({ owned: 0, pinned: 0, vmas: 0 });
  });
});
