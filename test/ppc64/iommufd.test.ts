import { describe, expect, it } from "vitest";
import {
  IOMMU_HW_INFO_TYPE_SPAPR_TCE,
  IOMMU_HWPT_DATA_SPAPR_TCE,
  iommu_hw_info_spapr_tce,
} from "../../src/iommu/spapr-uapi.js";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { EADDRINUSE, EINVAL, ENOENT } from "../../src/uapi/errno.js";
import {
  decode,
  IOMMU_GET_HW_INFO,
  IOMMU_HWPT_ALLOC,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  iommu_hw_info,
  iommu_hwpt_alloc,
  iommu_ioas_alloc,
  iommu_ioas_iova_ranges,
  iommu_ioas_map,
  MAP_ANONYMOUS,
  MAP_HUGE_2MB,
  MAP_HUGETLB,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
} from "../../src/uapi/index.js";
import {
  buffer,
  type CdevOpened,
  doorbell,
  enableBusMaster,
  ioasMap,
  openCdev,
  reg,
  sioctl,
  withRegions,
} from "../e2e/driver.js";
import { DDW_POWERNV, GIB, TWO_WINDOWS, windowsData } from "./helpers.js";

const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

function spapr(opts: ConstructorParameters<typeof Machine>[0] = {}): { m: Machine; p: Process } {
  const m = new Machine({ iommu: "spapr", ...opts });
  expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
  return { m, p: m.spawn({ rlimitMemlock: 256n << 20n }) };
}

/** Bind the cdev and allocate an IOAS, but attach nothing yet. */
function bound(p: Process): CdevOpened {
  const iommufd = p.open("/dev/iommu");
  const dev = p.open("/dev/vfio/devices/vfio0");
  const b = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
  expect(b.ret).toBe(0);
  const a = sioctl(p, iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
  expect(a.ret).toBe(0);
  return {
    ...withRegions(p, dev),
    iommufd,
    ioas: Number(a.out.out_ioas_id),
    devid: Number(b.out.out_devid),
    hwpt: 0,
  };
}

function attach(o: CdevOpened, ptId: number): number {
  const r = sioctl(
    o.p,
    o.dev,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    vfio_device_attach_iommufd_pt,
    { argsz: 12, pt_id: ptId },
    12,
  );
  if (r.ret === 0) o.hwpt = Number(r.out.pt_id);
  return r.ret;
}

function hwptAlloc(o: CdevOpened, data: Uint8Array | undefined, at?: bigint): { ret: number; id: number } {
  let uptr = 0n;
  if (data !== undefined) {
    uptr = at ?? buffer(o.p, 4096);
    expect(o.p.writeMemory(uptr, data)).toBe(0);
  }
  const r = sioctl(o.p, o.iommufd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, {
    size: 48,
    dev_id: o.devid,
    pt_id: o.ioas,
    data_type: data === undefined ? 0 : IOMMU_HWPT_DATA_SPAPR_TCE,
    data_len: data?.length ?? 0,
    data_uptr: uptr,
  });
  return { ret: r.ret, id: Number(r.out.out_hwpt_id) };
}

function iovaRanges(o: CdevOpened): [bigint, bigint][] {
  const arr = buffer(o.p, 4096);
  const r = sioctl(o.p, o.iommufd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, {
    size: 32,
    ioas_id: o.ioas,
    num_iovas: 8,
    allowed_iovas: arr,
  });
  expect(r.ret).toBe(0);
  const n = Number(r.out.num_iovas);
  const bytes = o.p.readMemory(arr, 16 * n) as Uint8Array;
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  return Array.from({ length: n }, (_, i) => [
    dv.getBigUint64(i * 16, true),
    dv.getBigUint64(i * 16 + 8, true),
  ]);
}

/** IOMMU_IOAS_MAP without FIXED_IOVA: the kernel picks the IOVA. */
function ioasMapAny(o: CdevOpened, va: bigint, len: bigint): { ret: number; iova: bigint } {
  const r = sioctl(o.p, o.iommufd, IOMMU_IOAS_MAP, iommu_ioas_map, {
    size: 40,
    flags: RW,
    ioas_id: o.ioas,
    user_va: va,
    length: len,
  });
  return { ret: r.ret, iova: r.out.iova };
}

function copyOk(o: CdevOpened, src: bigint, dst: bigint, len: bigint): void {
  doorbell(o, src, dst, len);
  expect(reg(o, 0x24)).toBe(2n);
}

describe("PPC64 under iommufd (the RFC's check in this world)", () => {
  it("a device cdev on PPC64: IOAS, attach, map, DMA by the memcpy device, nothing left after exit", () => {
    const { m, p } = spapr();
    expect(m.kconfig.SPAPR_TCE_IOMMU).toBe(true);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["vfio0"]);
    const o = openCdev(m, p);
    // the auto domain is the RFC's: 4 KiB TCEs, one level, 1 GiB at 0
    expect(m.debug.hwpt(p, o.iommufd, o.hwpt)).toMatchObject({ format: "spapr_tce", topLevel: 0 });
    expect(iovaRanges(o)).toEqual([[0n, GIB - 1n]]);
    const src = buffer(p, 8192, (i) => (i * 13 + 1) & 0xff);
    const dst = buffer(p, 8192);
    expect(ioasMap(o, src, 8192, 0x100000n)).toBe(0);
    expect(ioasMap(o, dst, 8192, 0x200000n, IOMMU_IOAS_MAP_WRITEABLE)).toBe(0);
    enableBusMaster(o);
    copyOk(o, 0x100010n, 0x200020n, 5000n);
    expect(p.readMemory(dst + 0x20n, 5000)).toEqual(p.readMemory(src + 0x10n, 5000));
    // outside the window: the TVE faults before any byte moves
    doorbell(o, 0x100000n, GIB + 0x1000n, 16n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(GIB + 0x1000n);
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    const c = m.debug.counters();
    expect(c.pinnedPages).toBe(0);
    expect(c.ptFrames).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("without the RFC's Kconfig change (SPAPR_TCE_IOMMUFD off) PPC64 has no device cdev, only the group", () => {
    const m = new Machine({ iommu: "spapr", kconfig: { SPAPR_TCE_IOMMUFD: false } });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.kconfig.VFIO_DEVICE_CDEV).toBe(false);
    expect(m.listDir("/dev/vfio")).toEqual(["0", "vfio"]);
  });

  it("IOMMU_GET_HW_INFO reports the platform's windows (model extension type 0x5350)", () => {
    const { p } = spapr({ spapr: { platform: "pseries" } });
    const o = bound(p);
    const data = buffer(p, 4096);
    const r = sioctl(p, o.iommufd, IOMMU_GET_HW_INFO, iommu_hw_info, {
      size: 40,
      dev_id: o.devid,
      data_len: 64,
      data_uptr: data,
    });
    expect(r.ret).toBe(0);
    expect(r.out.out_data_type).toBe(BigInt(IOMMU_HW_INFO_TYPE_SPAPR_TCE));
    expect(r.out.data_len).toBe(48n);
    const info = decode(iommu_hw_info_spapr_tce, p.readMemory(data, 48) as Uint8Array);
    expect(info.dma64_window_start).toBe(4n * GIB);
    expect(info.max_levels).toBe(1n);
    expect(info.pgsizes).toBe(0x1011000n);
  });
});

describe("a two-window paging domain: IOVA ranges from the aperture list", () => {
  function twoWindows(): { m: Machine; p: Process; o: CdevOpened } {
    const { m, p } = spapr();
    const o = bound(p);
    const h = hwptAlloc(o, windowsData(TWO_WINDOWS));
    expect(h.ret).toBe(0);
    expect(attach(o, h.id)).toBe(0);
    return { m, p, o };
  }

  it("IOVA_RANGES returns each window; the gap and what follows are reserved", () => {
    const { o } = twoWindows();
    expect(iovaRanges(o)).toEqual([
      [0n, GIB - 1n],
      [DDW_POWERNV, DDW_POWERNV + 64n * GIB - 1n],
    ]);
  });

  it("a FIXED map in the gap or across a window edge is EINVAL and changes nothing", () => {
    const { m, p, o } = twoWindows();
    const va = buffer(p, 0x4000);
    const before = m.debug.counters();
    for (const iova of [GIB, 4n * GIB, GIB - 0x2000n, DDW_POWERNV - 0x1000n, DDW_POWERNV + 64n * GIB]) {
      expect(ioasMap(o, va, 0x4000, iova)).toBe(-EINVAL);
    }
    expect(m.debug.counters()).toEqual(before);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("allocated IOVAs land inside a window, never between windows", () => {
    const { p } = spapr();
    const o = bound(p);
    // a 2 MiB window 0 (512 TCEs) and the 64 KiB window at 1<<59
    const small = [{ startAddr: 0n, windowSize: 2n << 20n, pageShift: 12, levels: 1 }, TWO_WINDOWS[1]];
    const h = hwptAlloc(o, windowsData(small));
    expect(h.ret).toBe(0);
    expect(attach(o, h.id)).toBe(0);
    const va = buffer(p, 0x100000, () => 1);
    const a = ioasMapAny(o, va, 0x100000n);
    expect(a.ret).toBe(0);
    expect(a.iova + 0x100000n <= 2n << 20n).toBe(true);
    // 2 MiB no longer fits in window 0: it goes to window 1, not into the gap
    const huge = p.mmap(
      0n,
      2n << 20n,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB,
    );
    expect(huge > 0n).toBe(true);
    const b = ioasMapAny(o, huge, 2n << 20n);
    expect(b.ret).toBe(0);
    expect(b.iova >= DDW_POWERNV && b.iova + (2n << 20n) <= DDW_POWERNV + 64n * GIB).toBe(true);
    // 4 KiB-backed memory too large for window 0 would need window 1's 64 KiB TCEs: EINVAL
    const more = buffer(p, 0x200000, () => 2);
    const c = ioasMapAny(o, more, 0x200000n);
    expect(c.ret).toBe(-EINVAL);
  });

  it("DMA through the 64 KiB window needs memory backed by pages at least that large", () => {
    const { m, p, o } = twoWindows();
    const small = buffer(p, 0x20000, () => 7);
    const before = m.debug.counters();
    // 4 KiB pages cannot make 64 KiB TCEs: the driver refuses, iommufd unwinds
    expect(ioasMap(o, small, 0x20000, DDW_POWERNV)).toBe(-EINVAL);
    // (the unwind reads a never-written part of the table: one more resident zero frame, not a leak)
    expect({ ...m.debug.counters(), residentFrames: 0 }).toEqual({ ...before, residentFrames: 0 });
    const huge = p.mmap(
      0n,
      2n << 20n,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB,
    );
    const bytes = new Uint8Array(0x10000).map((_, i) => (i * 3) & 0xff);
    expect(p.writeMemory(huge, bytes)).toBe(0);
    expect(ioasMap(o, huge, 2 << 20, DDW_POWERNV + 0x200000n)).toBe(0);
    const dst = buffer(p, 0x10000);
    expect(ioasMap(o, dst, 0x10000, 0x40000n)).toBe(0);
    enableBusMaster(o);
    copyOk(o, DDW_POWERNV + 0x200000n, 0x40000n, 0x10000n);
    expect(p.readMemory(dst, 0x10000)).toEqual(bytes);
    expect(m.debug.checkInvariants()).toEqual([]);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.counters().ptFrames).toBe(0);
  });

  it("attaching a domain whose windows exclude an existing mapping fails and changes nothing", () => {
    const { m, p } = spapr();
    const o = bound(p);
    const va = buffer(p, 0x1000);
    expect(ioasMap(o, va, 0x1000, 4n * GIB)).toBe(0);
    const h = hwptAlloc(o, windowsData(TWO_WINDOWS));
    expect(h.ret).toBe(-EADDRINUSE);
    const before = m.debug.counters();
    expect(attach(o, o.ioas)).toBe(-EADDRINUSE);
    expect(m.debug.counters()).toEqual(before);
    expect(iovaRanges(o)).toEqual([[0n, (1n << 64n) - 1n]]);
  });

  it("HWPT_ALLOC with bad window data fails with the driver's errno and leaves no object", () => {
    const { m, p } = spapr();
    const o = bound(p);
    const at = buffer(p, 4096, () => 0);
    const before = m.debug.counters();
    const bad = windowsData([{ startAddr: 0x1000n, windowSize: GIB, pageShift: 12, levels: 1 }]);
    expect(hwptAlloc(o, bad, at).ret).toBe(-EINVAL);
    expect(m.debug.counters()).toEqual(before);
    expect(attach(o, 99)).toBe(-ENOENT);
  });
});
