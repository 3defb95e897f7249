// /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct (drivers/iommu/intel/debugfs.c),
// rendered from the VT-d second-stage table bytes; vfio_dma_mapping_test reads it to demand
// 2 MiB / 1 GiB superpages for hugetlb memory in type1v2 and iommufd modes.
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { VFIO_DEVICE_BIND_IOMMUFD, VFIO_TYPE1v2_IOMMU } from "../../src/uapi/index.js";
import { BDF, buffer, dmaMap, dmaUnmap, ioasMap, ioasUnmap, openCdev, openGroup } from "../e2e/driver.js";

const FILE = `/sys/kernel/debug/iommu/intel/${BDF}/domain_translation_struct`;
const M2 = 2 << 20;
const G1 = 1 << 30;
const RW = 3;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_HUGETLB = 0x40000;
const MAP_HUGE_2MB = 21 << 26;
const MAP_HUGE_1GB = 30 << 26;

/** What the selftest's parser takes from the line of one IOVA: the five entries after the PFN (0 when absent). */
function entriesOf(text: string, iova: bigint): bigint[] | undefined {
  for (const line of text.split("\n")) {
    const tok = line.split(/[ \t|]+/).filter((t) => t !== "");
    if (tok.length === 0 || !tok[0].startsWith("0x") || BigInt(tok[0]) !== iova / 4096n) continue;
    const v = tok.slice(1).map((t) => BigInt(t));
    while (v.length < 5) v.push(0n);
    return v;
  }
  return undefined;
}

function hugeBuffer(p: Process, size: number, hugeFlag: number): bigint {
  const va = p.mmap(0n, BigInt(size), RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | hugeFlag);
  expect(va).toBeGreaterThan(0n);
  return va;
}

describe("Intel debugfs domain_translation_struct", () => {
  it("exists only on VT-d machines, one directory per function; the default domain has no leaf, blocked prints nothing", () => {
    expect(new Machine({ iommu: "amd" }).vfs.exists("/sys/kernel/debug/iommu/intel")).toBe(false);
    const m = new Machine({ iommu: "intel" });
    expect(m.vfs.listDir("/sys/kernel/debug/iommu/intel")).toEqual([BDF]);
    m.bindDriver(BDF, "vfio-pci");
    // the kernel's default DMA domain: its table, no mapping in it
    expect(m.readFile(FILE).split("\n")).toHaveLength(3);
    // user space owns the device now, not yet attached: the blocking domain has no table to print
    const p = m.spawn();
    const iommufd = p.open("/dev/iommu");
    const dev = p.open("/dev/vfio/devices/vfio0");
    expect(iommufd).toBeGreaterThanOrEqual(0);
    expect(dev).toBeGreaterThanOrEqual(0);
    const bind = new Uint8Array(24);
    new DataView(bind.buffer).setUint32(0, 24, true);
    new DataView(bind.buffer).setInt32(8, iommufd, true);
    expect(p.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, bind)).toBe(0);
    expect(m.readFile(FILE)).toBe("");
  });

  it("a 4 KiB mapping: the kernel's header, the column line, and PFN | PML5E PML4E PDPE PDE PTE", () => {
    const m = new Machine({ iommu: "intel" });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    const va = buffer(p, 4096);
    expect(dmaMap(o, va, 4096, 0x12345000n)).toBe(0);
    const lines = m.readFile(FILE).split("\n");
    const root = m.iommu.device(BDF)!.domain.pt!.info().rootPhys;
    expect(lines[0]).toBe(`Device ${BDF} with pasid 0 @0x${root.toString(16)}`);
    expect(lines[1]).toBe(
      "IOVA_PFN         \tPML5E             \tPML4E             \tPDPE              \tPDE               \tPTE",
    );
    expect(lines[2]).toMatch(
      /^0x0000000012345 \|\t0x0000000000000000\t0x[0-9a-f]{16}\t0x[0-9a-f]{16}\t0x[0-9a-f]{16}\t0x[0-9a-f]{16}$/,
    );
    expect(lines).toHaveLength(4); // one leaf, then the final newline
    const [pml5, pml4, pdpe, pde, pte] = entriesOf(m.readFile(FILE), 0x12345000n)!;
    expect(pml5).toBe(0n); // a 4-level table
    for (const e of [pml4, pdpe, pde]) expect(e & 0x80n).toBe(0n); // tables, not superpages
    // the PTE maps the buffer's frame, R and W (bits 0-1)
    const pa = p.task.mm.translate(va);
    expect(pte & ~0xfffn & ((1n << 52n) - 1n)).toBe(pa);
    expect(pte & 3n).toBe(3n);
    expect(dmaUnmap(o, 0x12345000n, 4096).ret).toBe(0);
    expect(entriesOf(m.readFile(FILE), 0x12345000n)).toBeUndefined();
  });

  it("type1v2: 2 MiB hugetlb memory is one PDE superpage (no PTE), 1 GiB one PDPE superpage (no PDE)", () => {
    const m = new Machine({ iommu: "intel", memoryBytes: 3n * BigInt(G1), hugepages: { "2M": 2, "1G": 1 } });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 2n * BigInt(G1) });
    const o = openGroup(p, 0, BDF, VFIO_TYPE1v2_IOMMU);
    const va2 = hugeBuffer(p, M2, MAP_HUGE_2MB);
    expect(dmaMap(o, va2, M2, 0x40000000n + BigInt(M2))).toBe(0);
    const e2 = entriesOf(m.readFile(FILE), 0x40000000n + BigInt(M2))!;
    expect(e2[4]).toBe(0n);
    expect(e2[3] & 0x80n).toBe(0x80n);
    const va1 = hugeBuffer(p, G1, MAP_HUGE_1GB);
    expect(dmaMap(o, va1, G1, 0x80000000n)).toBe(0);
    const e1 = entriesOf(m.readFile(FILE), 0x80000000n)!;
    expect(e1[3]).toBe(0n);
    expect(e1[4]).toBe(0n);
    expect(e1[2] & 0x80n).toBe(0x80n);
    expect(e1[2] & ~0xfffn & ((1n << 52n) - 1n)).toBe(p.task.mm.translate(va1));
    expect(dmaUnmap(o, 0x80000000n, G1).ret).toBe(0);
    expect(entriesOf(m.readFile(FILE), 0x80000000n)).toBeUndefined();
  });

  it("iommufd: hugetlb memory gets the same superpages", () => {
    const m = new Machine({ iommu: "intel", memoryBytes: 3n * BigInt(G1), hugepages: { "2M": 1, "1G": 1 } });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 2n * BigInt(G1) });
    const o = openCdev(m, p);
    const va2 = hugeBuffer(p, M2, MAP_HUGE_2MB);
    expect(ioasMap(o, va2, M2, BigInt(M2))).toBe(0);
    const e2 = entriesOf(m.readFile(FILE), BigInt(M2))!;
    expect([e2[3] & 0x80n, e2[4]]).toEqual([0x80n, 0n]);
    const va1 = hugeBuffer(p, G1, MAP_HUGE_1GB);
    expect(ioasMap(o, va1, G1, BigInt(G1))).toBe(0);
    const e1 = entriesOf(m.readFile(FILE), BigInt(G1))!;
    expect([e1[2] & 0x80n, e1[3], e1[4]]).toEqual([0x80n, 0n, 0n]);
    expect(ioasUnmap(o, BigInt(G1), G1)).toBe(0);
    expect(entriesOf(m.readFile(FILE), BigInt(G1))).toBeUndefined();
  });
});
