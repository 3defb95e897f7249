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

  it("AMDv1: IR/IW of table entries (PDEs) limit every page below them", () => {
    const { alloc, put, w } = env();
    const IR = 1n << 61n;
    const IW = 1n << 62n;
    // a PDE: present, NextLevel = AMD level of the child (generic level + 1)
    const pde = (child: number, childLevel: number, perm: bigint) =>
      (BigInt(child) << 12n) | 1n | (BigInt(childLevel + 1) << 9n) | perm;
    const root = alloc.alloc4k();
    const ctx = { format: "amdv1" as const, rootPfn: root, topLevel: 2 };
    // root[i] -> level-1 table (perm) -> level-0 table (IR|IW) -> 4K leaf (IR|IW) at PA 0x100000 + i * 0x1000
    const leafPa = (i: number) => 0x100000n + BigInt(i) * 0x1000n;
    const rootPerm = [IR | IW, IR, IW];
    const l1s: number[] = [];
    rootPerm.forEach((perm, i) => {
      const l1 = alloc.alloc4k();
      const l0 = alloc.alloc4k();
      l1s.push(l1);
      put(root, i, pde(l1, 1, perm));
      put(l1, 0, pde(l0, 0, IR | IW));
      put(l0, 0, leafPa(i) | 1n | IR | IW);
    });
    const va = (i: number) => BigInt(i) << 30n;
    // everything allowed on the way down
    expect(w.translate(ctx, va(0) | 0x10n, "write")).toEqual({ pa: leafPa(0) | 0x10n });
    // the level-2 PDE denies writes, the leaf allows them
    expect(w.translate(ctx, va(1) | 0x10n, "read")).toEqual({ pa: leafPa(1) | 0x10n });
    expect(w.translate(ctx, va(1), "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // the level-2 PDE denies reads, the leaf allows them
    expect(w.translate(ctx, va(2), "write")).toEqual({ pa: leafPa(2) });
    expect(w.translate(ctx, va(2), "read")).toEqual({ fault: { reason: "permission", level: 0 } });
    // one level lower: a level-1 PDE that denies writes over a writable 4K leaf
    const l0ro = alloc.alloc4k();
    put(l1s[0], 1, pde(l0ro, 0, IR));
    put(l0ro, 0, 0x200000n | 1n | IR | IW);
    expect(w.translate(ctx, 0x200000n, "read")).toEqual({ pa: 0x200000n });
    expect(w.translate(ctx, 0x200000n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // a PDE with PR but neither IR nor IW denies both
    const l0none = alloc.alloc4k();
    put(l1s[0], 2, pde(l0none, 0, 0n));
    put(l0none, 0, 0x300000n | 1n | IR | IW);
    expect(w.translate(ctx, 0x400000n, "read")).toEqual({ fault: { reason: "permission", level: 0 } });
    expect(w.translate(ctx, 0x400000n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
  });

  it("VT-d second stage: R/W of table entries limit every page below them", () => {
    const { alloc, put, w } = env();
    const R = 1n;
    const W = 2n;
    const PS = 0x80n;
    const root = alloc.alloc4k();
    const ctx = { format: "vtdss" as const, rootPfn: root, topLevel: 2 };
    // root[i] -> level-1 table (perm) -> level-0 table (R|W) -> 4K leaf R|W
    const perms = [R | W, R, W];
    const l1s: number[] = [];
    perms.forEach((perm, i) => {
      const l1 = alloc.alloc4k();
      const l0 = alloc.alloc4k();
      l1s.push(l1);
      put(root, i, (BigInt(l1) << 12n) | perm);
      put(l1, 0, (BigInt(l0) << 12n) | R | W);
      put(l0, 0, (0x100000n + BigInt(i) * 0x1000n) | R | W);
    });
    expect(w.translate(ctx, 0x10n, "write")).toEqual({ pa: 0x100010n });
    // a read-only table entry over a writable leaf
    expect(w.translate(ctx, (1n << 30n) | 0x10n, "read")).toEqual({ pa: 0x101010n });
    expect(w.translate(ctx, 1n << 30n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // a write-only table entry (still present: R|W != 0) over a readable leaf
    expect(w.translate(ctx, 2n << 30n, "write")).toEqual({ pa: 0x102000n });
    expect(w.translate(ctx, 2n << 30n, "read")).toEqual({ fault: { reason: "permission", level: 0 } });
    // a read-only table entry one level down, over a writable 2M leaf and a writable 4K leaf
    put(l1s[0], 1, 0x40000000n | R | W | PS);
    expect(w.translate(ctx, 0x200000n, "write")).toEqual({ pa: 0x40000000n });
    const l0ro = alloc.alloc4k();
    put(l1s[0], 2, (BigInt(l0ro) << 12n) | R);
    put(l0ro, 0, 0x500000n | R | W);
    expect(w.translate(ctx, 0x400000n, "read")).toEqual({ pa: 0x500000n });
    expect(w.translate(ctx, 0x400000n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
  });

  it("x86-64 first stage: R/W and U/S of table entries limit every page below them", () => {
    const { alloc, put, w } = env();
    const P = 1n;
    const RW = 2n;
    const US = 4n;
    const root = alloc.alloc4k();
    const ctx = { format: "x86_64" as const, rootPfn: root, topLevel: 2, vaLg2: 39 };
    // root[i] -> PDE table (perm) -> PTE table (P|RW|US) -> 4K leaf P|RW|US
    const perms = [P | RW | US, P | US, P | RW];
    const l1s: number[] = [];
    perms.forEach((perm, i) => {
      const l1 = alloc.alloc4k();
      const l0 = alloc.alloc4k();
      l1s.push(l1);
      put(root, i, (BigInt(l1) << 12n) | perm);
      put(l1, 0, (BigInt(l0) << 12n) | P | RW | US);
      put(l0, 0, (0x100000n + BigInt(i) * 0x1000n) | P | RW | US);
    });
    expect(w.translate(ctx, 0x10n, "write")).toEqual({ pa: 0x100010n });
    // R/W clear in the PDPTE: reads pass, writes fault although the leaf is writable
    expect(w.translate(ctx, (1n << 30n) | 0x10n, "read")).toEqual({ pa: 0x101010n });
    expect(w.translate(ctx, 1n << 30n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // U/S clear in the PDPTE: a DMA without PASID is a user request, so both fault
    expect(w.translate(ctx, 2n << 30n, "read")).toEqual({ fault: { reason: "permission", level: 0 } });
    expect(w.translate(ctx, 2n << 30n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    // one level down: a PDE without R/W, then a PDE without U/S, over writable user leaves
    const l0ro = alloc.alloc4k();
    put(l1s[0], 1, (BigInt(l0ro) << 12n) | P | US);
    put(l0ro, 0, 0x500000n | P | RW | US);
    expect(w.translate(ctx, 0x200000n, "read")).toEqual({ pa: 0x500000n });
    expect(w.translate(ctx, 0x200000n, "write")).toEqual({ fault: { reason: "permission", level: 0 } });
    const l0sup = alloc.alloc4k();
    put(l1s[0], 2, (BigInt(l0sup) << 12n) | P | RW);
    put(l0sup, 0, 0x600000n | P | RW | US);
    expect(w.translate(ctx, 0x400000n, "read")).toEqual({ fault: { reason: "permission", level: 0 } });
    // a leaf without U/S under permissive tables faults too; a 2M leaf under a read-only PDPTE
    put(l1s[0], 3, 0x800000n | P | RW | 0x80n);
    expect(w.translate(ctx, 0x600000n, "read")).toEqual({ fault: { reason: "permission", level: 1 } });
    put(l1s[1], 1, 0xa00000n | P | RW | US | 0x80n);
    expect(w.translate(ctx, (1n << 30n) | 0x200000n, "read")).toEqual({ pa: 0xa00000n });
    expect(w.translate(ctx, (1n << 30n) | 0x200000n, "write")).toEqual({
      fault: { reason: "permission", level: 1 },
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
