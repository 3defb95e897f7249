// The noiommu HWPT is a software AMDv1 table with the seed's configuration.
// Its bytes are decoded here independently (helpers.walkAmdv1) and checked
// against GET_PA, including after the top grows past 2^39.
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { NOIOMMU_AMDV1_CONFIG } from "../../src/pt/index.js";
import {
  EOPNOTSUPP,
  IOMMU_GET_HW_INFO,
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_IOAS_IOVA_RANGES,
  iommu_hw_info,
  iommu_hwpt_alloc,
  iommu_ioas_iova_ranges,
} from "../../src/uapi/index.js";
import { sioctl } from "../e2e/driver.js";
import {
  anon,
  attach,
  BDF,
  boot,
  getPa,
  huge2m,
  ioasAlloc,
  mapFixed,
  openBound,
  RAWIO,
  tablePa,
  walkAmdv1,
} from "./helpers.js";

const PR = 1n;
const FC = 1n << 60n;
const IR = 1n << 61n;
const IW = 1n << 62n;

function setup() {
  const { m, p } = boot();
  const o = openBound(p);
  const ioas = ioasAlloc(p, o.iommufd);
  const a = attach(o, ioas);
  expect(a.ret).toBe(0);
  return { m, p, o, ioas, hwpt: a.ptId };
}

describe("the software AMDv1 table", () => {
  it("uses exactly the seed's configuration", () => {
    expect(NOIOMMU_AMDV1_CONFIG).toEqual({
      hwMaxVaszLg2: 64,
      hwMaxOaszLg2: 52,
      startingLevel: 2,
      features: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
    });
  });

  it("m.debug.hwpt: format amdv1, a level-2 root (AMD mode 3), one table frame before any map", () => {
    const { m, p, o, hwpt } = setup();
    const info = m.debug.hwpt(p, o.iommufd, hwpt);
    expect(info.format).toBe("amdv1");
    expect(info.topLevel).toBe(2);
    expect(info.rootPhys % 4096n).toBe(0n);
    expect(m.debug.counters().ptFrames).toBe(1);
    // An empty root: 512 zero entries.
    expect(m.debug.readPhys(info.rootPhys, 4096).every((b) => b === 0)).toBe(true);
  });

  it("IOAS_MAP fills it: each PTE decodes to the PA GET_PA returns, with PR, FC, IR, IW", () => {
    const { m, p, o, ioas, hwpt } = setup();
    const small = anon(p, 5 * 4096);
    expect(mapFixed(p, o.iommufd, ioas, small, 5n * 4096n, 0x10_0000n)).toBe(0);
    const big = huge2m(p);
    expect(mapFixed(p, o.iommufd, ioas, big, 2n << 20n, 0x40_0000n)).toBe(0);
    const { rootPhys, topLevel } = m.debug.hwpt(p, o.iommufd, hwpt);
    for (let i = 0n; i < 5n; i++) {
      const iova = 0x10_0000n + i * 4096n + 0x10n;
      const r = getPa(p, o.iommufd, ioas, iova, 4096n);
      expect(r.ret).toBe(0);
      expect(tablePa(m, rootPhys, topLevel, iova)).toBe(r.phys);
      const leaf = walkAmdv1(m, rootPhys, topLevel, iova)!;
      expect(leaf.pte & (PR | FC | IR | IW)).toBe(PR | FC | IR | IW);
    }
    // The hugepage: one 2 MiB leaf at level 1 (NL = 0), or a run of NL=7 items.
    const leaf = walkAmdv1(m, rootPhys, topLevel, 0x40_0000n)!;
    expect(leaf.size).toBe(2n << 20n);
    expect(leaf.level).toBe(1);
    for (const off of [0n, 0x1234n, (2n << 20n) - 1n]) {
      const r = getPa(p, o.iommufd, ioas, 0x40_0000n + off, 1n);
      expect(tablePa(m, rootPhys, topLevel, 0x40_0000n + off)).toBe(r.phys);
    }
    // Unmapped IOVAs decode to nothing.
    expect(walkAmdv1(m, rootPhys, topLevel, 0x30_0000n)).toBeNull();
  });

  it("8 KiB-aligned physically contiguous runs become NL=7 contiguous leaves, decoded by size", () => {
    const { m, p, o, ioas, hwpt } = setup();
    // 64 KiB of a hugepage at a 64 KiB-aligned IOVA: one 64 KiB contiguous leaf.
    const big = huge2m(p);
    expect(mapFixed(p, o.iommufd, ioas, big, 0x1_0000n, 0x80_0000n)).toBe(0);
    const { rootPhys, topLevel } = m.debug.hwpt(p, o.iommufd, hwpt);
    const leaf = walkAmdv1(m, rootPhys, topLevel, 0x80_0000n + 0x3000n)!;
    expect(leaf.level).toBe(0);
    expect(Number((leaf.pte >> 9n) & 7n)).toBe(7);
    expect(leaf.size).toBe(0x1_0000n);
    const r = getPa(p, o.iommufd, ioas, 0x80_0000n + 0x3000n, 1n << 20n);
    expect(tablePa(m, rootPhys, topLevel, 0x80_0000n + 0x3000n)).toBe(r.phys);
    expect(r.length).toBe(0x1_0000n - 0x3000n);
  });

  it("a map above 2^39 grows the top (level 3, AMD mode 4); old and new mappings still decode", () => {
    const { m, p, o, ioas, hwpt } = setup();
    const low = anon(p, 4096);
    expect(mapFixed(p, o.iommufd, ioas, low, 4096n, 0x1000n)).toBe(0);
    const before = m.debug.hwpt(p, o.iommufd, hwpt);
    expect(before.topLevel).toBe(2);
    const highIova = (1n << 39n) + 0x20_0000n;
    expect(mapFixed(p, o.iommufd, ioas, huge2m(p), 2n << 20n, highIova)).toBe(0);
    const after = m.debug.hwpt(p, o.iommufd, hwpt);
    expect(after.topLevel).toBe(3);
    expect(after.rootPhys).not.toBe(before.rootPhys);
    // The new top's entry 0 points at the old top: PR, NL = 3, IR|IW, no FC.
    const e0 = m.debug.readPhys(after.rootPhys, 8);
    let pte = 0n;
    for (let i = 7; i >= 0; i--) pte = (pte << 8n) | BigInt(e0[i]);
    expect(pte & 0x000f_ffff_ffff_f000n).toBe(before.rootPhys);
    expect(Number((pte >> 9n) & 7n)).toBe(3);
    expect(pte & (PR | IR | IW | FC)).toBe(PR | IR | IW);
    for (const iova of [0x1000n, highIova, highIova + 0x1_2345n]) {
      const r = getPa(p, o.iommufd, ioas, iova, 4096n);
      expect(r.ret).toBe(0);
      expect(tablePa(m, after.rootPhys, after.topLevel, iova)).toBe(r.phys);
    }
    // Above 2^48 the top grows again (level 4, AMD mode 5).
    const higher = (1n << 48n) + 0x1000n;
    expect(mapFixed(p, o.iommufd, ioas, anon(p, 4096), 4096n, higher)).toBe(0);
    const top4 = m.debug.hwpt(p, o.iommufd, hwpt);
    expect(top4.topLevel).toBe(4);
    expect(tablePa(m, top4.rootPhys, 4, higher)).toBe(getPa(p, o.iommufd, ioas, higher, 1n).phys);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("no reserved regions: the IOAS's usable range stays the whole 64-bit space", () => {
    const { p, o, ioas } = setup();
    const ranges = sioctl(p, o.iommufd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, {
      size: 32,
      ioas_id: ioas,
      num_iovas: 0,
    });
    expect(ranges.out.num_iovas).toBe(1n);
    // The MSI window an x86 IOMMU reserves (0xfee00000) is mappable here.
    expect(mapFixed(p, o.iommufd, ioas, anon(p, 4096), 4096n, 0xfee0_0000n)).toBe(0);
  });

  it("HWPT_ALLOC for the noiommu device: a plain paging HWPT works; flags or driver data are EOPNOTSUPP", () => {
    const { m, p, o, ioas } = setup();
    const ok = sioctl(p, o.iommufd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, {
      size: 48,
      dev_id: o.devid,
      pt_id: ioas,
    });
    expect(ok.ret).toBe(0);
    expect(m.debug.hwpt(p, o.iommufd, Number(ok.out.out_hwpt_id)).format).toBe("amdv1");
    const data = anon(p, 4096);
    const before = m.debug.counters();
    for (const flags of [IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_ALLOC_DIRTY_TRACKING]) {
      const r = sioctl(p, o.iommufd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, {
        size: 48,
        flags,
        dev_id: o.devid,
        pt_id: ioas,
      });
      expect(r.ret).toBe(-EOPNOTSUPP);
    }
    const withData = sioctl(p, o.iommufd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, {
      size: 48,
      dev_id: o.devid,
      pt_id: ioas,
      data_type: 1,
      data_len: 8,
      data_uptr: data,
    });
    expect(withData.ret).toBe(-EOPNOTSUPP);
    expect(m.debug.counters()).toEqual(before);
  });

  it("GET_HW_INFO on a noiommu device is EOPNOTSUPP (there is no IOMMU to describe)", () => {
    const { p, o } = setup();
    const r = sioctl(p, o.iommufd, IOMMU_GET_HW_INFO, iommu_hw_info, { size: 32, dev_id: o.devid });
    expect(r.ret).toBe(-EOPNOTSUPP);
  });

  it("nothing walks it for DMA: the device has no IOMMU (m.iommu has no IommuDevice for it)", () => {
    const m = new Machine({ iommu: "none", params: { "vfio.enable_unsafe_noiommu_mode": true } });
    expect(m.iommu.device(BDF)).toBeUndefined();
    expect(m.pci.get(BDF)!.iommu).toBeNull();
    void RAWIO;
  });
});
