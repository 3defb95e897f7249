import { describe, expect, it } from "vitest";
import { IommuWalker } from "../../src/hw/iommu-walker.js";
import { createPageTable } from "../../src/pt/engine.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { EINVAL, EOPNOTSUPP, ERANGE } from "../../src/uapi/errno.js";
import { errnoOf, makeEnv, NOIOMMU } from "./helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;
const mk = (format: Parameters<typeof createPageTable>[1], cfg: Parameters<typeof createPageTable>[2]) =>
  errnoOf(() => createPageTable(makeEnv(), format, cfg));

describe("init checks (pt_iommu_<fmt>_init order and errnos)", () => {
  it("accepts the noiommu AMDv1 configuration as is", () => {
    const pt = createPageTable(makeEnv(), "amdv1", NOIOMMU);
    const g = pt.geometry();
    expect(g.apertureStart).toBe(0n);
    expect(g.apertureEnd).toBe((1n << 64n) - 1n);
    expect(g.pgsizeBitmap).toBe(0x000fff7ffffff000n);
    expect(pt.info().topLevel).toBe(2);
    expect(pt.info().hw.mode).toBe(3);
    expect(pt.hasFeature("DYNAMIC_TOP")).toBe(true);
    expect(pt.hasFeature("FULL_VA")).toBe(false);
  });

  it.each([
    ["a forced feature missing", { features: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES"] }, EOPNOTSUPP],
    ["no features", { features: [] }, EOPNOTSUPP],
    ["an unsupported feature", { features: [...NOIOMMU.features!, "SIGN_EXTEND"] }, EOPNOTSUPP],
    ["another format's feature", { features: [...NOIOMMU.features!, "VTDSS_FORCE_COHERENCE"] }, EOPNOTSUPP],
    ["hw_max_oasz 53", { hwMaxOaszLg2: 53 }, EINVAL],
    ["hw_max_vasz 65", { hwMaxVaszLg2: 65 }, EINVAL],
    ["hw_max_vasz 0", { hwMaxVaszLg2: 0 }, EINVAL],
    ["hw_max_oasz 0", { hwMaxOaszLg2: 0 }, EINVAL],
    ["starting_level 0", { startingLevel: 0 }, EINVAL],
    ["starting_level 6", { startingLevel: 6 }, EINVAL],
    ["starting_level 5 (DYNAMIC_TOP cleared, then required)", { startingLevel: 5 }, EOPNOTSUPP],
    ["hw_max_vasz 32 at level 2 (top covers it)", { hwMaxVaszLg2: 32 }, EOPNOTSUPP],
    ["no change_top", { driverHasChangeTop: false }, EINVAL],
    ["FLUSH_RANGE added", { features: [...NOIOMMU.features!, "FLUSH_RANGE"] }, 0],
  ])("amdv1: %s", (_n, over, errno) => {
    expect(mk("amdv1", { ...NOIOMMU, ...over })).toBe(errno);
  });

  it("amdv1 under CONFIG_DEBUG_GENERIC_PT: forced features become optional", () => {
    expect(mk("amdv1", { ...NOIOMMU, features: [], debugGenericPt: true })).toBe(0);
    expect(mk("amdv1", { ...NOIOMMU, hwMaxVaszLg2: 32, debugGenericPt: true })).toBe(0);
  });

  it.each([
    [{ hwMaxVaszLg2: 30, hwMaxOaszLg2: 52 }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 58, hwMaxOaszLg2: 52 }, EINVAL],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 53 }, EINVAL],
    // the top derived from the VA size always covers it, so DYNAMIC_TOP is cleared before the check
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["DYNAMIC_TOP"] }, 0],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["FLUSH_RANGE_NO_GAPS"] }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["DMA_INCOHERENT"], hasIommuDevice: false }, EINVAL],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["DMA_INCOHERENT"] }, 0],
    [{ hwMaxVaszLg2: 39, hwMaxOaszLg2: 52 }, 0],
    [{ hwMaxVaszLg2: 57, hwMaxOaszLg2: 52 }, 0],
  ])("vtdss %o", (cfg, errno) => {
    expect(mk("vtdss", cfg)).toBe(errno);
  });

  it("vtdss top level from hw_max_vasz_lg2, FORCE_WRITEABLE refuses read-only maps", () => {
    for (const [va, top] of [
      [31, 2],
      [39, 2],
      [40, 3],
      [48, 3],
      [49, 4],
      [57, 4],
    ]) {
      expect(
        createPageTable(makeEnv(), "vtdss", { hwMaxVaszLg2: va, hwMaxOaszLg2: 52 }).info().topLevel,
      ).toBe(top);
    }
    const pt = createPageTable(makeEnv(), "vtdss", {
      hwMaxVaszLg2: 48,
      hwMaxOaszLg2: 52,
      features: ["VTDSS_FORCE_WRITEABLE"],
    });
    expect(pt.mapPages(0, 1, 4096, 1, IOMMU_READ)).toBe(-EINVAL);
    expect(pt.mapPages(0, 1, 4096, 1, RW)).toBe(4096);
    expect(pt.geometry().pgsizeBitmap).toBe((1n << 12n) | (1n << 21n) | (1n << 30n));
  });

  it.each([
    [{ hwMaxVaszLg2: 30, hwMaxOaszLg2: 52 }, EINVAL],
    [{ hwMaxVaszLg2: 58, hwMaxOaszLg2: 52 }, EINVAL],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["SIGN_EXTEND", "DYNAMIC_TOP"] }, 0],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["SIGN_EXTEND", "FULL_VA"] }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["AMDV1_FORCE_COHERENCE"] }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 47, hwMaxOaszLg2: 52 }, 0],
  ])("x86_64 %o", (cfg, errno) => {
    expect(mk("x86_64", cfg)).toBe(errno);
  });

  it("x86_64 with SIGN_EXTEND: lower half aperture, upper half maps", () => {
    const env = makeEnv();
    const pt = createPageTable(env, "x86_64", {
      hwMaxVaszLg2: 48,
      hwMaxOaszLg2: 52,
      features: ["SIGN_EXTEND"],
    });
    expect(pt.geometry().apertureEnd).toBe((1n << 47n) - 1n);
    const upper = 0xffff800000000000n;
    expect(pt.mapPagesBig(upper, 0x5000n, 4096, 1, RW)).toBe(4096);
    expect(pt.iovaToPhys(upper + 8n)).toBe(0x5008n);
    expect(pt.leafEntry(Number(upper >> 12n))!.index).toBe(0);
    expect(new IommuWalker(env.mem).translate(pt.walkCtx(), upper + 8n, "write")).toEqual({ pa: 0x5008n });
    // non-canonical
    expect(pt.mapPagesBig(0x0000800000000000n, 0x5000n, 4096, 1, RW)).toBe(-ERANGE);
    expect(new IommuWalker(env.mem).translate(pt.walkCtx(), 0x0000800000000000n, "read")).toEqual({
      fault: { reason: "out_of_range", level: 3 },
    });
    // the top-level index comes from VA bit 47
    const d = pt.dump();
    expect(d[0].index).toBe(256);
  });

  it.each([
    [{ hwMaxVaszLg2: 40, hwMaxOaszLg2: 56, features: ["DETAILED_GATHER"] }, EINVAL],
    [{ hwMaxVaszLg2: 39, hwMaxOaszLg2: 56 }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 39, hwMaxOaszLg2: 57, features: ["DETAILED_GATHER"] }, EINVAL],
    [{ hwMaxVaszLg2: 57, hwMaxOaszLg2: 56, features: ["DETAILED_GATHER", "RISCV_SVPBMT"] }, EOPNOTSUPP],
    [{ hwMaxVaszLg2: 57, hwMaxOaszLg2: 56, features: ["DETAILED_GATHER", "SIGN_EXTEND"] }, 0],
  ])("riscv %o", (cfg, errno) => {
    expect(mk("riscv", cfg)).toBe(errno);
  });

  it.each([
    [{ levels: 6, windowSize: 1n << 30n }, EINVAL],
    [{ levels: 0, windowSize: 1n << 30n }, EINVAL],
    [{ levels: 1, windowSize: 3n << 30n }, EINVAL],
    [{ levels: 1, windowSize: 1n << 30n, features: ["FLUSH_RANGE"] }, EOPNOTSUPP],
    [{ levels: 1, windowSize: 1n << 62n, pageShift: 12 }, EINVAL],
    [{ levels: 1, windowSize: 1n << 30n }, 0],
    [{ levels: 4, windowSize: 1n << 50n, pageShift: 16, busOffset: 1n << 59n }, 0],
  ])("spapr_tce %o", (over, errno) => {
    expect(mk("spapr_tce", { hwMaxVaszLg2: 64, hwMaxOaszLg2: 52, ...over })).toBe(errno);
  });
});

describe("AMDv1 DYNAMIC_TOP", () => {
  it("grows one level at a time up to 64 bits; new top points at the old one from entry 0", () => {
    const env = makeEnv();
    const seen: [number, number][] = [];
    const pt = createPageTable(env, "amdv1", { ...NOIOMMU, changeTop: (r, l) => seen.push([r, l]) });
    const w = new IommuWalker(env.mem);
    expect(pt.mapPages(0, 0x1000, 4096, 1, RW)).toBe(4096);
    let top = pt.info();
    for (const [lvl, va] of [
      [3, 39],
      [4, 48],
      [5, 57],
    ]) {
      const ivp = 2 ** (va - 12);
      expect(pt.mapPages(ivp, 0x2000, 4096, 1, RW)).toBe(4096);
      const now = pt.info();
      expect(now.topLevel).toBe(lvl);
      expect(now.hw.mode).toBe(lvl + 1);
      expect(seen.at(-1)).toEqual([now.rootPfn, lvl]);
      // entry 0 of the new top: PR, NL = new level, IR, IW, old root
      const b = env.mem.read(now.rootPfn * 4096, 8);
      const raw = new DataView(b.buffer, b.byteOffset).getBigUint64(0, true);
      expect(raw).toBe((BigInt(top.rootPfn) << 12n) | 1n | (BigInt(lvl) << 9n) | (3n << 61n));
      // the old mapping still translates through the new top, in software and in hardware
      expect(pt.iovaToPhysPfn(0)).toBe(0x1000);
      expect(w.translatePfn(pt.walkCtx(), 0, false)).toBe(0x1000);
      expect(w.translatePfn(pt.walkCtx(), ivp, true)).toBe(0x2000);
      top = now;
    }
    // the top VA page
    expect(pt.mapPagesBig(0xfffffffffffff000n, 0x3000n, 4096, 1, RW)).toBe(4096);
    expect(pt.iovaToPhys(0xfffffffffffff123n)).toBe(0x3123n);
    expect(pt.info().topLevel).toBe(5);
    expect(seen.length).toBe(3);
    pt.destroy();
    expect(env.alloc.counters().frames4k).toBe(0);
  });

  it("iova_to_phys above the current top returns -ERANGE cast to u64", () => {
    const pt = createPageTable(makeEnv(), "amdv1", NOIOMMU);
    expect(pt.iovaToPhys(1n << 40n)).toBe((1n << 64n) - 34n);
    expect(pt.unmapPagesBig(1n << 40n, 4096, 1)).toBe(0n);
  });

  it("a failed growth allocation changes nothing", () => {
    const env = makeEnv();
    const pt = createPageTable(env, "amdv1", NOIOMMU);
    env.faults.arm(2);
    expect(pt.mapPages(2 ** 45, 1, 4096, 1, RW)).toBe(-12);
    env.faults.disarm();
    expect(pt.info().topLevel).toBe(2);
    expect(pt.tableFrames).toBe(1);
  });
});
