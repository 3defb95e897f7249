// PhysMem.external (ExternalFrames): frames whose bytes live outside the
// model, either as a frame object of their own or as a page of a source
// (a real process's memory behind the bridge), named by page number so a
// 1 GiB pin costs no object per page.
import { expect, it } from "vitest";
import { type ExternalSource, PhysMem } from "../../src/hw/phys-mem.js";

/** A source of `pages` pages of bytes, counting its reads. */
function source(pages: number): ExternalSource & { bytes: Uint8Array; reads: number } {
  const s = {
    bytes: new Uint8Array(pages * 4096),
    reads: 0,
    readAt(addr: number, len: number) {
      s.reads++;
      return s.bytes.slice(addr, addr + len);
    },
    writeAt(addr: number, b: Uint8Array) {
      s.bytes.set(b, addr);
    },
  };
  return s;
}

it("a source's page backs a frame: reads and writes at any offset go to that page; delete hands the frame back", () => {
  const mem = new PhysMem(1n << 30n, [[0, 1 << 18]]);
  const a = source(8);
  const b = source(8);
  mem.external.setPage(100, a, 3);
  mem.external.setPage(101, b, 5);
  expect(mem.external.size).toBe(2);
  // a write across the two frames: each part lands in its own source's page
  mem.write(100 * 4096 + 4094, new Uint8Array([1, 2, 3, 4]));
  expect([...a.bytes.subarray(3 * 4096 + 4094, 3 * 4096 + 4096)]).toEqual([1, 2]);
  expect([...b.bytes.subarray(5 * 4096, 5 * 4096 + 2)]).toEqual([3, 4]);
  a.bytes[3 * 4096 + 7] = 0x42;
  expect(mem.read(100 * 4096 + 7, 1)[0]).toBe(0x42);
  // nothing reached the model's own storage
  expect(mem.isResident(100) || mem.isResident(101)).toBe(false);
  // re-pointing a frame replaces, it does not add
  mem.external.setPage(100, b, 0);
  expect(mem.external.size).toBe(2);
  b.bytes[9] = 9;
  expect(mem.read(100 * 4096 + 9, 1)[0]).toBe(9);
  mem.external.delete(100);
  mem.external.delete(101);
  mem.external.delete(101);
  expect(mem.external.size).toBe(0);
  expect(mem.external.has(100)).toBe(false);
  // the frame is the model's again: zero, and writes go to its storage
  expect(mem.read(100 * 4096 + 9, 1)[0]).toBe(0);
  mem.write(100 * 4096, new Uint8Array([7]));
  expect(mem.isResident(100)).toBe(true);
  expect(b.bytes[0]).toBe(0);
});

it("a frame object and a source page can back frames side by side", () => {
  const mem = new PhysMem(1n << 30n, [[0, 1 << 18]]);
  const src = source(1);
  const seen: number[] = [];
  mem.external.set(7, {
    read: (off, len) => new Uint8Array(len).fill(off & 0xff),
    write: (off) => {
      seen.push(off);
    },
  });
  mem.external.setPage(8, src, 0);
  expect(mem.read(7 * 4096 + 5, 2)).toEqual(new Uint8Array([5, 5]));
  mem.write(7 * 4096 + 11, new Uint8Array([1]));
  expect(seen).toEqual([11]);
  // the object gives way to a source page at the same pfn
  mem.external.setPage(7, src, 0);
  src.bytes[3] = 0x33;
  expect(mem.read(7 * 4096 + 3, 1)[0]).toBe(0x33);
  expect(mem.read(8 * 4096 + 3, 1)[0]).toBe(0x33);
  expect(mem.external.size).toBe(2);
});
