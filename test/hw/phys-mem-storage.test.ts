import { describe, expect, it } from "vitest";
import { PhysMem } from "../../src/hw/phys-mem.js";

describe("PhysMem frame storage (slabs and the reuse pool)", () => {
  it("a discarded frame's storage comes back zeroed and never aliases a live frame", () => {
    const a = new PhysMem(1n << 30n, [[0, 1 << 18]]);
    const b = new PhysMem(1n << 30n, [[0, 1 << 18]]);
    const live: number[] = [];
    // enough frames to span several slabs, in two machines
    for (let i = 0; i < 100; i++) {
      a.frameU32(i * 3).fill(0x1000 + i);
      b.frameU8(i * 5)[7] = i;
      live.push(i * 3);
    }
    // free every other frame of a, then materialize new frames (reusing that storage)
    for (let i = 0; i < 100; i += 2) a.discard(i * 3);
    for (let i = 0; i < 50; i++) {
      const f = a.frameU32(1000 + i);
      expect(f.every((w) => w === 0)).toBe(true);
      expect(a.peekU8(1000 + i).every((x) => x === 0)).toBe(true);
      f.fill(0xdead0000 + i);
    }
    for (let i = 0; i < 100; i++) {
      if (i % 2 === 0) expect(a.isResident(i * 3)).toBe(false);
      else expect(a.peekU32(i * 3)!.every((w) => w === 0x1000 + i)).toBe(true);
      expect(b.peekU8(i * 5)[7]).toBe(i);
    }
    // the byte and word views of one frame are the same memory
    a.frameU8(2000)[4] = 0xab;
    expect(a.peekU32(2000)![1]).toBe(0xab);
    expect(a.residentFrames).toBe(50 + 50 + 1);
  });
});
