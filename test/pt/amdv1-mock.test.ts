import { describe, expect, it } from "vitest";
import { IommuWalker } from "../../src/hw/iommu-walker.js";
import { createPageTable } from "../../src/pt/engine.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EINVAL, EOPNOTSUPP } from "../../src/uapi/errno.js";
import { errnoOf, MOCK_CFG, makeEnv, sizesOf } from "./helpers.js";

/*
 * amdv1_mock byte-level checks. Expected values are built by hand from
 * fmt/amdv1.h with AMDV1_IOMMUFD_SELFTEST: PR bit 0, NextLevel 11:9, OA
 * field 51:12 holding address >> PT_GRANULE_LG2SZ (11) for leaves and
 * tables, IR 61, IW 62; NextLevel 7 leaves OR 2^(lg2 - 11 - 1) - 1 into the
 * OA field; no FC, no C-bit (PT_SUPPORTED_FEATURES 0).
 */
const bit = (n: number) => 1n << BigInt(n);
const PR = bit(0);
const IR = bit(61);
const IW = bit(62);
const FC = bit(60);
const NL = (n: number) => BigInt(n) << 9n;
const RW = IOMMU_READ | IOMMU_WRITE;
const OA = 0x000ffffffffff000n;
/** The OA field for a byte address: (addr >> 11) << 12. */
const oa = (addr: bigint) => (addr >> 11n) << 12n;

function rawLE(mem: ReturnType<typeof makeEnv>["mem"], tablePfn: number, index: number): bigint {
  const b = mem.read(tablePfn * 4096 + index * 8, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

function mock(cfg = MOCK_CFG) {
  const env = makeEnv();
  return { env, pt: createPageTable(env, "amdv1_mock", cfg) };
}

describe("amdv1_mock geometry (iommu_mock.c, amdv1.h AMDV1_IOMMUFD_SELFTEST)", () => {
  it("the selftest cfg: 3 levels over a 2 KiB granule, 38-bit VA, pgsize_bitmap 2^11..2^37", () => {
    const { pt, env } = mock();
    expect(pt.unitLg2).toBe(11);
    expect(pt.info().topLevel).toBe(2);
    expect(pt.maxVaLg2).toBe(11 + 9 * 3);
    expect(pt.maxOaLg2).toBe(51);
    const g = pt.geometry();
    expect(g.apertureStart).toBe(0n);
    expect(g.apertureEnd).toBe((1n << 38n) - 1n);
    // levels 0..2 hold 2^11..2^19, 2^20..2^28, 2^29..2^37
    expect(sizesOf(pt)).toEqual(Array.from({ length: 27 }, (_, i) => 11 + i));
    expect(pt.tableFrames).toBe(1);
    expect(pt.info().hw).toEqual({});
    pt.destroy();
    expect(env.alloc.counters().frames4k).toBe(0);
  });

  it("starting level 4: 56-bit VA; level 4 holds no leaves and 512 GiB is left out", () => {
    const { pt } = mock({ ...MOCK_CFG, startingLevel: 4 });
    expect(pt.maxVaLg2).toBe(56);
    const s = sizesOf(pt);
    expect(s[0]).toBe(11);
    expect(s[s.length - 1]).toBe(38 + 8);
    expect(s).not.toContain(39);
    expect(s).not.toContain(47);
  });

  it("init refuses what pt_iommu_amdv1_mock_init refuses", () => {
    const env = makeEnv();
    const f = (cfg: Parameters<typeof createPageTable>[2]) =>
      errnoOf(() => createPageTable(env, "amdv1_mock", cfg).destroy());
    expect(f({ ...MOCK_CFG, startingLevel: 0 })).toBe(EINVAL);
    expect(f({ ...MOCK_CFG, startingLevel: 5 })).toBe(EINVAL);
    expect(f({ ...MOCK_CFG, hwMaxVaszLg2: 57 })).toBe(EINVAL);
    expect(f({ ...MOCK_CFG, hwMaxOaszLg2: 52 })).toBe(EINVAL);
    // PT_SUPPORTED_FEATURES 0: AMDv1's own features are not offered
    expect(f({ ...MOCK_CFG, features: ["AMDV1_FORCE_COHERENCE"] })).toBe(EOPNOTSUPP);
    expect(f({ ...MOCK_CFG, features: ["AMDV1_ENCRYPT_TABLES"] })).toBe(EOPNOTSUPP);
    // ... but a DYNAMIC_TOP request is dropped before that check: without the feature
    // fmt_init sizes max_vasz_lg2 to the starting top, which pt_init_common then finds covered
    for (const startingLevel of [1, 2, 3, 4])
      expect(f({ ...MOCK_CFG, startingLevel, features: ["DYNAMIC_TOP"] })).toBe(0);
    expect(env.alloc.counters().frames4k).toBe(0);
  });
});

describe("limitPgsizes (a driver's own domain->pgsize_bitmap)", () => {
  it("map_pages then picks leaves from the domain's sizes only", () => {
    const { pt } = mock();
    pt.limitPgsizes([11, 20]);
    expect(pt.geometry().pgsizeBitmap).toBe((1n << 11n) | (1n << 20n));
    // 8 KiB, aligned to 8 KiB: four 2 KiB leaves, not one contiguous 8 KiB leaf
    expect(pt.mapPages(16, 0x200, 8192, 1, RW)).toBe(8192);
    for (let i = 0; i < 4; i++)
      expect(pt.leafEntry(16 + i)!.raw).toBe(PR | (BigInt(0x200 + i) << 12n) | IR | IW);
    // 2 MiB aligned: two natural 1 MiB leaves at level 1
    expect(pt.mapPages(2 ** 10, 2 ** 12, 2 ** 21, 1, RW)).toBe(2 ** 21);
    expect(pt.leafEntry(2 ** 10)!.level).toBe(1);
    expect(pt.leafEntry(2 ** 10 + 512)!.level).toBe(1);
  });

  it("a size the format cannot hold is EINVAL and changes nothing", () => {
    const { pt } = mock();
    const before = pt.geometry().pgsizeBitmap;
    expect(errnoOf(() => pt.limitPgsizes([11, 10]))).toBe(EINVAL);
    expect(errnoOf(() => pt.limitPgsizes([38]))).toBe(EINVAL);
    expect(pt.geometry().pgsizeBitmap).toBe(before);
    expect(pt.mapPages(16, 0x200, 8192, 1, RW)).toBe(8192);
    expect(pt.leafEntry(16)!.raw & NL(7)).toBe(NL(7));
  });
});

describe("amdv1_mock PTE bytes", () => {
  it("a 2 KiB leaf at PA 0x12345800: PA bit 11 lands in entry bit 12; the table path stores table PA >> 11", () => {
    const { pt, env } = mock();
    // IOVA 16 MiB + 2 KiB (MOCK_APERTURE_START + one mock page), in 2 KiB units
    const iova = (1 << 24) / 2048 + 1;
    expect(pt.mapPages(iova, 0x12345800 / 2048, 2048, 1, RW)).toBe(2048);
    const e = pt.leafEntry(iova)!;
    expect(e.level).toBe(0);
    expect(e.raw).toBe(0x600000002468b001n);
    expect(e.raw).toBe(PR | oa(0x12345800n) | IR | IW);
    expect(e.raw & FC).toBe(0n);
    // IOVA bits 19:11 index level 0: (16 MiB + 2 KiB) >> 11 = 0x2001 -> index 1
    expect(e.index).toBe(1);
    expect(rawLE(env.mem, e.tablePfn, 1)).toBe(e.raw);
    // root (level 2): IOVA bits 37:29 -> index 0; NL = 2; OA field = level-1 table PA >> 11
    const root = pt.info().rootPfn;
    const top = rawLE(env.mem, root, 0);
    expect(top & ~OA).toBe(PR | NL(2) | IR | IW);
    const l1 = Number(((top & OA) >> 12n) / 2n);
    expect((top & OA) >> 12n).toBe(BigInt(l1) * 2n);
    // level 1: IOVA bits 28:20 -> 16 MiB >> 20 = 16
    const mid = rawLE(env.mem, l1, 16);
    expect(mid & ~OA).toBe(PR | NL(1) | IR | IW);
    expect((mid & OA) >> 12n).toBe(BigInt(e.tablePfn) * 2n);
    expect(pt.iovaToPhys(BigInt(iova) * 2048n + 0x7ffn)).toBe(0x12345fffn);
  });

  it.each([
    // name, lg2, PA, want: NL 7 leaves carry 2^(lg2 - 12) - 1 in the OA field's low bits
    ["4 KiB at L0 (NL 7, 2 items)", 12, 0x4000_0000n, PR | NL(7) | oa(0x4000_0000n) | IR | IW],
    ["8 KiB at L0 (NL 7, 4 items)", 13, 0x4000_0000n, PR | NL(7) | oa(0x4000_0000n) | (1n << 12n) | IR | IW],
    [
      "512 KiB at L0 (NL 7, 256 items)",
      19,
      0x4000_0000n,
      PR | NL(7) | oa(0x4000_0000n) | (0x7fn << 12n) | IR | IW,
    ],
    ["1 MiB at L1 (natural, NL 0)", 20, 0x4010_0000n, PR | oa(0x4010_0000n) | IR | IW],
    [
      "4 MiB at L1 (NL 7, 4 items)",
      22,
      0x4040_0000n,
      PR | NL(7) | oa(0x4040_0000n) | (0x3ffn << 12n) | IR | IW,
    ],
    ["512 MiB at L2 (natural)", 29, 0x6000_0000n, PR | oa(0x6000_0000n) | IR | IW],
  ])("%s", (_n, lg2, pa, want) => {
    const { pt, env } = mock();
    const span = 2 ** (lg2 - 11);
    const iova = span * 3;
    expect(pt.mapPages(iova, Number(pa / 2048n), 2 ** lg2, 1, RW)).toBe(2 ** lg2);
    const first = pt.leafEntry(iova)!;
    expect(first.raw).toBe(want);
    const items = 2 ** (lg2 - 11 - 9 * first.level);
    for (let k = 0; k < items; k++) expect(rawLE(env.mem, first.tablePfn, first.index + k)).toBe(want);
    expect(rawLE(env.mem, first.tablePfn, first.index + items)).toBe(0n);
    // the last byte of the leaf
    const lastByte = BigInt(iova) * 2048n + (1n << BigInt(lg2)) - 1n;
    expect(pt.iovaToPhys(lastByte)).toBe(pa + (1n << BigInt(lg2)) - 1n);
    const w = new IommuWalker(env.mem);
    const r = w.translate(pt.walkCtx(), lastByte, "write");
    expect(r).toEqual({ pa: pa + (1n << BigInt(lg2)) - 1n });
  });

  it("read-only and write-only leaves: IR or IW alone; the walker enforces them", () => {
    const { pt, env } = mock();
    expect(pt.mapPages(8, 0x100, 2048, 1, IOMMU_READ)).toBe(2048);
    expect(pt.mapPages(9, 0x101, 2048, 1, IOMMU_WRITE)).toBe(2048);
    expect(pt.leafEntry(8)!.raw).toBe(PR | (0x100n << 12n) | IR);
    expect(pt.leafEntry(9)!.raw).toBe(PR | (0x101n << 12n) | IW);
    const w = new IommuWalker(env.mem);
    const ctx = pt.walkCtx();
    expect(w.translatePfn(ctx, 8, false)).toBe(0x100);
    expect(w.translatePfn(ctx, 8, true)).toBe(-1);
    expect(w.fault.reason).toBe("permission");
    expect(w.translatePfn(ctx, 9, true)).toBe(0x101);
    expect(w.translatePfn(ctx, 9, false)).toBe(-1);
  });

  it("set_dirty and read_and_clear_dirty use D (bit 6) of the 2 KiB item", () => {
    const { pt } = mock();
    // one call per 2 KiB page: a single 8 KiB call would install one contiguous (NL 7) leaf
    for (let i = 0; i < 4; i++) expect(pt.mapPages(16 + i, 0x200 + i, 2048, 1, RW)).toBe(2048);
    expect(pt.setDirty(18)).toBe(0);
    expect(pt.leafEntry(18)!.raw).toBe(PR | bit(6) | (0x202n << 12n) | IR | IW);
    const got: [number, number][] = [];
    expect(pt.readAndClearDirty(16, 4, 0, (a, n) => got.push([a, n]))).toBe(0);
    expect(got).toEqual([[18, 1]]);
    expect(pt.leafEntry(18)!.raw & bit(6)).toBe(0n);
  });

  it("the walker: beyond the 38-bit reach is out of range; an odd table field is reserved", () => {
    const { pt, env } = mock();
    expect(pt.mapPages(0, 0x10, 2048, 1, RW)).toBe(2048);
    const w = new IommuWalker(env.mem);
    expect(w.translatePfn(pt.walkCtx(), 2 ** 27, false)).toBe(-1);
    expect(w.fault.reason).toBe("out_of_range");
    expect(w.translate(pt.walkCtx(), (1n << 38n) - 1n, "read")).toEqual({
      fault: { reason: "not_present", level: 2 },
    });
    // a table pointer must name a 4 KiB frame: set the field's low bit in the root entry
    const root = pt.info().rootPfn;
    const u = env.mem.frameU32(root);
    u[0] |= 1 << 12;
    expect(w.translatePfn(pt.walkCtx(), 0, false)).toBe(-1);
    expect(w.fault.reason).toBe("reserved");
  });

  it("dump decodes 2 KiB addresses", () => {
    const { pt } = mock();
    expect(pt.mapPages(1, 0x2468b, 2048, 1, RW)).toBe(2048);
    const d = pt.dump();
    expect(d).toHaveLength(3);
    expect(d[2].text).toBe("LEAF 2K NL=0 pa=0x12345800 IR IW");
    expect(d[0].text).toMatch(/^TABLE NL=2 -> 0x[0-9a-f]+000$/);
    expect(pt.dumpText()).toContain("amdv1_mock root=");
  });
});
