// The exec bridge's real-process memory (ForeignMm): MAP_HUGETLB pages are pinned as
// physically contiguous 2 MiB folios, so a domain maps them with large IOPTEs as the kernel
// would (the kselftests' huge dirty-tracking variants depend on it); other memory stays 4 KiB.
import { expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { ForeignMemory, ForeignMm, ForeignVma } from "../../src/mm/foreign-mm.js";

const M2 = 2 << 20;

/** A fake process: a 2 MiB hugetlb mapping at 0x40000000 and a 2 MiB plain one after it. */
function fakeMemory(): ForeignMemory {
  const bytes = new Uint8Array(2 * M2);
  const vmas: ForeignVma[] = [
    { start: 0x40000000, end: 0x40000000 + M2, read: true, write: true, io: false, hugetlb: true },
    { start: 0x40000000 + M2, end: 0x40000000 + 2 * M2, read: true, write: true, io: false },
  ];
  const at = (va: number) => va - 0x40000000;
  return {
    read: (va, len) => (at(va) < 0 || at(va) + len > bytes.length ? -14 : bytes.slice(at(va), at(va) + len)),
    write: (va, b) => {
      if (at(va) < 0 || at(va) + b.length > bytes.length) return -14;
      bytes.set(b, at(va));
      return 0;
    },
    vma: (va) => vmas.find((v) => va >= v.start && va < v.end),
  };
}

it("hugetlb pages of a real process pin as one contiguous 2 MiB folio; plain pages one by one; exit frees them", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: fakeMemory() });
  const mm = p.task.mm as unknown as ForeignMm;
  const huge = mm.pinUserPages(0x40000000n + 4096n, 511, true);
  if (typeof huge === "number") throw new Error(`pin ${huge}`);
  // one run, inside one 2 MiB-aligned folio, at the same offset as in the huge page
  expect(huge.count).toBe(1);
  expect(huge.pfn[0] % 512).toBe(1);
  expect(mm.translate(0x40000000n)).toBe(BigInt(huge.pfn[0] - 1) * 4096n);
  const plain = mm.pinUserPages(BigInt(0x40000000 + M2), 2, true);
  if (typeof plain === "number") throw new Error(`pin ${plain}`);
  expect(plain.pages).toBe(2);
  mm.unpinUserPages(huge);
  mm.unpinUserPages(plain);
  p.exit();
  expect(m.debug.counters()).toEqual(base);
});

/** A fake process with one ordinary 1 GiB-aligned mapping of `len` bytes at 0x40000000 (contents read as zero). */
function plainMemory(len: number): ForeignMemory {
  const vmas: ForeignVma[] = [
    { start: 0x40000000, end: 0x40000000 + len, read: true, write: true, io: false },
  ];
  return {
    read: (_va, n) => new Uint8Array(n),
    write: () => 0,
    vma: (va) => vmas.find((v) => va >= v.start && va < v.end),
  };
}

it("model-backed hugetlb (the host had no huge pages): 1 GiB and 2 MiB ranges pin as one folio of their size", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const G = 1 << 30;
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: plainMemory(G + 2 * M2) });
  const mm = p.task.mm as unknown as ForeignMm;
  expect(mm.mapEmulatedHugetlb(0x40000000, G, 18, false)).toBe(0);
  expect(mm.mapEmulatedHugetlb(0x40000000 + G, 2 * M2, 9, false)).toBe(0);
  const g = mm.pinUserPages(0x40000000n, G / 4096, true);
  expect(g.count).toBe(1);
  expect(g.pfn[0] % (G / 4096)).toBe(0);
  const h = mm.pinUserPages(BigInt(0x40000000 + G + M2), 2, true);
  expect(h.count).toBe(1);
  expect(h.pfn[0] % 512).toBe(0);
  mm.unpinUserPages(g);
  mm.unpinUserPages(h);
  mm.detach(0x40000000n, BigInt(G + 2 * M2));
  mm.unmapEmulatedHugetlb(0x40000000, G + 2 * M2);
  p.exit();
  expect(m.debug.counters()).toEqual(base);
});

it("model-backed hugetlb reserves from the model's pool: ENOMEM with nothing changed when it cannot, the reservation back at unmap", () => {
  const m = new Machine({ iommu: "mock", hugepages: { "2M": 2 } });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: plainMemory(4 * M2) });
  const mm = p.task.mm as unknown as ForeignMm;
  const h = mm.pages.h2m;
  expect(() => mm.mapEmulatedHugetlb(0x40000000, 3 * M2, 9, false)).toThrow(/cannot reserve 3 page/);
  expect([h.free, h.resv]).toEqual([2, 0]);
  expect(mm.mapEmulatedHugetlb(0x40000000, 2 * M2, 9, false)).toBe(0);
  expect([h.free, h.resv]).toEqual([2, 2]);
  // a fault (the pin) consumes one reservation; unmapping gives the other back
  const r = mm.pinUserPages(0x40000000n, 1, true);
  expect([h.free, h.resv]).toEqual([1, 1]);
  mm.unpinUserPages(r);
  mm.detach(0x40000000n, BigInt(2 * M2));
  mm.unmapEmulatedHugetlb(0x40000000, 2 * M2);
  expect([h.free, h.resv]).toEqual([2, 0]);
  // MAP_NORESERVE reserves nothing
  expect(mm.mapEmulatedHugetlb(0x40000000, 4 * M2, 9, true)).toBe(0);
  expect(h.resv).toBe(0);
  p.exit();
  expect([h.free, h.resv]).toEqual([2, 0]);
});

it("a 1 GiB hugetlb vma (KernelPageSize 1 GiB) pins as one contiguous, aligned 1 GiB folio", () => {
  const G1 = 1 << 30;
  const base = 0x40000000 * 4;
  const vma: ForeignVma = {
    start: base,
    end: base + G1,
    read: true,
    write: true,
    io: false,
    hugetlb: true,
    hugeShift: 30,
  };
  const mem: ForeignMemory = {
    read: (va, len) => (va < base || va + len > base + G1 ? -14 : new Uint8Array(len)),
    write: (va, b) => (va < base || va + b.length > base + G1 ? -14 : 0),
    vma: (va) => (va >= vma.start && va < vma.end ? vma : undefined),
  };
  const m = new Machine({ iommu: "mock", memoryBytes: 3n << 30n });
  const before = m.debug.counters();
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: mem });
  const mm = p.task.mm as unknown as ForeignMm;
  const r = mm.pinUserPages(BigInt(base) + 5n * 4096n, 3, true);
  if (typeof r === "number") throw new Error(`pin ${r}`);
  expect(r.count).toBe(1);
  // the folio is 1 GiB-aligned in physical memory and the page keeps its offset in it
  expect(r.pfn[0] % 262144).toBe(5);
  expect(mm.translate(BigInt(base) + BigInt(G1) - 4096n)).toBe(BigInt(r.pfn[0] - 5 + 262143) * 4096n);
  mm.unpinUserPages(r);
  p.exit();
  expect(m.debug.counters()).toEqual(before);
});
