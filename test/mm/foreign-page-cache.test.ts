// The page cache of real shared files behind the exec bridge: a file page is one frame whoever
// reaches it (IOAS_MAP_FILE of the file, each process's MAP_SHARED mapping of it), its bytes are
// the file's, and when the last holder lets go of a pinned page the frame keeps a copy.
import { expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { ForeignFile, ForeignMemory, ForeignMm } from "../../src/mm/index.js";

const KEY = "00:01 4242";
const PAGE = 4096;

/** A 3-page shmem file and a process mapping it MAP_SHARED at `va` from file page 1 (maps offset 0x1000). */
function world(va: number) {
  const bytes = new Uint8Array(3 * PAGE);
  let open = true;
  const file: ForeignFile = {
    read: (off, len) => bytes.slice(off, Math.min(off + len, bytes.length)),
    write: (off, b) => {
      bytes.set(b, off);
      return b.length;
    },
    size: () => BigInt(bytes.length),
    close: () => {
      open = false;
    },
  };
  const mem = (base: number): ForeignMemory => ({
    read: (a, len) =>
      a < base || a + len > base + 2 * PAGE ? -14 : bytes.slice(a - base + PAGE, a - base + PAGE + len),
    write: (a, b) => {
      if (a < base || a + b.length > base + 2 * PAGE) return -14;
      bytes.set(b, a - base + PAGE);
      return 0;
    },
    vma: (a) =>
      a >= base && a < base + 2 * PAGE
        ? { start: base, end: base + 2 * PAGE, read: true, write: true, io: false, shared: KEY, pgoff: 1 }
        : undefined,
  });
  return { bytes, file, mem: mem(va), isOpen: () => open };
}

it("MAP_FILE's pin of a file page and a process's pin of its MAP_SHARED mapping of that page are one frame with the file's bytes", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const w = world(0x40000000);
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: w.mem });
  const mm = p.task.mm as unknown as ForeignMm;
  const mf = m.newForeignMemFile("ram", w.file, KEY);
  const fr = mf.pinPages(1, 2, true);
  // the process's page at 0x40000000 is file page 1: translate finds the file's frame without taking it
  expect(mm.translate(0x40000000n)).toBe(BigInt(mf.pfnAt(1)) * BigInt(PAGE));
  const pr = mm.pinUserPages(0x40001000n, 1, true);
  const pfn2 = pr.pfn[0];
  expect(pfn2).toBe(mf.pfnAt(2));
  expect(mf.pfnAt(1)).not.toBe(pfn2);
  // a DMA write to the frame lands in the file; the file's bytes are what the device reads
  m.phys.write(pfn2 * PAGE, new TextEncoder().encode("dma"));
  expect(new TextDecoder().decode(w.bytes.slice(2 * PAGE, 2 * PAGE + 3))).toBe("dma");
  w.bytes.set(new TextEncoder().encode("cpu"), 2 * PAGE + 8);
  expect(new TextDecoder().decode(m.debug.readPhys(BigInt(pfn2 * PAGE + 8), 3))).toBe("cpu");
  // the file goes (the program closed it, the area was unmapped): the process still holds page 2
  mf.unpinPages(fr);
  mf.put();
  expect(w.isOpen()).toBe(false);
  w.bytes.set(new TextEncoder().encode("still live"), 2 * PAGE + 16);
  expect(new TextDecoder().decode(m.debug.readPhys(BigInt(pfn2 * PAGE + 16), 10))).toBe("still live");
  // the process exits with the page pinned: the frame keeps a copy, the file no longer changes it
  p.exit();
  w.bytes.fill(0);
  expect(new TextDecoder().decode(m.debug.readPhys(BigInt(pfn2 * PAGE + 16), 10))).toBe("still live");
  expect(m.debug.counters().pinnedPages).toBe(1);
  mm.unpinUserPages(pr);
  expect(m.debug.counters()).toEqual(base);
});

it("two processes mapping the same file page at different addresses pin one frame; an unpinned page is dropped without a copy", () => {
  const m = new Machine({ iommu: "mock" });
  const base = m.debug.counters();
  const a = world(0x40000000);
  const b = world(0x50000000);
  const pa = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: a.mem });
  const pb = m.spawn({ caps: ["CAP_IPC_LOCK"], foreignMemory: b.mem });
  const mma = pa.task.mm as unknown as ForeignMm;
  const mmb = pb.task.mm as unknown as ForeignMm;
  const ra = mma.pinUserPages(0x40000000n, 2, true);
  const rb = mmb.pinUserPages(0x50000000n, 2, true);
  expect([...rb.pfn.slice(0, rb.count)]).toEqual([...ra.pfn.slice(0, ra.count)]);
  expect(m.debug.counters().pinnedPages).toBe(4);
  mma.unpinUserPages(ra);
  mmb.unpinUserPages(rb);
  pa.exit();
  pb.exit();
  expect(m.debug.counters()).toEqual(base);
});
