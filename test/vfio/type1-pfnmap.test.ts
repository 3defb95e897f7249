// DMA-mapping a BAR mmap (a VM_PFNMAP VMA): type1's vaddr_get_pfns follows
// the device's pfns when pin_user_pages refuses device memory; iommufd
// only pins, so it refuses (vfio_dma_mapping_mmio_test's rule).
import { describe, expect, it } from "vitest";
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from "../../src/hw/pci-regs.js";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  EFAULT,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from "../../src/uapi/index.js";
import { BDF, buffer, type GroupOpened, ioasMap, le, openCdev, sioctl, withRegions } from "../e2e/driver.js";

function open(m: Machine, p: Process): GroupOpened {
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  const group = p.open("/dev/vfio/0");
  const container = p.open("/dev/vfio/vfio");
  expect(p.ioctl(group, VFIO_GROUP_SET_CONTAINER, le(container, 4))).toBe(0);
  expect(p.ioctl(container, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(0);
  const dev = p.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${BDF}\0`));
  expect(dev).toBeGreaterThanOrEqual(0);
  return { ...withRegions(p, dev), group, container };
}

const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
const map = (o: GroupOpened, vaddr: bigint, iova: bigint, size: bigint, flags = RW) =>
  sioctl(o.p, o.container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
    argsz: 32,
    flags,
    vaddr,
    iova,
    size,
  }).ret;
const unmap = (o: GroupOpened, iova: bigint, size: bigint) =>
  sioctl(o.p, o.container, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { argsz: 24, iova, size }).ret;

describe("DMA mapping of a BAR mmap (VM_PFNMAP)", () => {
  it("type1: maps the BAR's bus address, pins nothing, charges no locked_vm; unmap leaves nothing", () => {
    const m = new Machine({ iommu: "amd" });
    const p = m.spawn({ rlimitMemlock: 1n << 30n });
    const o = open(m, p);
    const va = p.mmap(0n, 4096n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, o.bar0);
    expect(va).toBeGreaterThan(0n);
    const before = m.debug.counters();
    expect(map(o, va, 0x100000n, 0x1000n)).toBe(0);
    const [c] = m.debug.vfioContainers(p);
    expect(c.type1!.dmas[0]).toMatchObject({ iova: 0x100000n, vaddr: va, pinnedRuns: [] });
    const bar = m.pci.get(BDF)!.barAddress(0);
    const leaves = c.type1!.domains[0].table.dump!().filter((e) => e.level === 0);
    expect(leaves.map((e) => /pa=(0x[0-9a-f]+)/.exec(e.text)![1])).toEqual([`0x${bar.toString(16)}`]);
    expect(m.debug.counters().pinnedPages).toBe(before.pinnedPages);
    expect(p.task.mm.lockedVm).toBe(0);
    expect(unmap(o, 0x100000n, 0x1000n)).toBe(0);
    expect(m.debug.vfioContainers(p)[0].type1!.dmas).toEqual([]);
    // RAM still pins and charges as before
    const buf = buffer(p, 4096);
    expect(map(o, buf, 0x200000n, 0x1000n)).toBe(0);
    expect(p.task.mm.lockedVm).toBe(1);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.counters().objects).toBe(0);
  });

  it("type1: EFAULT when the device refuses the fault (decode off), for a write map of a read-only mapping, and for a range running past the BAR", () => {
    const m = new Machine({ iommu: "amd" });
    const p = m.spawn({ rlimitMemlock: 1n << 30n });
    const o = open(m, p);
    const ro = p.mmap(0n, 4096n, PROT_READ, MAP_SHARED, o.dev, o.bar0);
    expect(map(o, ro, 0x100000n, 0x1000n)).toBe(-EFAULT);
    expect(map(o, ro, 0x100000n, 0x1000n, VFIO_DMA_MAP_FLAG_READ)).toBe(0);
    const rw = p.mmap(0n, 4096n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, o.bar0);
    expect(map(o, rw, 0x200000n, 0x2000n)).toBe(-EFAULT); // the page after the BAR is not device memory
    const fn = m.pci.get(BDF)!;
    fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) & ~PCI_COMMAND_MEMORY);
    expect(map(o, rw, 0x300000n, 0x1000n)).toBe(-EFAULT);
    expect(m.debug.vfioContainers(p)[0].type1!.dmas.map((d) => d.iova)).toEqual([0x100000n]);
    expect(m.debug.failures().at(-1)?.reason).toMatch(/device refused the fault/);
  });

  it("iommufd: IOAS_MAP of a BAR mmap is EFAULT (pin_user_pages refuses VM_PFNMAP), nothing changes", () => {
    const m = new Machine({ iommu: "amd" });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 1n << 30n });
    const o = openCdev(m, p);
    const va = p.mmap(0n, 4096n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, o.bar0);
    expect(ioasMap(o, va, 4096, 0x100000n)).toBe(-EFAULT);
    const c = m.debug.counters();
    expect([c.pinnedPages, p.task.mm.lockedVm, p.task.mm.pinnedVm]).toEqual([0, 0, 0]);
    expect(m.debug.ioas(p, o.iommufd, o.ioas).areas).toEqual([]);
    expect(m.debug.failures().at(-1)?.reason).toMatch(/VM_PFNMAP/);
  });
});
