import { describe, expect, it } from "vitest";
import { MemFile, mman, runsToArray } from "../../src/mm/index.js";
import { EBUSY, EFAULT, EINVAL, ENODEV, ENOMEM, EOVERFLOW, EPERM } from "../../src/uapi/errno.js";
import { bytes, M2, machine, memfdCreate, P, RW, syscalls } from "./helpers.js";

const {
  F_SEAL_GROW,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MAP_FIXED,
  MAP_HUGETLB,
  MAP_PRIVATE,
  MAP_SHARED,
  MFD_ALLOW_SEALING,
  MFD_HUGE_2MB,
  MFD_HUGETLB,
  PROT_READ,
} = mman;

describe("memfd", () => {
  it("two processes sharing a memfd see the same bytes and frames", () => {
    const { newMm, pages } = machine();
    const f = syscalls(new MemFile(pages, "shared", 0));
    expect(f.ftruncate(4n * P)).toBe(0);
    const a = newMm();
    const b = newMm({ uid: 1001 });
    const va = a.mmap(0n, 4n * P, RW, MAP_SHARED, f, 0n);
    const vb = b.mmap(0n, 2n * P, RW, MAP_SHARED, f, 2n * P);
    expect(a.write(va + 2n * P + 10n, bytes(100, 1))).toBe(0);
    expect(b.read(vb + 10n, 100)).toEqual(bytes(100, 1));
    expect(b.write(vb + P, bytes(10, 2))).toBe(0);
    expect(a.read(va + 3n * P, 10)).toEqual(bytes(10, 2));
    expect(a.translate(va + 3n * P)).toBe(b.translate(vb + P));
    // pread/pwrite see the same page cache
    expect(f.read(3n * P, 10)).toEqual(bytes(10, 2));
    expect(f.write(5n, bytes(3, 3))).toBe(3);
    expect(a.read(va + 5n, 3)).toEqual(bytes(3, 3));
    expect(f.refCount).toBe(3);
    a.release();
    b.release();
    expect(f.refCount).toBe(1);
    expect(f.read(2n * P + 10n, 100)).toEqual(bytes(100, 1)); // the file keeps its pages
    f.put();
    expect(pages.counters()).toMatchObject({ ownedFrames: 0, memFiles: 0 });
  });

  it("a private mapping copies on write and sees the file until then", () => {
    const { newMm, pages } = machine();
    const f = syscalls(new MemFile(pages, "cow", 0));
    f.ftruncate(2n * P);
    f.write(0n, bytes(2 * 4096, 4));
    const a = newMm();
    const priv = a.mmap(0n, 2n * P, RW, MAP_PRIVATE, f, 0n);
    const filePa = a.translate(priv)!;
    expect(a.read(priv, 16)).toEqual(bytes(16, 4));
    expect(a.write(priv, new Uint8Array([0xee]))).toBe(0);
    expect(a.translate(priv)).not.toBe(filePa);
    expect(f.read(0n, 1)).toEqual(bytes(1, 4)); // the file is untouched
    expect(a.read(priv, 2)).toEqual(new Uint8Array([0xee, bytes(2, 4)[1]]));
    // the untouched second page still follows the file
    f.write(P, new Uint8Array([0x55]));
    expect(a.read(priv + P, 1)).toEqual(new Uint8Array([0x55]));
    a.release();
    f.put();
    expect(pages.counters().ownedFrames).toBe(0);
  });

  it("ftruncate shrink drops pages (also COWed ones past EOF); access past EOF faults", () => {
    const { newMm, pages, frames } = machine();
    const f = syscalls(new MemFile(pages, "trunc", 0));
    f.ftruncate(4n * P);
    const a = newMm();
    const sh = a.mmap(0n, 4n * P, RW, MAP_SHARED, f, 0n);
    const pr = a.mmap(0n, 4n * P, RW, MAP_PRIVATE, f, 0n);
    a.write(sh, bytes(4 * 4096, 5));
    a.write(pr + 3n * P, new Uint8Array([1]));
    expect(f.cachedFolios).toBe(4);
    const used = frames.counters().usedFrames;
    expect(f.ftruncate(P + 100n)).toBe(0);
    expect(f.cachedFolios).toBe(2);
    expect(frames.counters().usedFrames).toBe(used - 3); // 2 file pages + 1 COW copy
    expect(a.read(sh + 2n * P, 1)).toBe(-EFAULT);
    expect(a.read(pr + 3n * P, 1)).toBe(-EFAULT);
    expect(a.read(sh + P + 100n, 8)).toEqual(new Uint8Array(8)); // tail of the last page zeroed
    expect(a.read(sh + P, 100)).toEqual(bytes(4 * 4096, 5).subarray(4096, 4196));
    expect(a.pinUserPages(sh + 2n * P, 1, false)).toBe(-EFAULT);
    // growing again gives zeroed pages
    expect(f.ftruncate(4n * P)).toBe(0);
    expect(a.read(sh + 3n * P, 4)).toEqual(new Uint8Array(4));
    a.release();
    f.put();
  });

  it("a page pinned through the file survives truncation until unpinned", () => {
    const { pages, frames } = machine();
    const base = frames.counters().usedFrames;
    const f = syscalls(new MemFile(pages, "pin", 0));
    f.ftruncate(2n * P);
    const runs = f.pinPages(0, 2, true);
    if (typeof runs === "number") throw new Error("pin failed");
    expect(runs.pages).toBe(2);
    f.ftruncate(0n);
    expect(f.cachedFolios).toBe(0);
    expect(frames.counters().usedFrames).toBe(base + 2);
    expect(pages.totalPinnedPages()).toBe(2);
    f.unpinPages(runs);
    expect(frames.counters().usedFrames).toBe(base);
    f.put();
  });

  it("pinPages: EINVAL past EOF, all-or-nothing on injected failure", () => {
    const { pages, faults, snapshot } = machine();
    const f = syscalls(new MemFile(pages, "p", 0));
    f.ftruncate(8n * P);
    expect(f.pinPages(6, 3, false)).toBe(-EINVAL);
    const before = snapshot();
    for (let n = 1; ; n++) {
      faults.arm(n);
      const r = f.pinPages(0, 8, true);
      faults.disarm();
      if (typeof r !== "number") {
        expect(r.pages).toBe(8);
        f.unpinPages(r);
        break;
      }
      expect(r).toBe(-ENOMEM);
      expect(snapshot()).toEqual(before);
      expect(f.cachedFolios).toBe(0);
    }
    f.put();
    expect(pages.counters().ownedFrames).toBe(0);
  });

  it("hugetlb memfd: aligned sizes, whole folios, shared across processes", () => {
    const { newMm, pages, frames } = machine(512n << 20n);
    expect(memfdCreate(pages, "bad", MFD_HUGETLB | (25 << 26))).toBe(-ENODEV);
    const f = memfdCreate(pages, "huge", MFD_HUGETLB | MFD_HUGE_2MB) as MemFile;
    expect(f.hugetlb).toBe(true);
    expect(f.ftruncate(P)).toBe(-EINVAL);
    expect(f.ftruncate(2n * M2)).toBe(0);
    const a = newMm();
    const b = newMm();
    expect(a.mmap(0n, M2, RW, MAP_SHARED, f, P)).toBe(BigInt(-EINVAL)); // offset not huge aligned
    const va = a.mmap(0n, 2n * M2, RW, MAP_SHARED, f, 0n);
    const vb = b.mmap(0n, M2, RW, MAP_SHARED, f, M2);
    expect(va % M2).toBe(0n);
    expect(a.write(va + M2 + 7n, bytes(5, 6))).toBe(0);
    expect(frames.counters().huge2m).toBe(1);
    expect(b.read(vb + 7n, 5)).toEqual(bytes(5, 6));
    const runs = f.pinPages(0, 1024, false);
    if (typeof runs === "number") throw new Error("pin failed");
    expect(runs.count).toBeLessThanOrEqual(2);
    expect(runs.pages).toBe(1024);
    expect(frames.counters().huge2m).toBe(2);
    a.release();
    b.release();
    f.put();
    expect(frames.counters().huge2m).toBe(2); // pinned folios outlive the file
    pages.unpinRuns(runs);
    expect(frames.counters().huge2m).toBe(0);
    expect(pages.counters().memFiles).toBe(0);
  });

  it("a writable hugetlb mapping extends the file; MAP_HUGETLB on a shmem memfd is EINVAL", () => {
    const { newMm, pages } = machine(512n << 20n);
    const f = syscalls(new MemFile(pages, "h", MFD_HUGETLB));
    const a = newMm();
    const va = a.mmap(0n, M2, RW, MAP_SHARED, f, 0n);
    expect(f.size).toBe(M2);
    expect(a.write(va, new Uint8Array([1]))).toBe(0);
    const s = syscalls(new MemFile(pages, "s", 0));
    expect(a.mmap(0n, P, RW, MAP_SHARED | MAP_HUGETLB, s, 0n)).toBe(BigInt(-EINVAL));
    expect(a.mmap(0n, P, RW, MAP_SHARED, s, (1n << 63n) - P)).toBe(BigInt(-EOVERFLOW));
    a.release();
    f.put();
    s.put();
  });

  it("a private mapping of a hugetlb memfd copies a whole folio on write", () => {
    const { newMm, pages, frames } = machine(512n << 20n);
    const f = syscalls(new MemFile(pages, "hp", MFD_HUGETLB));
    f.ftruncate(M2);
    const a = newMm();
    const sh = a.mmap(0n, M2, RW, MAP_SHARED, f, 0n);
    const pr = a.mmap(0n, 1n, RW, MAP_PRIVATE, f, 0n);
    a.write(sh + M2 - 8n, bytes(8, 7));
    expect(a.read(pr + M2 - 8n, 8)).toEqual(bytes(8, 7));
    expect(a.write(pr, new Uint8Array([0xaa]))).toBe(0);
    expect(frames.counters().huge2m).toBe(2);
    expect(a.read(sh, 1)).toEqual(new Uint8Array([0]));
    expect(a.read(pr + M2 - 8n, 8)).toEqual(bytes(8, 7)); // copied with the folio
    expect(a.translate(pr)! % M2).toBe(0n);
    a.release();
    f.put();
    expect(frames.counters().huge2m).toBe(0);
  });

  it("seals", () => {
    const { newMm, pages } = machine();
    const locked = syscalls(new MemFile(pages, "nos", 0));
    expect(locked.addSeals(F_SEAL_SHRINK)).toBe(-EPERM);
    const f = syscalls(new MemFile(pages, "s", MFD_ALLOW_SEALING));
    f.ftruncate(2n * P);
    const a = newMm();
    const va = a.mmap(0n, 2n * P, RW, MAP_SHARED, f, 0n);
    expect(f.addSeals(F_SEAL_WRITE)).toBe(-EBUSY);
    a.munmap(va, 2n * P);
    const r = f.pinPages(0, 1, false);
    expect(f.addSeals(F_SEAL_WRITE)).toBe(-EBUSY);
    if (typeof r !== "number") f.unpinPages(r);
    expect(f.addSeals(F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)).toBe(0);
    expect(a.mmap(0n, P, RW, MAP_SHARED, f, 0n)).toBe(BigInt(-EPERM));
    expect(a.mmap(0n, P, PROT_READ, MAP_SHARED, f, 0n) > 0n).toBe(true);
    expect(a.mmap(0n, P, RW, MAP_PRIVATE, f, 0n) > 0n).toBe(true);
    expect(f.ftruncate(P)).toBe(-EPERM);
    expect(f.ftruncate(4n * P)).toBe(-EPERM);
    expect(f.write(0n, new Uint8Array([1]))).toBe(-EPERM);
    a.release();
    f.put();
    locked.put();
  });

  it("file refs: MAP_FIXED over a file mapping drops its reference", () => {
    const { newMm, pages } = machine();
    const f = syscalls(new MemFile(pages, "r", 0));
    f.ftruncate(4n * P);
    const a = newMm();
    const va = a.mmap(0n, 4n * P, RW, MAP_SHARED, f, 0n);
    a.munmap(va + P, P); // split: two VMAs, two refs
    expect(f.refCount).toBe(3);
    expect(a.maps().map((v) => v.offset)).toEqual([0n, 2n * P]);
    a.mmap(va, 4n * P, RW, MAP_PRIVATE | mman.MAP_ANONYMOUS | MAP_FIXED, null, 0n);
    expect(f.refCount).toBe(1);
    f.put();
    expect(pages.counters().memFiles).toBe(0);
    a.release();
  });

  it("runs of a shmem pin list each page", () => {
    const { pages } = machine();
    const f = syscalls(new MemFile(pages, "x", 0));
    f.ftruncate(3n * P);
    const r = f.pinPages(0, 3, true);
    if (typeof r === "number") throw new Error("pin failed");
    const pfns = runsToArray(r);
    expect(pfns.length).toBe(3);
    for (const p of pfns) expect(pages.pinCount(p)).toBe(1);
    f.unpinPages(r);
    f.put();
  });
});
