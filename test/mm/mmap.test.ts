import { describe, expect, it } from "vitest";
import { MemFile, mman } from "../../src/mm/index.js";
import { EEXIST, EINVAL, ENOMEM, EPERM } from "../../src/uapi/errno.js";
import { bytes, G1, M2, machine, P, RW } from "./helpers.js";

const {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_HUGE_1GB,
  MAP_HUGE_2MB,
  MAP_HUGETLB,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_POPULATE,
  MAP_SHARED_VALIDATE,
  PROT_READ,
  TASK_SIZE,
} = mman;
const ANON = MAP_PRIVATE | MAP_ANONYMOUS;

describe("mmap argument checks", () => {
  const { newMm } = machine();
  const mm = newMm();

  it.each([
    ["zero length", 0n, 0n, ANON, 0n, -EINVAL],
    ["neither SHARED nor PRIVATE", 0n, P, MAP_ANONYMOUS, 0n, -EINVAL],
    ["both SHARED and PRIVATE (anonymous)", 0n, P, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, 0n, -EINVAL],
    ["offset not page aligned", 0n, P, ANON, 100n, -EINVAL],
    ["MAP_FIXED with unaligned address", 0x10000001n, P, ANON | MAP_FIXED, 0n, -EINVAL],
    ["length overflows page alignment", 0n, (1n << 64n) - 1n, ANON, 0n, -ENOMEM],
    ["length larger than the address space", 0n, 1n << 50n, ANON, 0n, -ENOMEM],
    ["MAP_FIXED beyond TASK_SIZE", BigInt(TASK_SIZE), P, ANON | MAP_FIXED, 0n, -ENOMEM],
    ["MAP_FIXED below mmap_min_addr", 0n, P, ANON | MAP_FIXED, 0n, -EPERM],
    ["bad MAP_HUGE size", 0n, M2, ANON | MAP_HUGETLB | (16 << 26), 0n, -EINVAL],
    ["hugetlb MAP_FIXED not huge aligned", 0x40001000n, M2, ANON | MAP_HUGETLB | MAP_FIXED, 0n, -EINVAL],
  ])("%s", (_name, addr, len, flags, off, want) => {
    const before = mm.maps().length;
    expect(mm.mmap(addr, len, RW, flags, null, off)).toBe(BigInt(want));
    expect(mm.maps().length).toBe(before);
    expect(mm.lastReason).not.toBe("");
  });

  it("an anonymous mapping ignores its offset, even a huge one (pgoff does not wrap)", () => {
    const { newMm } = machine();
    expect(newMm().mmap(0n, 2n * P, RW, ANON, null, (1n << 64n) - P) > 0n).toBe(true);
  });

  it("ignores a file given with MAP_ANONYMOUS", () => {
    const { newMm, pages } = machine();
    const m = newMm();
    const f = new MemFile(pages, "f", 0);
    const va = m.mmap(0n, P, RW, ANON, f, 0n);
    expect(va > 0n).toBe(true);
    expect(m.maps()[0].file).toBeNull();
    expect(f.refCount).toBe(1);
    f.put();
    expect(pages.counters().memFiles).toBe(0);
  });

  it("MAP_FIXED_NOREPLACE over a mapping is EEXIST and changes nothing", () => {
    const { newMm } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, ANON, null, 0n);
    expect(m.write(va, bytes(16, 1))).toBe(0);
    expect(m.mmap(va + P, P, RW, ANON | MAP_FIXED_NOREPLACE, null, 0n)).toBe(BigInt(-EEXIST));
    expect(m.read(va, 16)).toEqual(bytes(16, 1));
    // next to it, free space: fine
    expect(m.mmap(va + 4n * P, P, RW, ANON | MAP_FIXED_NOREPLACE, null, 0n)).toBe(va + 4n * P);
  });

  it("MAP_FIXED replaces what was there (the old pages are dropped)", () => {
    const { newMm, frames } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, ANON, null, 0n);
    m.write(va, bytes(4 * 4096, 2));
    const used = frames.counters().usedFrames;
    expect(m.mmap(va + P, 2n * P, RW, ANON | MAP_FIXED, null, 0n)).toBe(va + P);
    expect(frames.counters().usedFrames).toBe(used - 2);
    expect(m.read(va + P, 8)).toEqual(new Uint8Array(8));
    expect(m.read(va, 8)).toEqual(bytes(4 * 4096, 2).subarray(0, 8));
    expect(m.maps().length).toBe(3);
  });

  it("rounds a hugetlb length up to the huge page size", () => {
    const { newMm } = machine(512n << 20n);
    const m = newMm();
    const va = m.mmap(0n, P, RW, ANON | MAP_HUGETLB | MAP_HUGE_2MB, null, 0n);
    expect(va % M2).toBe(0n);
    const v = m.maps()[0];
    expect(v.end - v.start).toBe(M2);
    expect(v.pageSize).toBe(2 << 20);
  });
});

describe("placement", () => {
  it("is top-down below mmap_base and deterministic", () => {
    const run = (seed?: number) => {
      const { newMm } = machine();
      const m = newMm({ seed });
      return [m.mmap(0n, P, RW, ANON, null, 0n), m.mmap(0n, 3n * P, RW, ANON, null, 0n), BigInt(m.mmapBase)];
    };
    const [a, b, base] = run();
    expect(base).toBe(0x7ffff7fff000n);
    expect(a).toBe(base - P);
    expect(b).toBe(a - 3n * P);
    expect(run()).toEqual(run());
    const r1 = run(1);
    expect(r1).toEqual(run(1));
    expect(r1[2]).not.toBe(run(2)[2]);
    expect(r1[2] < 0x7ffff7fff000n && r1[2] > 0x7e0000000000n).toBe(true);
  });

  it("aligns huge mappings to their page size and reuses holes", () => {
    const { newMm } = machine(4n << 30n);
    const m = newMm();
    const a = m.mmap(0n, P, RW, ANON, null, 0n);
    const h2 = m.mmap(0n, M2, RW, ANON | MAP_HUGETLB | MAP_HUGE_2MB, null, 0n);
    const h1 = m.mmap(0n, G1, RW, ANON | MAP_HUGETLB | MAP_HUGE_1GB, null, 0n);
    expect(h2 % M2).toBe(0n);
    expect(h1 % G1).toBe(0n);
    expect(h2 + M2 <= a).toBe(true);
    expect(m.munmap(a, P)).toBe(0);
    expect(m.mmap(0n, P, RW, ANON, null, 0n)).toBe(a);
  });

  it("honours a free hint and ignores an occupied one", () => {
    const { newMm } = machine();
    const m = newMm();
    expect(m.mmap(0x10000000n, P, RW, ANON, null, 0n)).toBe(0x10000000n);
    const b = m.mmap(0x10000000n, P, RW, ANON, null, 0n);
    expect(b).not.toBe(0x10000000n);
    expect(b > 0n).toBe(true);
  });
});

describe("munmap", () => {
  const setup = () => {
    const t = machine();
    const m = t.newMm();
    const va = m.mmap(0n, 8n * P, RW, ANON, null, 0n);
    m.write(va, bytes(8 * 4096, 3));
    return { ...t, m, va, data: bytes(8 * 4096, 3) };
  };

  it("argument errors", () => {
    const { m, va } = setup();
    expect(m.munmap(va + 1n, P)).toBe(-EINVAL);
    expect(m.munmap(va, 0n)).toBe(-EINVAL);
    expect(m.munmap(BigInt(TASK_SIZE) - P, 2n * P)).toBe(-EINVAL);
    expect(m.munmap(0x1000n, P)).toBe(0); // nothing there: not an error
  });

  it("left, right and middle splits keep the rest intact", () => {
    const { m, va, data, frames } = setup();
    const used = frames.counters().usedFrames;
    expect(m.munmap(va, P)).toBe(0); // left
    expect(m.munmap(va + 7n * P, P)).toBe(0); // right
    expect(m.maps().length).toBe(1);
    expect(m.munmap(va + 3n * P, 2n * P)).toBe(0); // middle
    expect(m.maps().map((v) => [v.start - va, v.end - va])).toEqual([
      [P, 3n * P],
      [5n * P, 7n * P],
    ]);
    expect(frames.counters().usedFrames).toBe(used - 4);
    expect(m.read(va, 1)).toBe(-14);
    expect(m.read(va + 3n * P, 1)).toBe(-14);
    expect(m.read(va + P, 2 * 4096)).toEqual(data.subarray(4096, 3 * 4096));
    expect(m.read(va + 5n * P, 2 * 4096)).toEqual(data.subarray(5 * 4096, 7 * 4096));
    // an unaligned length is rounded up
    expect(m.munmap(va + P, 1n)).toBe(0);
    expect(m.read(va + 2n * P, 4)).toEqual(data.subarray(2 * 4096, 2 * 4096 + 4));
  });

  it("munmap across several VMAs and holes", () => {
    const { m, va } = setup();
    m.munmap(va + 2n * P, P);
    expect(m.munmap(va, 8n * P)).toBe(0);
    expect(m.maps().length).toBe(0);
  });

  it("hugetlb ranges must stay huge aligned", () => {
    const { newMm, frames } = machine(512n << 20n);
    const m = newMm();
    const va = m.mmap(0n, 2n * M2, RW, ANON | MAP_HUGETLB, null, 0n);
    m.write(va + M2 + 5n, bytes(8, 4));
    expect(frames.counters().huge2m).toBe(1);
    expect(m.munmap(va, P)).toBe(-EINVAL);
    expect(m.munmap(va + P, M2)).toBe(-EINVAL);
    expect(m.munmap(va, M2 + P)).toBe(-EINVAL);
    expect(m.maps().length).toBe(1);
    expect(m.munmap(va + M2, M2)).toBe(0);
    expect(frames.counters().huge2m).toBe(0);
    expect(m.munmap(va, M2 - 1n)).toBe(0); // rounded to a page, ends at the VMA end
    expect(m.maps().length).toBe(0);
  });
});

describe("first-touch allocation", () => {
  it("untouched pages cost nothing; reads of untouched anonymous pages do not allocate", () => {
    const { newMm, phys, frames } = machine();
    const m = newMm();
    const before = { r: phys.residentFrames, u: frames.counters().usedFrames };
    const va = m.mmap(0n, 1n << 30n, RW, ANON, null, 0n);
    expect(phys.residentFrames).toBe(before.r);
    expect(m.read(va + 12345n, 100)).toEqual(new Uint8Array(100));
    expect(frames.counters().usedFrames).toBe(before.u);
    expect(m.translate(va)).toBeNull();
    expect(m.write(va + 8191n, new Uint8Array([1, 2]))).toBe(0); // straddles two pages
    expect(frames.counters().usedFrames).toBe(before.u + 2);
    expect(phys.residentFrames).toBe(before.r + 2);
    const pa = m.translate(va + 8191n)!;
    expect(phys.read(Number(pa), 1)).toEqual(new Uint8Array([1]));
    m.release();
    expect(frames.counters().usedFrames).toBe(before.u);
    expect(phys.residentFrames).toBe(before.r);
  });

  it("a write to a PROT_READ mapping or to nothing is EFAULT and writes nothing", () => {
    const { newMm, frames } = machine();
    const m = newMm();
    const ro = m.mmap(0n, P, PROT_READ, ANON, null, 0n);
    const used = frames.counters().usedFrames;
    expect(m.write(ro, new Uint8Array([1]))).toBe(-14);
    const rw = m.mmap(ro - 2n * P, 2n * P, RW, ANON | MAP_FIXED, null, 0n);
    // the write would span rw and ro: nothing of it lands
    expect(m.write(rw + P + 4000n, new Uint8Array(200).fill(7))).toBe(-14);
    expect(frames.counters().usedFrames).toBe(used);
    expect(m.read(rw + P + 4000n, 4)).toEqual(new Uint8Array(4));
    const none = m.mmap(0n, P, 0, ANON, null, 0n);
    expect(m.read(none, 1)).toBe(-14);
  });

  it("MAP_POPULATE faults a writable private mapping in", () => {
    const { newMm, frames } = machine();
    const m = newMm();
    const used = frames.counters().usedFrames;
    m.mmap(0n, 4n * P, RW, ANON | MAP_POPULATE, null, 0n);
    expect(frames.counters().usedFrames).toBe(used + 4);
  });

  it("hugetlb 2M and 1G: whole folios allocated on first touch of any byte", () => {
    const { newMm, frames, phys } = machine(4n << 30n);
    const m = newMm();
    const h2 = m.mmap(0n, 4n * M2, RW, ANON | MAP_HUGETLB | MAP_HUGE_2MB, null, 0n);
    const h1 = m.mmap(0n, G1, RW, ANON | MAP_HUGETLB | MAP_HUGE_1GB, null, 0n);
    expect(frames.counters().huge2m).toBe(0);
    expect(m.read(h2 + M2 + 17n, 1)).toEqual(new Uint8Array(1)); // a read allocates too
    expect(frames.counters().huge2m).toBe(1);
    const pa = m.translate(h2 + M2)!;
    expect(pa % M2).toBe(0n);
    expect(m.translate(h2 + M2 + 0x1234n)).toBe(pa + 0x1234n);
    expect(m.write(h1 + G1 - 1n, new Uint8Array([9]))).toBe(0);
    expect(frames.counters().huge1g).toBe(1);
    const pa1 = m.translate(h1)!;
    expect(pa1 % G1).toBe(0n);
    expect(phys.read(Number(pa1 + G1 - 1n), 1)).toEqual(new Uint8Array([9]));
    m.release();
    expect(frames.counters().huge2m + frames.counters().huge1g).toBe(0);
  });

  it("hugetlb allocation failure is EFAULT for the process and leaves nothing", () => {
    const { newMm, frames } = machine(64n << 20n);
    const m = newMm();
    const h = m.mmap(0n, G1, RW, ANON | MAP_HUGETLB | MAP_HUGE_1GB, null, 0n);
    expect(h > 0n).toBe(true); // no reservation in the model: mmap succeeds
    expect(m.write(h, new Uint8Array([1]))).toBe(-14);
    expect(frames.counters().usedFrames).toBe(0);
  });

  it("shared anonymous memory is one set of pages across MAP_FIXED splits", () => {
    const { newMm, pages } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, MAP_SHARED | MAP_ANONYMOUS, null, 0n);
    expect(pages.counters().memFiles).toBe(1);
    m.write(va, bytes(4 * 4096, 5));
    expect(m.munmap(va + P, P)).toBe(0);
    expect(m.read(va + 2n * P, 4096)).toEqual(bytes(4 * 4096, 5).subarray(2 * 4096, 3 * 4096));
    m.release();
    expect(pages.counters().memFiles).toBe(0);
    expect(pages.counters().ownedFrames).toBe(0);
  });
});

describe("fail_nth", () => {
  it("mmap (MAP_FIXED over a mapping) is all-or-nothing at every fail point", () => {
    const { newMm, faults, snapshot } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, ANON, null, 0n);
    m.write(va, bytes(4 * 4096, 1));
    const before = snapshot();
    const maps = m.maps();
    let fired = 0;
    for (let n = 1; ; n++) {
      faults.arm(n);
      const r = m.mmap(va + P, 2n * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, null, 0n);
      faults.disarm();
      if (r > 0n) break;
      fired++;
      expect(r).toBe(BigInt(-ENOMEM));
      expect(snapshot()).toEqual(before);
      expect(m.maps()).toEqual(maps);
      expect(m.read(va, 4 * 4096)).toEqual(bytes(4 * 4096, 1));
    }
    expect(fired).toBe(2); // the VMA, the shmem file
    expect(m.read(va + P, 8)).toEqual(new Uint8Array(8));
  });

  it("a write that cannot fault its pages in writes nothing and allocates nothing", () => {
    const { newMm, faults, snapshot } = machine();
    const m = newMm();
    const va = m.mmap(0n, 4n * P, RW, ANON, null, 0n);
    const before = snapshot();
    for (let n = 1; ; n++) {
      faults.arm(n);
      const r = m.write(va + 100n, bytes(3 * 4096, 2));
      faults.disarm();
      if (r === 0) break;
      expect(r).toBe(-14);
      expect(snapshot()).toEqual(before);
      expect(m.counters().private4k).toBe(0);
    }
    expect(m.read(va + 100n, 3 * 4096)).toEqual(bytes(3 * 4096, 2));
  });
});
