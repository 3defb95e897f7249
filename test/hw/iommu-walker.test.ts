import { describe, expect, it } from "vitest";
import { FaultInject } from "../../src/hw/fault-inject.js";
import { FrameAllocator } from "../../src/hw/frame-alloc.js";
import { IommuWalker } from "../../src/hw/iommu-walker.js";
import { PhysMem } from "../../src/hw/phys-mem.js";

function env() {
  const mem = new PhysMem(1n << 30n, [[0, 2 ** 18]]);
  const alloc = new FrameAllocator(mem, 5, new FaultInject());
  const put = (pfn: number, idx: number, v: bigint, be = false) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, !be);
    mem.write(pfn * 4096 + idx * 8, b);
  };
  const get = (pfn: number, idx: number) => {
    const b = mem.read(pfn * 4096 + idx * 8, 8);
    return new DataView(b.buffer, b.byteOffset).getBigUint64(0, true);
  };
  return { mem, alloc, put, get, w: new IommuWalker(mem) };
}

const IRW = 3n << 61n;

describe("IommuWalker on hand-built tables", () => {
  it("AMDv1: level skipping, NL=7 sizes, IR/IW AND'ed, A/D with dirty tracking", () => {
    const { alloc, put, get, w } = env();
    const root = alloc.alloc4k();
    const l0 = alloc.alloc4k();
    // mode 3 root (level 2) entry 0 points straight at a level-0 table: NL = 1 (skips level 1)
    put(root, 0, (BigInt(l0) << 12n) | 1n | (1n << 9n) | IRW);
    put(l0, 3, 0x5000n | 1n | IRW);
    // 16K contiguous (NL=7, OA bit 12 set, bit 13 clear) read-only
    for (let k = 4; k < 8; k++) put(l0, k, 0x10000n | 0x1000n | 1n | (7n << 9n) | (1n << 61n));
    const ctx = { format: "amdv1" as const, rootPfn: root, topLevel: 2, dirtyTracking: true };
    expect(w.translate(ctx, 0x3123n, "read")).toEqual({ pa: 0x5123n });
    expect(w.translate(ctx, 0x6010n, "read")).toEqual({ pa: 0x12010n });
    expect(w.translate(ctx, 0x6010n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // a VA whose skipped level-1 index is not 0
    expect(w.translate(ctx, 0x200000n, "read")).toEqual({ fault: { reason: "not_present", level: 1 } });
    // above what mode 3 reaches
    expect(w.translate(ctx, 1n << 39n, "read")).toEqual({ fault: { reason: "out_of_range", level: 2 } });
    expect(w.translate(ctx, 0x3000n, "write")).toEqual({ pa: 0x5000n });
    expect(get(l0, 3) & 0x60n).toBe(0x60n);
  });

  it("VT-d: PS above level 2 is reserved; SSADE sets A/D", () => {
    const { alloc, put, get, w } = env();
    const root = alloc.alloc4k();
    const l1 = alloc.alloc4k();
    put(root, 0, (BigInt(l1) << 12n) | 3n);
    put(root, 1, 0x80000000n | 3n | 0x80n); // 1G leaf at level 2
    put(l1, 0, 0x200000n | 1n | 0x80n); // 2M read-only
    const ctx = { format: "vtdss" as const, rootPfn: root, topLevel: 2, dirtyTracking: true };
    expect(w.translate(ctx, 0x40001234n, "write")).toEqual({ pa: 0x80001234n });
    expect(w.translate(ctx, 0x1234n, "read")).toEqual({ pa: 0x201234n });
    expect(w.translate(ctx, 0x1234n, "write")).toEqual({ fault: { reason: "permission", level: 1 } });
    expect(get(root, 1) & 0x300n).toBe(0x300n);
    put(root, 2, 0x80000000n | 3n);
    const ctx3 = { ...ctx, topLevel: 3 };
    const top = alloc.alloc4k();
    put(top, 0, (BigInt(root) << 12n) | 3n | 0x80n);
    expect(w.translate({ ...ctx3, rootPfn: top }, 0n, "read")).toEqual({
      fault: { reason: "reserved", level: 3 },
    });
  });

  it("RISC-V: Svade faults, misaligned superpage, W without R", () => {
    const { alloc, put, w } = env();
    const root = alloc.alloc4k();
    put(root, 0, (0x40000n << 10n) | 0x4fn); // 1G leaf, A set, D clear, RWX V
    put(root, 1, (0x40001n << 10n) | 0xcfn); // misaligned 1G leaf
    put(root, 2, (0x80000n << 10n) | 0x05n); // W without R
    const ctx = { format: "riscv" as const, rootPfn: root, topLevel: 2, vaLg2: 39 };
    expect(w.translate(ctx, 0x1000n, "read")).toEqual({ pa: 0x40001000n });
    expect(w.translate(ctx, 0x1000n, "write")).toEqual({ fault: { reason: "permission", level: 2 } });
    expect(w.translate(ctx, 0x40000000n, "read")).toEqual({ fault: { reason: "reserved", level: 2 } });
    expect(w.translate(ctx, 0x80000000n, "read")).toEqual({ fault: { reason: "reserved", level: 2 } });
  });

  it("TCE: big-endian entries, window bounds, indirect levels", () => {
    const { alloc, put, w } = env();
    const top = alloc.alloc4k();
    const leaf = alloc.alloc4k();
    put(top, 0, (BigInt(leaf) << 12n) | 3n, true);
    put(leaf, 5, 0x7000000n | 1n, true); // TO_DEVICE: the device may read
    const tce = { pageShift: 12, levelBits: 9, itOffset: 0, itSize: 2 ** 18 };
    const ctx = { format: "spapr_tce" as const, rootPfn: top, topLevel: 1, tce };
    expect(w.translate(ctx, 0x5010n, "read")).toEqual({ pa: 0x7000010n });
    expect(w.translate(ctx, 0x5010n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    expect(w.translate(ctx, 0x6000n, "read")).toEqual({ fault: { reason: "not_present", level: 0 } });
    expect(w.translate(ctx, 1n << 31n, "read")).toEqual({ fault: { reason: "out_of_range", level: 1 } });
    expect(w.translate(ctx, 1n << 21n, "read")).toEqual({ fault: { reason: "not_present", level: 1 } });
  });
});
