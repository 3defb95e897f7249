// Pins of a real process's memory behind the exec bridge (ForeignMm): each
// pinned frame is a page of the process (PhysMem.external by source and page
// number, no object per page), munmap leaves a pinned frame a copy, and a
// MAP_SHARED page another process of the family still maps stays live there.
import { expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import type { ForeignMemory, ForeignMm, ForeignVma } from "../../src/mm/foreign-mm.js";

const BASE = 0x40000000;
const LEN = 4 << 20;
const PAGES = LEN / 4096;

/** A process's view of one mapping of LEN bytes at BASE over `bytes` (shared: a MAP_SHARED key). */
function procMemory(bytes: Uint8Array, shared?: string): ForeignMemory & { gone: boolean } {
  const v: ForeignVma = { start: BASE, end: BASE + LEN, read: true, write: true, io: false };
  if (shared !== undefined) v.shared = shared;
  const mem = {
    gone: false,
    read: (va: number, n: number) =>
      mem.gone || va < BASE || va + n > BASE + LEN ? -14 : bytes.slice(va - BASE, va - BASE + n),
    write: (va: number, b: Uint8Array) => {
      if (mem.gone || va < BASE || va + b.length > BASE + LEN) return -14;
      bytes.set(b, va - BASE);
      return 0;
    },
    vma: (va: number) => (!mem.gone && va >= BASE && va < BASE + LEN ? { ...v } : undefined),
  };
  return mem;
}

function pattern(): Uint8Array {
  const b = new Uint8Array(LEN);
  for (let i = 0; i < LEN; i += 4096) new DataView(b.buffer).setUint32(i, i / 4096 + 1, true);
  return b;
}

const mmOf = (p: Process) => p.task.mm as unknown as ForeignMm;

it("pinned frames are the process's pages; munmap leaves each a copy, unpin frees all", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const bytes = pattern();
  const mem = procMemory(bytes);
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: mem });
  const mm = mmOf(p);
  const runs = mm.pinUserPages(BigInt(BASE), PAGES, true);
  expect(runs.pages).toBe(PAGES);
  expect(mm.attachedPages()).toBe(PAGES);
  expect(mm.pinnedPagesHere()).toBe(PAGES);
  expect(m.phys.external.size).toBe(PAGES);
  // page 700's frame reads the process's page and a device write lands in it
  const pfn = Number(mm.translate(BigInt(BASE + 700 * 4096))! / 4096n);
  expect(new DataView(m.phys.read(pfn * 4096, 4).buffer).getUint32(0, true)).toBe(701);
  m.phys.write(pfn * 4096 + 8, new Uint8Array([0xab]));
  expect(bytes[700 * 4096 + 8]).toBe(0xab);
  // the same page pinned again is the same frame
  expect(mm.pinUserPages(BigInt(BASE + 700 * 4096), 1, true).pfn[0]).toBe(pfn);
  mm.unpinUserPages(mm.pinUserPages(BigInt(BASE + 700 * 4096), 1, true));
  mm.unpinUserPages({ pfn: new Float64Array([pfn]), len: new Float64Array([1]), count: 1, pages: 1 });

  // munmap of the middle half: those frames keep a copy and stop following the process
  mm.detach(BigInt(BASE + LEN / 4), BigInt(LEN / 2));
  expect(mm.attachedPages()).toBe(PAGES / 2);
  expect(m.phys.external.size).toBe(PAGES / 2);
  bytes[700 * 4096 + 8] = 0x11;
  expect(m.phys.read(pfn * 4096 + 8, 1)[0]).toBe(0xab);
  expect(mm.translate(BigInt(BASE + 700 * 4096))).toBeNull();
  mm.unpinUserPages(runs);
  mm.detach(BigInt(BASE), BigInt(LEN));
  expect(mm.attachedPages()).toBe(0);
  p.exit();
  expect(m.phys.external.size).toBe(0);
  expect(m.debug.counters()).toEqual(base);
});

it("a MAP_SHARED page the forked child still maps stays live through the child when the parent unmaps it", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const bytes = pattern();
  const key = "00:01 4242";
  const parentMem = procMemory(bytes, key);
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: parentMem });
  const c = p.fork();
  if (typeof c === "number") throw new Error(`fork ${c}`);
  const childMem = procMemory(bytes, key);
  mmOf(c).attach(childMem);
  const runs = mmOf(p).pinUserPages(BigInt(BASE), PAGES, true);
  // the parent's munmap: the mapping leaves its /proc/PID/maps, then the model hears of it
  parentMem.gone = true;
  mmOf(p).detach(BigInt(BASE), BigInt(LEN));
  expect(mmOf(p).hasAttached()).toBe(false);
  expect(mmOf(c).hasAttached()).toBe(true);
  // every frame still is the shared page: device writes reach it, the process's stores show
  for (const page of [0, 511, 512, PAGES - 1]) {
    const pfn = runsPfn(runs, page);
    m.phys.write(pfn * 4096 + 16, new Uint8Array([page & 0xff, 0x5a]));
    expect(bytes[page * 4096 + 16]).toBe(page & 0xff);
    bytes[page * 4096 + 20] = 0x77;
    expect(m.phys.read(pfn * 4096 + 20, 1)[0]).toBe(0x77);
  }
  // the child's exit: the frames take their copies and live on while pinned
  c.exit();
  childMem.gone = true;
  expect(m.phys.external.size).toBe(0);
  expect(m.phys.read(runsPfn(runs, 511) * 4096 + 16, 2)).toEqual(new Uint8Array([0xff, 0x5a]));
  mmOf(p).unpinUserPages(runs);
  p.exit();
  expect(m.debug.counters()).toEqual(base);
});

function runsPfn(runs: { pfn: Float64Array; len: Float64Array; count: number }, index: number): number {
  for (let i = 0; i < runs.count; i++) {
    if (index < runs.len[i]) return runs.pfn[i] + index;
    index -= runs.len[i];
  }
  return -1;
}
