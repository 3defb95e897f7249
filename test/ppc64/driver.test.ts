import { describe, expect, it } from "vitest";
import type { SpaprMachineOptions } from "../../src/iommu/spapr-platform.js";
import {
  IOMMU_HW_INFO_SPAPR_TCE_DDW,
  IOMMU_HW_INFO_TYPE_SPAPR_TCE,
  IOMMU_HWPT_DATA_SPAPR_TCE,
  iommu_hw_info_spapr_tce,
} from "../../src/iommu/spapr-uapi.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { E2BIG, EINVAL, ENOMEM, EOPNOTSUPP } from "../../src/uapi/errno.js";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT } from "../../src/uapi/iommufd.js";
import { decode } from "../../src/uapi/struct.js";
import { errnoOf } from "../iommu/helpers.js";
import { BDF, be64, bootSpapr, DDW_POWERNV, GIB, TWO_WINDOWS, userData, windowsData } from "./helpers.js";

const RW = IOMMU_READ | IOMMU_WRITE;

describe("sPAPR TCE driver: domains", () => {
  it("boots every group on the static PLATFORM domain; sysfs names its type 'unknown'", () => {
    const { sub, drv, ctx } = bootSpapr();
    const dev = sub.device(BDF)!;
    expect(dev.domain).toBe(drv.platformDomain);
    expect(dev.domain.type).toBe("platform");
    expect(dev.group.defaultDomain).toBe(drv.platformDomain);
    expect(ctx.vfs.readFile("/sys/kernel/iommu_groups/0/type")).toBe("unknown\n");
    expect(ctx.vfs.readFile("/sys/kernel/iommu_groups/0/reserved_regions")).toBe("");
    expect(sub.liveDomains()).toEqual([]);
    expect(sub.ptFrames()).toBe(0);
  });

  it("reports only CACHE_COHERENCY, no PASID, no reserved regions", () => {
    const { sub } = bootSpapr();
    const dev = sub.device(BDF)!;
    expect(dev.capable("CACHE_COHERENCY")).toBe(true);
    expect(dev.capable("ENFORCE_CACHE_COHERENCY")).toBe(false);
    expect(dev.capable("DIRTY_TRACKING")).toBe(false);
    expect(dev.maxPasidLog2()).toBe(0);
    expect(dev.resvRegions()).toEqual([]);
  });

  it("claiming DMA ownership moves the group to the native BLOCKED domain, release back to PLATFORM", () => {
    const { sub, drv } = bootSpapr();
    const g = sub.device(BDF)!.group;
    g.claimDmaOwner("vfio");
    expect(g.domain).toBe(drv.blockedDomain);
    expect(sub.liveDomains()).toEqual([]);
    g.releaseDmaOwner();
    expect(g.domain).toBe(drv.platformDomain);
  });

  it("allocates the RFC's paging domain without driver data: one 1 GiB window of 4 KiB TCEs at 0", () => {
    const { sub, drv } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0);
    expect(d.type).toBe("paging");
    expect(d.apertures).toEqual([{ start: 0n, last: GIB - 1n }]);
    expect(d.pgsizeBitmap).toBe(0x1000n);
    expect(d.ptInfo()).toMatchObject({ format: "spapr_tce", topLevel: 0 });
    // one level: 2^18 TCEs of 8 bytes, one 2 MiB allocation
    expect(sub.ptFrames()).toBe(512);
    d.free();
    expect(sub.ptFrames()).toBe(0);
    expect(sub.liveDomains()).toEqual([]);
  });

  it("allocates two windows from IOMMU_HWPT_DATA_SPAPR_TCE: an aperture per window, pgsizes from both", () => {
    const { sub, drv } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS));
    expect(d.apertures).toEqual([
      { start: 0n, last: GIB - 1n },
      { start: DDW_POWERNV, last: DDW_POWERNV + 64n * GIB - 1n },
    ]);
    expect(d.pgsizeBitmap).toBe(0x1000n | 0x10000n);
    expect(d.inAperture(GIB - 0x1000n, 0x2000n)).toBe(false);
    d.free();
    expect(sub.ptFrames()).toBe(0);
  });

  it("the pseries platform places the 64-bit window at 4 GiB", () => {
    const { sub, drv } = bootSpapr({ platform: "pseries" });
    const d = drv.allocPaging(
      sub.device(BDF),
      0,
      userData([
        { startAddr: 0n, windowSize: GIB, pageShift: 12, levels: 1 },
        { startAddr: 4n * GIB, windowSize: 4n * GIB, pageShift: 16, levels: 1 },
      ]),
    );
    expect(d.apertures.map((a) => a.start)).toEqual([0n, 4n * GIB]);
    d.free();
  });

  const bad: [string, () => Uint8Array | undefined, number, number][] = [
    ["HWPT flags", () => undefined, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, EOPNOTSUPP],
    ["NEST_PARENT", () => undefined, IOMMU_HWPT_ALLOC_NEST_PARENT, EOPNOTSUPP],
    ["short data", () => windowsData(TWO_WINDOWS).subarray(0, 40), 0, EINVAL],
    [
      "non-zero tail",
      () => {
        const b = new Uint8Array(80);
        b.set(windowsData(TWO_WINDOWS));
        b[79] = 1;
        return b;
      },
      0,
      E2BIG,
    ],
    ["no windows", () => windowsData([]), 0, EINVAL],
    ["three windows", () => windowsData(TWO_WINDOWS, { num_windows: 3 }), 0, EINVAL],
    ["reserved set", () => windowsData(TWO_WINDOWS, { __reserved: 1 }), 0, EINVAL],
    ["window flags", () => windowsData(TWO_WINDOWS, { "windows[1].flags": 1 }), 0, EINVAL],
    [
      "start not a slot",
      () => windowsData([{ startAddr: 4n * GIB, windowSize: GIB, pageShift: 12, levels: 1 }]),
      0,
      EINVAL,
    ],
    ["slot twice", () => windowsData([TWO_WINDOWS[0], TWO_WINDOWS[0]]), 0, EINVAL],
    [
      "2 MiB pages not in pgsizes",
      () => windowsData([{ startAddr: 0n, windowSize: GIB, pageShift: 21, levels: 1 }]),
      0,
      EINVAL,
    ],
    [
      "six levels",
      () => windowsData([{ startAddr: 0n, windowSize: GIB, pageShift: 12, levels: 6 }]),
      0,
      EINVAL,
    ],
    [
      "size not a power of 2",
      () => windowsData([{ startAddr: 0n, windowSize: 3n * GIB, pageShift: 12, levels: 2 }]),
      0,
      EINVAL,
    ],
    [
      "window smaller than a page",
      () => windowsData([{ startAddr: DDW_POWERNV, windowSize: 0x8000n, pageShift: 16, levels: 1 }]),
      0,
      EINVAL,
    ],
    [
      "32-bit slot past 4 GiB",
      () => windowsData([{ startAddr: 0n, windowSize: 8n * GIB, pageShift: 16, levels: 2 }]),
      0,
      EINVAL,
    ],
    [
      "one level too large to allocate",
      () => windowsData([{ startAddr: 0n, windowSize: 4n * GIB, pageShift: 12, levels: 1 }]),
      0,
      ENOMEM,
    ],
  ];
  it.each(bad)("refuses %s with the kernel's errno and allocates nothing", (_n, data, flags, errno) => {
    const { sub, drv, ctx } = bootSpapr();
    const before = ctx.frames.counters();
    const d = data();
    const ud = d === undefined ? undefined : { type: IOMMU_HWPT_DATA_SPAPR_TCE, bytes: d };
    expect(errnoOf(() => drv.allocPaging(sub.device(BDF), flags, ud))).toBe(errno);
    expect(sub.liveDomains()).toEqual([]);
    expect(sub.ptFrames()).toBe(0);
    expect(ctx.frames.counters()).toEqual(before);
  });

  it("refuses another driver's data type with EOPNOTSUPP", () => {
    const { sub, drv } = bootSpapr();
    expect(errnoOf(() => drv.allocPaging(sub.device(BDF), 0, { type: 1, bytes: new Uint8Array(8) }))).toBe(
      EOPNOTSUPP,
    );
  });

  it("levels > 1 are refused on pseries (the hypervisor builds one-level tables)", () => {
    const { sub, drv } = bootSpapr({ platform: "pseries" });
    const ud = userData([{ startAddr: 0n, windowSize: GIB, pageShift: 12, levels: 2 }]);
    expect(errnoOf(() => drv.allocPaging(sub.device(BDF), 0, ud))).toBe(EINVAL);
  });

  it("an allocation failure in the second window frees the first (fail_nth)", () => {
    const { sub, drv, ctx } = bootSpapr();
    const before = ctx.frames.counters();
    ctx.faults.arm(2);
    expect(errnoOf(() => drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS)))).toBe(ENOMEM);
    ctx.faults.disarm();
    expect(ctx.frames.counters()).toEqual(before);
    expect(sub.liveDomains()).toEqual([]);
  });
});

describe("sPAPR TCE driver: map, unmap, iova_to_phys bound to windows and page sizes", () => {
  it("writes big-endian TCEs: host address | TCE_PCI_READ (1) | TCE_PCI_WRITE (2)", () => {
    const { sub, drv, ctx } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0);
    d.map(0x5000n, 0x1234_5000n, 0x1000n, RW);
    d.map(0x6000n, 0x2000_0000n, 0x1000n, IOMMU_READ);
    const root = d.ptInfo().rootPhys;
    expect(be64(ctx, root + 5n * 8n)).toBe(0x1234_5000n | 3n);
    expect(be64(ctx, root + 6n * 8n)).toBe(0x2000_0000n | 1n);
    expect(d.iovaToPhys(0x5123n)).toBe(0x1234_5123n);
    expect(d.iovaToPhys(0x7000n)).toBe(0n);
    // a write-only map is readable too: every TCE the model writes has READ
    d.map(0x7000n, 0x3000_0000n, 0x1000n, IOMMU_WRITE);
    expect(be64(ctx, root + 7n * 8n)).toBe(0x3000_0000n | 3n);
    expect(sub.checkInvariants()).toEqual([]);
    expect(d.unmap(0x5000n, 0x3000n)).toBe(0x3000n);
    expect(be64(ctx, root + 5n * 8n)).toBe(0n);
    d.free();
  });

  it("walks a two-level 64 KiB window at 1<<59 the way pnv_tce indexes it", () => {
    const { sub, drv, ctx } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS));
    // 64 GiB / 64 KiB = 2^20 TCEs over 2 levels: 10 bits each, level tables of 2^10 entries (8 KiB)
    const iova = DDW_POWERNV + 0x1234n * 0x10000n;
    d.map(iova, 0x4000_0000n, 0x10000n, RW);
    const w = d.ptInfo();
    expect(w.rootPhys).not.toBe(0n);
    const win1 = (d.pt as unknown as { tables: { info(): { rootPhys: bigint; topLevel: number } }[] })
      .tables[1];
    expect(win1.info().topLevel).toBe(1);
    const idx = 0x1234n;
    const top = be64(ctx, win1.info().rootPhys + (idx >> 10n) * 8n);
    expect(top & 3n).toBe(3n); // indirect entries carry READ|WRITE
    expect(be64(ctx, (top & ~3n) + (idx & 0x3ffn) * 8n)).toBe(0x4000_0000n | 3n);
    expect(d.iovaToPhys(iova + 0xabcdn)).toBe(0x4000_abcdn);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
    expect(sub.ptFrames()).toBe(0);
  });

  it("refuses a map outside every window, across the gap, or smaller than the window's TCE size", () => {
    const { sub, drv } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS));
    const frames = sub.ptFrames();
    expect(errnoOf(() => d.map(GIB, 0x1000_0000n, 0x1000n, RW))).toBe(EINVAL);
    expect(errnoOf(() => d.map(GIB - 0x1000n, 0x1000_0000n, 0x2000n, RW))).toBe(EINVAL);
    expect(errnoOf(() => d.map(DDW_POWERNV, 0x1000_0000n, 0x1000n, RW))).toBe(EINVAL);
    // 64 KiB in window 1 but the host range is only 4 KiB aligned: the core picks 4 KiB pages
    expect(errnoOf(() => d.map(DDW_POWERNV, 0x1000_1000n, 0x10000n, RW))).toBe(EINVAL);
    expect(d.mapped.length).toBe(0);
    expect(sub.ptFrames()).toBe(frames);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });

  it("a 64 KiB map in the 4 KiB window is written as 16 TCEs; unmapping part of a 64 KiB TCE clears it whole", () => {
    const { sub, drv } = bootSpapr();
    const d = drv.allocPaging(sub.device(BDF), 0, userData(TWO_WINDOWS));
    d.map(0x10000n, 0x5000_0000n, 0x10000n, RW);
    expect(d.iovaToPhys(0x1f000n)).toBe(0x5000_f000n);
    d.map(DDW_POWERNV, 0x6000_0000n, 0x20000n, RW);
    expect(d.unmap(DDW_POWERNV, 0x1000n)).toBe(0x10000n);
    expect(d.iovaToPhys(DDW_POWERNV)).toBe(0n);
    expect(d.iovaToPhys(DDW_POWERNV + 0x10000n)).toBe(0x6001_0000n);
    expect(sub.checkInvariants()).toEqual([]);
    d.free();
  });
});

describe("sPAPR TCE driver: DMA through the PE's TVEs", () => {
  it("translates through the attached paging domain's windows; faults outside, on a hole, and on a read-only TCE write", () => {
    const { sub, drv } = bootSpapr();
    const dev = sub.device(BDF)!;
    const d = drv.allocPaging(dev, 0, userData(TWO_WINDOWS));
    dev.group.claimDmaOwner("owner");
    dev.group.attach(d);
    d.map(0x3000n, 0x7000_0000n, 0x2000n, RW);
    d.map(0x5000n, 0x7100_0000n, 0x1000n, IOMMU_READ);
    d.map(DDW_POWERNV, 0x7200_0000n, 0x10000n, RW);
    expect(dev.dmaTranslate(0x3800n, 0x1000, true)).toEqual({
      ok: true,
      segments: [{ pa: 0x7000_0800, len: 0x1000 }],
    });
    expect(dev.dmaTranslate(DDW_POWERNV + 0x10n, 0x100, false)).toEqual({
      ok: true,
      segments: [{ pa: 0x7200_0010, len: 0x100 }],
    });
    expect(dev.dmaTranslate(0x5000n, 8, false).ok).toBe(true);
    expect(dev.dmaTranslate(0x5000n, 8, true)).toEqual({
      ok: false,
      addr: 0x5000n,
      reason: "write-protected",
    });
    expect(dev.dmaTranslate(0x6000n, 8, false)).toEqual({ ok: false, addr: 0x6000n, reason: "not-present" });
    expect(dev.dmaTranslate(2n * GIB, 8, false)).toEqual({
      ok: false,
      addr: 2n * GIB,
      reason: "out-of-range",
    });
    expect(dev.dmaTranslate(GIB - 8n, 16, false)).toEqual({
      ok: false,
      addr: GIB - 8n,
      reason: "not-present",
    });
    dev.group.detach();
    expect(dev.dmaTranslate(0x3800n, 8, false)).toEqual({ ok: false, addr: 0x3800n, reason: "blocked" });
    d.free();
  });

  it("a blocked group translates through the windows its owner set on the table_group", () => {
    const { sub, drv } = bootSpapr();
    const dev = sub.device(BDF)!;
    dev.group.claimDmaOwner("container");
    const tg = drv.tableGroup(dev.group);
    const t = drv.platform.createTable(1, 16, 4n * GIB, 1);
    tg.setWindow(1, t);
    expect(t.map(Number(DDW_POWERNV >> 16n) + 2, 0x40000, 1, RW)).toBe(0);
    expect(dev.dmaTranslate(DDW_POWERNV + 0x20004n, 4, true)).toEqual({
      ok: true,
      segments: [{ pa: 0x4000_0004, len: 4 }],
    });
    expect(dev.dmaTranslate(0x1000n, 4, true)).toEqual({ ok: false, addr: 0x1000n, reason: "out-of-range" });
    tg.unsetWindow(1);
    expect(dev.dmaTranslate(DDW_POWERNV, 4, true).ok).toBe(false);
    t.destroy();
  });

  it("on the PLATFORM domain powernv's bypass window maps RAM 1:1 at 1<<59; pseries has none", () => {
    const pnv = bootSpapr().sub.device(BDF)!;
    expect(pnv.dmaTranslate(DDW_POWERNV + 0x1000n, 16, true)).toEqual({
      ok: true,
      segments: [{ pa: 0x1000, len: 16 }],
    });
    expect(pnv.dmaTranslate(0x1000n, 16, true)).toEqual({ ok: false, addr: 0x1000n, reason: "not-present" });
    const ps = bootSpapr({ platform: "pseries" }).sub.device(BDF)!;
    expect(ps.dmaTranslate(DDW_POWERNV + 0x1000n, 16, true).ok).toBe(false);
  });
});

describe("sPAPR TCE driver: hw_info and table sizes", () => {
  it("reports the platform's window slots, page sizes and levels as IOMMU_HW_INFO_TYPE_SPAPR_TCE", () => {
    const cases: [SpaprMachineOptions, bigint, number, bigint][] = [
      [{}, DDW_POWERNV, 5, 0x1011000n],
      [{ platform: "pseries", pgsizes: [12, 16, 21, 30] }, 4n * GIB, 1, 0x40211000n],
    ];
    for (const [opts, ddw, levels, pgsizes] of cases) {
      const { sub } = bootSpapr(opts);
      const info = sub.device(BDF)!.hwInfo(0);
      expect(info.type).toBe(IOMMU_HW_INFO_TYPE_SPAPR_TCE);
      expect(info.data.length).toBe(48);
      expect(decode(iommu_hw_info_spapr_tce, info.data)).toMatchObject({
        flags: BigInt(IOMMU_HW_INFO_SPAPR_TCE_DDW),
        max_dynamic_windows_supported: 2n,
        pgsizes,
        max_levels: BigInt(levels),
        dma32_window_start: 0n,
        dma32_window_size: GIB,
        dma64_window_start: ddw,
      });
    }
    const { sub } = bootSpapr();
    expect(errnoOf(() => sub.device(BDF)!.hwInfo(4))).toBe(EOPNOTSUPP);
  });

  it("get_table_size follows pnv_pci_ioda2_get_table_size (twice: hardware table and userspace copy)", () => {
    const { drv } = bootSpapr();
    const p = drv.platform;
    expect(p.getTableSize(12, GIB, 1)).toBe(2n * (2n << 20n));
    expect(p.getTableSize(16, 64n * GIB, 2)).toBe(2n * (8n * 1024n * 1024n + 8192n));
    expect(p.getTableSize(12, 0x1000n, 1)).toBe(2n * 4096n);
    expect(p.getTableSize(12, GIB, 0)).toBe(0n);
    expect(p.getTableSize(12, GIB, 6)).toBe(0n);
    expect(p.getTableSize(12, 3n * GIB, 2)).toBe(0n);
  });
});
