import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { EBUSY, EINVAL, ENOENT, ENOMEM, ENOSPC, ENOTTY, ENXIO, EPERM } from "../../src/uapi/errno.js";
import {
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  MAP_ANONYMOUS,
  MAP_HUGE_2MB,
  MAP_HUGETLB,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_FEATURE,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_DISABLE,
  VFIO_IOMMU_ENABLE,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
  VFIO_IOMMU_SPAPR_TCE_CREATE,
  VFIO_IOMMU_SPAPR_TCE_GET_INFO,
  VFIO_IOMMU_SPAPR_TCE_REMOVE,
  VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
  VFIO_SPAPR_TCE_IOMMU,
  VFIO_SPAPR_TCE_v2_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
  vfio_iommu_spapr_register_memory,
  vfio_iommu_spapr_tce_create,
  vfio_iommu_spapr_tce_info,
  vfio_iommu_spapr_tce_remove,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from "../../src/uapi/index.js";
import {
  buffer,
  doorbell,
  enableBusMaster,
  type GroupOpened,
  le,
  reg,
  sioctl,
  withRegions,
} from "../e2e/driver.js";

const GIB = 1n << 30n;
const DDW = 1n << 59n;
const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

function machine(opts: ConstructorParameters<typeof Machine>[0] = {}): Machine {
  const m = new Machine({ iommu: "spapr", ...opts });
  expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
  return m;
}

/** Group + container, SET_IOMMU(type), device fd. */
function open(p: Process, type: number, groupId = 0, bdf = "0000:00:04.0"): GroupOpened {
  const group = p.open(`/dev/vfio/${groupId}`);
  const container = p.open("/dev/vfio/vfio");
  expect(p.ioctl(group, VFIO_GROUP_SET_CONTAINER, le(container, 4))).toBe(0);
  expect(p.ioctl(container, VFIO_SET_IOMMU, BigInt(type))).toBe(0);
  const dev = p.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${bdf}\0`));
  expect(dev).toBeGreaterThanOrEqual(0);
  return { ...withRegions(p, dev), group, container };
}

function register(
  o: GroupOpened,
  vaddr: bigint,
  size: bigint,
  cmd = VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
): number {
  return sioctl(o.p, o.container, cmd, vfio_iommu_spapr_register_memory, { argsz: 24, vaddr, size }).ret;
}

function create(
  o: GroupOpened,
  pageShift: number,
  windowSize: bigint,
  levels: number,
): { ret: number; start: bigint } {
  const r = sioctl(o.p, o.container, VFIO_IOMMU_SPAPR_TCE_CREATE, vfio_iommu_spapr_tce_create, {
    argsz: 40,
    page_shift: pageShift,
    window_size: windowSize,
    levels,
  });
  return { ret: r.ret, start: r.out.start_addr };
}

function remove(o: GroupOpened, start: bigint): number {
  return sioctl(o.p, o.container, VFIO_IOMMU_SPAPR_TCE_REMOVE, vfio_iommu_spapr_tce_remove, {
    argsz: 16,
    start_addr: start,
  }).ret;
}

function map(o: GroupOpened, vaddr: bigint, iova: bigint, size: bigint, flags = RW): number {
  return sioctl(o.p, o.container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
    argsz: 32,
    flags,
    vaddr,
    iova,
    size,
  }).ret;
}

function unmap(o: GroupOpened, iova: bigint, size: bigint): number {
  return sioctl(o.p, o.container, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { argsz: 24, iova, size })
    .ret;
}

function huge(p: Process, len = 2n << 20n): bigint {
  const va = p.mmap(
    0n,
    len,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB,
  );
  expect(va > 0n).toBe(true);
  return va;
}

function lockedVm(p: Process): number {
  return p.task.mm.lockedVm;
}

/** Everything that must come back: pins, tables, objects, locked_vm. */
function snapshot(m: Machine, p: Process) {
  const c = m.debug.counters();
  return {
    pinned: c.pinnedPages,
    pt: c.ptFrames + c.spaprTceTableFrames,
    used: c.usedFrames,
    locked: lockedVm(p),
  };
}

describe("legacy sPAPR TCE v2 container", () => {
  it("GET_INFO, register memory, create a 64-bit window, map, DMA, remove; nothing left after exit", () => {
    const m = machine();
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const base = snapshot(m, p);
    const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
    const info = sioctl(p, o.container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, vfio_iommu_spapr_tce_info, {
      argsz: 32,
    });
    expect(info.ret).toBe(0);
    expect(info.out).toMatchObject({
      flags: 1n,
      dma32_window_start: 0n,
      dma32_window_size: GIB,
      "ddw.pgsizes": 0x1011000n,
      "ddw.max_dynamic_windows_supported": 2n,
      "ddw.levels": 5n,
    });
    // the source: 2 MiB of hugetlb memory (64 KiB TCEs need pages at least that large)
    const src = huge(p);
    const pattern = new Uint8Array(0x10000).map((_, i) => (i * 5 + 1) & 0xff);
    expect(p.writeMemory(src, pattern)).toBe(0);
    const dst = buffer(p, 0x10000, () => 0);
    expect(register(o, src, 2n << 20n)).toBe(0);
    expect(register(o, dst, 0x10000n)).toBe(0);
    expect(lockedVm(p) - base.locked).toBe(512 + 16);
    // CREATE first makes the pending default window (slot 0), then the DDW at 1<<59
    const w = create(o, 16, 16n * GIB, 2);
    expect(w).toEqual({ ret: 0, start: DDW });
    expect(map(o, src, DDW + 0x100000n, 0x10000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(map(o, dst, 0x10000n, 0x10000n, VFIO_DMA_MAP_FLAG_WRITE)).toBe(0);
    enableBusMaster(o);
    doorbell(o, DDW + 0x100000n, 0x10000n, 0x10000n);
    expect(reg(o, 0x24)).toBe(2n);
    expect(p.readMemory(dst, 0x10000)).toEqual(pattern);
    // read-only TCE: the device cannot write through it
    doorbell(o, 0x10000n, DDW + 0x100000n, 16n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(m.debug.checkInvariants()).toEqual([]);
    expect(remove(o, DDW)).toBe(0);
    doorbell(o, DDW + 0x100000n, 0x10000n, 16n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(unmap(o, 0x10000n, 0x10000n)).toBe(0);
    expect(
      sioctl(p, o.container, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, vfio_iommu_spapr_register_memory, {
        argsz: 24,
        vaddr: dst,
        size: 0x10000n,
      }).ret,
    ).toBe(0);
    p.exit();
    expect(snapshot(m, p)).toMatchObject({ pinned: base.pinned, pt: base.pt, locked: base.locked });
    expect(m.debug.counters().vfioContainers).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("UNREGISTER while a TCE points into the memory: 0, yet the pages stay pinned and charged and DMA still reaches them", () => {
    const m = machine();
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
    const base = snapshot(m, p);
    const pattern = new Uint8Array(0x1000).map((_, i) => (i * 7 + 3) & 0xff);
    const src = buffer(p, 0x10000, (i) => pattern[i % 0x1000]);
    const dst = buffer(p, 0x10000, () => 0);
    expect(register(o, src, 0x10000n)).toBe(0);
    expect(register(o, dst, 0x10000n)).toBe(0);
    expect(create(o, 16, 4n * GIB, 1).ret).toBe(0);
    // 4 KiB TCEs in the default window: src at 0x20000 (read), dst at 0x40000 (write)
    expect(map(o, src, 0x20000n, 0x10000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(map(o, dst, 0x40000n, 0x10000n, VFIO_DMA_MAP_FLAG_WRITE)).toBe(0);
    const mapped = snapshot(m, p);
    expect(mapped.pinned - base.pinned).toBe(32);
    // mm_iommu_put finds TCEs still using src: the region is kept (the kernel ignores that EBUSY)
    expect(register(o, src, 0x10000n, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(0);
    expect(snapshot(m, p)).toEqual(mapped);
    // the container forgot it, so a second UNREGISTER finds nothing
    expect(register(o, src, 0x10000n, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(-ENOENT);
    // even with the user mapping gone and the memory reused, the pinned pages still hold the data
    expect(p.munmap(src, 0x10000n)).toBe(0);
    buffer(p, 0x40000, () => 0xee);
    expect(snapshot(m, p).pinned).toBe(mapped.pinned);
    enableBusMaster(o);
    doorbell(o, 0x20000n, 0x40000n, 0x1000n);
    expect(reg(o, 0x24)).toBe(2n);
    expect(p.readMemory(dst, 0x1000)).toEqual(pattern);
    expect(m.debug.checkInvariants()).toEqual([]);
    // clearing the TCEs does not free it either: it stays pinned until its owner goes
    expect(unmap(o, 0x20000n, 0x10000n)).toBe(0);
    expect(snapshot(m, p).pinned).toBe(mapped.pinned);
    p.exit();
    expect(snapshot(m, p)).toMatchObject({ pinned: base.pinned, pt: base.pt, locked: base.locked });
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("a short GET_INFO argsz gets only the 16-byte head; v1 reports no DDW; no group: ENXIO", () => {
    const m = machine();
    const p = m.spawn();
    const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
    const bytes = new Uint8Array(32).fill(0xee);
    new DataView(bytes.buffer).setUint32(0, 16, true);
    expect(p.ioctl(o.container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, bytes)).toBe(0);
    expect(bytes[4]).toBe(1);
    expect([...bytes.subarray(16)]).toEqual(new Array(16).fill(0xee));
    const short = new Uint8Array(16);
    new DataView(short.buffer).setUint32(0, 12, true);
    expect(p.ioctl(o.container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, short)).toBe(-EINVAL);
    const p1 = machine().spawn({ rlimitMemlock: 2n * GIB });
    const o1 = open(p1, VFIO_SPAPR_TCE_IOMMU);
    const i1 = sioctl(p1, o1.container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, vfio_iommu_spapr_tce_info, {
      argsz: 32,
    });
    expect(i1.out.flags).toBe(0n);
    expect(i1.out["ddw.pgsizes"]).toBe(0n);
  });

  it("CHECK_EXTENSION answers both sPAPR types and not type1 (PPC64 builds no type1)", () => {
    const m = machine();
    const p = m.spawn();
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_SPAPR_TCE_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_SPAPR_TCE_v2_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(0);
    expect(m.kconfig.VFIO_IOMMU_TYPE1).toBe(false);
    const g = p.open("/dev/vfio/0");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(-19);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_SPAPR_TCE_v2_IOMMU))).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_SPAPR_TCE_IOMMU))).toBe(1);
  });

  describe("errors change nothing", () => {
    function ready() {
      const m = machine();
      const p = m.spawn({ rlimitMemlock: 64n << 20n });
      const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
      const small = buffer(p, 0x10000, () => 3);
      const big = huge(p);
      return { m, p, o, small, big };
    }

    it("MAP before REGISTER_MEMORY is EPERM", () => {
      const { m, p, o, small } = ready();
      const s = snapshot(m, p);
      expect(map(o, small, 0n, 0x1000n)).toBe(-EPERM);
      expect(snapshot(m, p)).toEqual(s);
    });

    it("TCE_CREATE: ENOSPC with both slots used, EINVAL for a page size outside the bitmap or bad flags", () => {
      const { m, p, o } = ready();
      const s0 = snapshot(m, p);
      // 2 MiB pages are not in this PHB's 4K|64K|16M
      expect(create(o, 21, 4n * GIB, 1).ret).toBe(-EINVAL);
      // that call created the pending default window first (as the kernel does)
      const s = snapshot(m, p);
      expect(s.pt - s0.pt).toBe(512);
      expect(create(o, 16, 3n * GIB, 1).ret).toBe(-EINVAL);
      expect(create(o, 16, 4n * GIB, 6).ret).toBe(-EINVAL);
      const f = sioctl(p, o.container, VFIO_IOMMU_SPAPR_TCE_CREATE, vfio_iommu_spapr_tce_create, {
        argsz: 40,
        flags: 1,
        page_shift: 16,
        window_size: 4n * GIB,
        levels: 1,
      });
      expect(f.ret).toBe(-EINVAL);
      expect(snapshot(m, p)).toEqual(s);
      expect(create(o, 24, 64n * GIB, 1).ret).toBe(0);
      const full = snapshot(m, p);
      expect(create(o, 16, 4n * GIB, 1).ret).toBe(-ENOSPC);
      expect(snapshot(m, p)).toEqual(full);
    });

    it("TCE_CREATE over RLIMIT_MEMLOCK is ENOMEM and charges nothing", () => {
      const m = machine();
      const p = m.spawn({ rlimitMemlock: (9n << 20n) / 2n });
      const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
      const base = snapshot(m, p);
      // the default window (1 GiB of 4 KiB TCEs: 2 x 2 MiB charged) fits, the 4 GiB DDW (2 x 512 KiB) does not
      expect(create(o, 16, 4n * GIB, 1).ret).toBe(-ENOMEM);
      const s = snapshot(m, p);
      expect(s.locked - base.locked).toBe(1024);
      expect(s.pt - base.pt).toBe(512);
      expect(create(o, 16, GIB, 1)).toEqual({ ret: 0, start: DDW });
      expect(lockedVm(p) - base.locked).toBe(1024 + 64);
    });

    it("MAP: ENXIO outside every window, EINVAL off the page size, 1 for an unaligned iova, EINVAL outside registered memory", () => {
      const { m, p, o, small, big } = ready();
      expect(register(o, small, 0x10000n)).toBe(0);
      expect(register(o, big, 2n << 20n)).toBe(0);
      expect(create(o, 16, 4n * GIB, 1).ret).toBe(0);
      const s = snapshot(m, p);
      expect(map(o, small, 2n * GIB, 0x1000n)).toBe(-ENXIO);
      expect(map(o, small, 0n, 0x1800n)).toBe(-EINVAL);
      expect(map(o, small + 0x800n, 0n, 0x1000n)).toBe(-EINVAL);
      expect(map(o, small, 0x800n, 0x1000n)).toBe(1);
      expect(map(o, small, 0n, 0x1000n, 0)).toBe(-EINVAL);
      expect(map(o, small, 0n, 0x1000n, 4)).toBe(-EINVAL);
      // not registered
      expect(map(o, small + 0x10000n, 0n, 0x1000n)).toBe(-EINVAL);
      // runs past the end of registered memory: the first pages are undone
      expect(map(o, small + 0xe000n, 0n, 0x4000n)).toBe(-EINVAL);
      // 4 KiB-registered memory cannot back a 64 KiB TCE
      expect(map(o, small, DDW, 0x10000n)).toBe(-EINVAL);
      // runs past the window end
      expect(map(o, small, GIB - 0x1000n, 0x2000n)).toBe(-EINVAL);
      expect(snapshot(m, p)).toEqual(s);
      expect(m.debug.checkInvariants()).toEqual([]);
      expect(map(o, big, DDW, 2n << 20n)).toBe(0);
      expect(map(o, small, 0n, 0x10000n)).toBe(0);
      // remapping a TCE replaces it and keeps the counts right
      expect(map(o, small, 0n, 0x1000n)).toBe(0);
    });

    it("REGISTER/UNREGISTER: EBUSY twice, EINVAL overlap or unaligned, ENOENT not registered", () => {
      const { m, p, o, small } = ready();
      expect(register(o, small, 0x10000n)).toBe(0);
      const s = snapshot(m, p);
      expect(register(o, small, 0x10000n)).toBe(-EBUSY);
      expect(register(o, small + 0x1000n, 0x1000n)).toBe(-EINVAL);
      expect(register(o, small + 0x10n, 0x1000n)).toBe(-EINVAL);
      expect(register(o, small, 0x10000n, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(0);
      expect(register(o, small, 0x10000n, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(-ENOENT);
      expect(snapshot(m, p).pinned).toBe(s.pinned - 16);
      expect(snapshot(m, p).locked).toBe(s.locked - 16);
    });

    it("REMOVE: EINVAL with no window there; removing the pending default window only cancels it", () => {
      const { m, p, o } = ready();
      const s = snapshot(m, p);
      expect(remove(o, DDW)).toBe(-EINVAL);
      expect(remove(o, 0n)).toBe(0);
      expect(snapshot(m, p)).toEqual(s);
      // nothing is pending now: the first window CREATE makes lands in slot 0 with the user's shape
      expect(create(o, 16, 4n * GIB, 1)).toEqual({ ret: 0, start: 0n });
    });
  });
});

describe("legacy sPAPR TCE v1 container", () => {
  it("ENABLE charges the 32-bit window; MAP pins page by page; DMA; DISABLE uncharges", () => {
    const m = machine();
    const p = m.spawn({ rlimitMemlock: 2n * GIB });
    const base = lockedVm(p);
    const o = open(p, VFIO_SPAPR_TCE_IOMMU);
    const src = buffer(p, 0x2000, (i) => i & 0xff);
    const dst = buffer(p, 0x2000, () => 0);
    expect(map(o, src, 0x1000n, 0x2000n)).toBe(-EPERM);
    expect(p.ioctl(o.container, VFIO_IOMMU_ENABLE)).toBe(0);
    expect(p.ioctl(o.container, VFIO_IOMMU_ENABLE)).toBe(-EBUSY);
    expect(lockedVm(p) - base).toBe(262144);
    expect(map(o, src, 0x1000n, 0x2000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    expect(map(o, dst, 0x8000n, 0x2000n, VFIO_DMA_MAP_FLAG_WRITE)).toBe(0);
    expect(m.debug.counters().vfioType1PinnedPages).toBe(4);
    enableBusMaster(o);
    doorbell(o, 0x1000n, 0x8000n, 0x2000n);
    expect(reg(o, 0x24)).toBe(2n);
    expect(p.readMemory(dst, 0x2000)).toEqual(p.readMemory(src, 0x2000));
    expect(unmap(o, 0x1000n, 0x2000n)).toBe(0);
    expect(m.debug.counters().vfioType1PinnedPages).toBe(2);
    // v2-only numbers are ENOTTY on v1
    for (const cmd of [
      VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
      VFIO_IOMMU_SPAPR_TCE_CREATE,
      VFIO_IOMMU_SPAPR_TCE_REMOVE,
    ]) {
      expect(p.ioctl(o.container, cmd, new Uint8Array(40))).toBe(-ENOTTY);
    }
    expect(p.ioctl(o.container, VFIO_IOMMU_DISABLE)).toBe(0);
    expect(p.ioctl(o.container, VFIO_IOMMU_DISABLE)).toBe(0);
    expect(map(o, src, 0x1000n, 0x1000n)).toBe(-EPERM);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.counters().ptFrames).toBe(0);
    expect(lockedVm(p)).toBe(base);
  });

  it("ENABLE over RLIMIT_MEMLOCK is ENOMEM; ENABLE/DISABLE are ENOTTY on v2; a second group is EBUSY on v1", () => {
    const m = machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy" },
      ],
    });
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    const p = m.spawn();
    const o = open(p, VFIO_SPAPR_TCE_IOMMU);
    const base = lockedVm(p);
    expect(p.ioctl(o.container, VFIO_IOMMU_ENABLE)).toBe(-ENOMEM);
    expect(lockedVm(p)).toBe(base);
    const g1 = p.open("/dev/vfio/1");
    expect(p.ioctl(g1, VFIO_GROUP_SET_CONTAINER, le(o.container, 4))).toBe(-EBUSY);
    expect(p.close(g1)).toBe(0);
    const p2 = m.spawn();
    const o2 = open(p2, VFIO_SPAPR_TCE_v2_IOMMU, 1, "0000:00:05.0");
    expect(p2.ioctl(o2.container, VFIO_IOMMU_ENABLE)).toBe(-ENOTTY);
    expect(p2.ioctl(o2.container, VFIO_IOMMU_DISABLE)).toBe(-ENOTTY);
  });
});

describe("BASE+17..20 mean different commands on a container and on a device fd", () => {
  it("on the v2 container they are REGISTER/UNREGISTER_MEMORY and TCE_CREATE/REMOVE", () => {
    const m = machine();
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
    const va = buffer(p, 0x4000, () => 0);
    expect(VFIO_IOMMU_SPAPR_REGISTER_MEMORY).toBe(VFIO_DEVICE_FEATURE);
    expect(register(o, va, 0x4000n)).toBe(0);
    expect(register(o, va, 0x4000n, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)).toBe(0);
    expect(create(o, 16, 4n * GIB, 1).start).toBe(DDW);
    expect(remove(o, DDW)).toBe(0);
  });

  it("on a device cdev they are DEVICE_FEATURE, BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT; the same numbers on the container still manage windows", () => {
    const m = machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy" },
      ],
    });
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = open(p, VFIO_SPAPR_TCE_v2_IOMMU);
    const iommufd = p.open("/dev/iommu");
    const cdev = p.open("/dev/vfio/devices/vfio1");
    expect(cdev).toBeGreaterThanOrEqual(0);
    // BASE+17 on the cdev: DEVICE_FEATURE (before bind: refused, no window or registration appears)
    const feat = new Uint8Array(16);
    new DataView(feat.buffer).setUint32(0, 16, true);
    const before = snapshot(m, p);
    expect(p.ioctl(cdev, VFIO_DEVICE_FEATURE, feat)).toBeLessThan(0);
    expect(snapshot(m, p)).toEqual(before);
    // BASE+18: BIND_IOMMUFD
    const b = sioctl(p, cdev, VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, vfio_device_bind_iommufd, {
      argsz: 24,
      iommufd,
    });
    expect(b.ret).toBe(0);
    const ioas = sioctl(p, iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
    // BASE+19: ATTACH_IOMMUFD_PT (the device gets the RFC's paging domain)
    const at = sioctl(
      p,
      cdev,
      VFIO_IOMMU_SPAPR_TCE_CREATE,
      vfio_device_attach_iommufd_pt,
      {
        argsz: 12,
        pt_id: ioas.out.out_ioas_id,
      },
      12,
    );
    expect(at.ret).toBe(0);
    expect(m.iommu.device("0000:00:05.0")!.domain.type).toBe("paging");
    // the container's windows are untouched by the cdev's commands
    expect(m.iommu.device("0000:00:04.0")!.domain.type).toBe("blocked");
    expect(create(o, 16, 4n * GIB, 1).start).toBe(DDW);
    // BASE+20: DETACH_IOMMUFD_PT on the cdev, TCE_REMOVE on the container
    expect(
      sioctl(p, cdev, VFIO_IOMMU_SPAPR_TCE_REMOVE, vfio_device_detach_iommufd_pt, { argsz: 8 }, 8).ret,
    ).toBe(0);
    expect(m.iommu.device("0000:00:05.0")!.domain.type).toBe("blocked");
    expect(remove(o, DDW)).toBe(0);
    // BASE+17/18 on the container: REGISTER/UNREGISTER_MEMORY
    const va = buffer(p, 0x4000, () => 0);
    expect(register(o, va, 0x4000n, VFIO_DEVICE_FEATURE)).toBe(0);
    expect(register(o, va, 0x4000n, VFIO_DEVICE_BIND_IOMMUFD)).toBe(0);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
