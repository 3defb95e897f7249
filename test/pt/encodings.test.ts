import { describe, expect, it } from "vitest";
import { createPageTable } from "../../src/pt/engine.js";
import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { makeEnv, NOIOMMU } from "./helpers.js";

// Expected values are built from the bit positions in pagetables.md, not from the code.
const bit = (n: number) => 1n << BigInt(n);
const RW = IOMMU_READ | IOMMU_WRITE;

/** The raw u64 at entry `index` of the table at `tablePfn`, read from memory bytes (little-endian). */
function rawLE(mem: ReturnType<typeof makeEnv>["mem"], tablePfn: number, index: number): bigint {
  const b = mem.read(tablePfn * 4096 + index * 8, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

describe("AMDv1 PTE bits", () => {
  const PR = bit(0);
  const FC = bit(60);
  const IR = bit(61);
  const IW = bit(62);
  const NL = (n: number) => BigInt(n) << 9n;

  it("4K leaf for PA 0x1234000 RW with FC", () => {
    const env = makeEnv();
    const pt = createPageTable(env, "amdv1", NOIOMMU);
    expect(pt.mapPages(0x5000 / 4096, 0x1234000 / 4096, 4096, 1, RW)).toBe(4096);
    const e = pt.leafEntry(5)!;
    expect(e.level).toBe(0);
    expect(e.raw).toBe(0x7000000001234001n);
    expect(e.raw).toBe(PR | 0x1234000n | FC | IR | IW);
    expect(rawLE(env.mem, e.tablePfn, 5)).toBe(e.raw);
    // the path: root (level 2) entry 0 -> level 1 table, NL = 2; level 1 entry 0 -> level 0, NL = 1
    const root = pt.info().rootPfn;
    const top = rawLE(env.mem, root, 0);
    expect(top & 0xfffn).toBe(PR | NL(2));
    expect(top & ~0x000ffffffffff000n).toBe(PR | NL(2) | IR | IW);
    const l1 = Number((top & 0x000ffffffffff000n) >> 12n);
    const mid = rawLE(env.mem, l1, 0);
    expect(mid & ~0x000ffffffffff000n).toBe(PR | NL(1) | IR | IW);
    expect((mid & 0x000ffffffffff000n) >> 12n).toBe(BigInt(e.tablePfn));
  });

  it("read-only leaf has IR only; table pointers never carry FC", () => {
    const env = makeEnv();
    const pt = createPageTable(env, "amdv1", NOIOMMU);
    expect(pt.mapPages(7, 0x1234, 4096, 1, IOMMU_READ | IOMMU_CACHE)).toBe(4096);
    expect(pt.leafEntry(7)!.raw).toBe(PR | 0x1234000n | FC | IR);
    for (const d of pt.dump()) if (d.text.startsWith("TABLE")) expect(d.raw & FC).toBe(0n);
  });

  it.each([
    ["4 KiB at L0", 12, 0x7000000200000001n],
    ["8 KiB at L0", 13, 0x7000000200000e01n],
    ["64 KiB at L0", 16, 0x7000000200007e01n],
    ["4 MiB at L1", 22, 0x70000002001ffe01n],
  ])("worked value %s", (_n, lg2, want) => {
    const env = makeEnv();
    const pt = createPageTable(env, "amdv1", NOIOMMU);
    const iova = 2 ** (lg2 - 12) * 5;
    expect(pt.mapPages(iova, 0x200000000 / 4096, 2 ** lg2, 1, RW)).toBe(2 ** lg2);
    const first = pt.leafEntry(iova)!;
    expect(first.raw).toBe(want);
    // every replicated item holds the same value
    const items = 2 ** (lg2 - 12 - 9 * first.level);
    for (let k = 0; k < items; k++) expect(rawLE(env.mem, first.tablePfn, first.index + k)).toBe(want);
    expect(rawLE(env.mem, first.tablePfn, first.index + items)).toBe(0n);
    expect(pt.iovaToPhysPfn(iova + 2 ** (lg2 - 12) - 1)).toBe(0x200000 + 2 ** (lg2 - 12) - 1);
  });

  it("worked value 1 TiB at L3 (PA 2^40), grows the top to level 3", () => {
    const pt = createPageTable(makeEnv(), "amdv1", NOIOMMU);
    expect(pt.mapPages(2 ** 28, 2 ** 28, 2 ** 40, 1, RW)).toBe(2 ** 40);
    expect(pt.info().topLevel).toBe(3);
    const e = pt.leafEntry(2 ** 28)!;
    expect(e.level).toBe(3);
    expect(e.raw).toBe(0x7000017ffffffe01n);
  });

  it("ENCRYPT_TABLES ORs the SME mask into tables and leaves (not MMIO), stripped on read back", () => {
    const sme = bit(47);
    const env = makeEnv();
    const pt = createPageTable(env, "amdv1", { ...NOIOMMU, smeMask: sme });
    expect(pt.mapPages(1, 0x1234, 4096, 1, RW)).toBe(4096);
    expect(pt.leafEntry(1)!.raw).toBe(PR | 0x1234000n | FC | IR | IW | sme);
    expect(pt.iovaToPhysPfn(1)).toBe(0x1234);
    expect(rawLE(env.mem, pt.info().rootPfn, 0) & sme).toBe(sme);
    expect(pt.mapPages(2, 0x1234, 4096, 1, RW | IOMMU_MMIO)).toBe(4096);
    expect(pt.leafEntry(2)!.raw & sme).toBe(0n);
    expect(pt.walkCtx().smeMask).toBe(sme);
  });
});

describe("VT-d SS bits", () => {
  it("2M leaf RW: R|W|PS at PA; SNP with FORCE_COHERENCE", () => {
    const pt = createPageTable(makeEnv(), "vtdss", {
      hwMaxVaszLg2: 48,
      hwMaxOaszLg2: 52,
      features: ["VTDSS_FORCE_COHERENCE"],
    });
    expect(pt.mapPages(512, 0x40000, 2 ** 21, 1, RW)).toBe(2 ** 21);
    expect(pt.leafEntry(512)!.raw).toBe(0x40000000n | bit(0) | bit(1) | bit(7) | bit(11));
    expect(pt.mapPages(0, 0x1234, 4096, 1, IOMMU_READ)).toBe(4096);
    expect(pt.leafEntry(0)!.raw).toBe(0x1234000n | bit(0) | bit(11));
    // table pointers: R|W and the address only
    for (const d of pt.dump()) if (d.text.startsWith("TABLE")) expect(d.raw & 0xfffn).toBe(3n);
    expect(pt.info().hw.aw).toBe(2);
  });
});

describe("x86-64 bits", () => {
  it("4K write leaf P|RW|US|A|D; read-only P|US|A; 1G leaf with PS", () => {
    const pt = createPageTable(makeEnv(), "x86_64", { hwMaxVaszLg2: 57, hwMaxOaszLg2: 52 });
    expect(pt.info().topLevel).toBe(4);
    expect(pt.mapPages(1, 0x1234, 4096, 1, RW)).toBe(4096);
    expect(pt.leafEntry(1)!.raw).toBe(0x1234000n | 0x67n);
    expect(pt.mapPages(2, 0x1234, 4096, 1, IOMMU_READ)).toBe(4096);
    expect(pt.leafEntry(2)!.raw).toBe(0x1234000n | 0x25n);
    expect(pt.mapPages(2 ** 18, 2 ** 18, 2 ** 30, 1, RW)).toBe(2 ** 30);
    expect(pt.leafEntry(2 ** 18)!.raw).toBe(0x40000000n | 0x67n | bit(7));
    for (const d of pt.dump()) if (d.text.startsWith("TABLE")) expect(d.raw & 0xfffn).toBe(0x27n);
  });
});

describe("RISC-V bits", () => {
  it("4K RW leaf, Svnapot 64K, pointer with V only", () => {
    const pt = createPageTable(makeEnv(), "riscv", {
      hwMaxVaszLg2: 48,
      hwMaxOaszLg2: 56,
      features: ["DETAILED_GATHER", "RISCV_SVNAPOT_64K"],
    });
    expect(pt.info().hw.fsc_iosatp_mode).toBe(9);
    expect(pt.mapPages(1, 0x1234, 4096, 1, RW)).toBe(4096);
    const ppn = (pfn: bigint) => pfn << 10n;
    // V R W X U A D
    expect(pt.leafEntry(1)!.raw).toBe(ppn(0x1234n) | 0xdfn);
    expect(pt.mapPages(16, 0x12340, 2 ** 16, 1, IOMMU_READ)).toBe(2 ** 16);
    const e = pt.leafEntry(16 + 5)!;
    expect(e.raw).toBe(bit(63) | ppn(0x12348n) | 0x5bn);
    expect(pt.iovaToPhysPfn(16 + 5)).toBe(0x12345);
    for (const d of pt.dump()) if (d.text.startsWith("TABLE")) expect(d.raw & 0x3ffn).toBe(1n);
  });
});

describe("sPAPR TCE bits", () => {
  it("big-endian TCEs: R always, W on write; indirect entries R|W", () => {
    const env = makeEnv();
    const pt = createPageTable(env, "spapr_tce", {
      hwMaxVaszLg2: 64,
      hwMaxOaszLg2: 52,
      pageShift: 12,
      windowSize: 1n << 31n,
      levels: 2,
    });
    expect(pt.mapPages(3, 0x1234, 4096, 1, RW)).toBe(4096);
    const e = pt.leafEntry(3)!;
    expect(e.raw).toBe(0x1234003n);
    const bytes = env.mem.read(e.tablePfn * 4096 + 3 * 8, 8);
    expect([...bytes]).toEqual([0, 0, 0, 0, 0x01, 0x23, 0x40, 0x03]);
    expect(pt.mapPages(4, 0x1234, 4096, 1, IOMMU_READ)).toBe(4096);
    expect(pt.leafEntry(4)!.raw).toBe(0x1234001n);
    const hw = pt.info().hw;
    expect(hw.it_size).toBe(2 ** 19);
    expect(hw.it_level_size).toBe(1024);
    // indirect entry at the top, big-endian, with both low bits
    const top = env.mem.read(pt.info().rootPfn * 4096, 8);
    expect(top[7] & 3).toBe(3);
  });
});
