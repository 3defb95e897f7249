// Shared pieces of the noiommu tests: a machine with no IOMMU, a cdev
// driver that binds and maps, GET_PA as user space calls it, and an
// independent AMDv1 decoder that reads the software table's bytes.
import { expect } from "vitest";
import { Machine, type MachineOptions } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_NOIOMMU_GET_PA,
  iommu_ioas_alloc,
  iommu_ioas_map,
  iommu_ioas_noiommu_get_pa,
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
import { type Opened, sioctl, withRegions } from "../e2e/driver.js";

export const BDF = "0000:00:04.0";
export const CDEV = "/dev/vfio/devices/noiommu-vfio0";
export const RAWIO = ["CAP_SYS_RAWIO"];

/** A machine with no IOMMU and the noiommu parameter on (override anything). */
export function noiommuMachine(opts: MachineOptions = {}): Machine {
  return new Machine({
    iommu: "none",
    params: { "vfio.enable_unsafe_noiommu_mode": true },
    ...opts,
  });
}

/** Boot, bind vfio-pci, spawn a CAP_SYS_RAWIO process. */
export function boot(opts: MachineOptions = {}): { m: Machine; p: Process } {
  const m = noiommuMachine(opts);
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  const p = m.spawn({ caps: RAWIO, rlimitMemlock: 1n << 34n });
  return { m, p };
}

export interface NoiommuDev extends Opened {
  iommufd: number;
  devid: number;
}

/** Open the noiommu cdev and bind it to a new iommufd. */
export function openBound(p: Process, node = CDEV): NoiommuDev {
  const iommufd = p.open("/dev/iommu");
  expect(iommufd).toBeGreaterThanOrEqual(0);
  const dev = p.open(node);
  expect(dev).toBeGreaterThanOrEqual(0);
  const b = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
  expect(b.ret).toBe(0);
  return { ...withRegions(p, dev), iommufd, devid: Number(b.out.out_devid) };
}

export function ioasAlloc(p: Process, iommufd: number): number {
  const a = sioctl(p, iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
  expect(a.ret).toBe(0);
  return Number(a.out.out_ioas_id);
}

/** ATTACH_IOMMUFD_PT: the return value and the pt_id written back. */
export function attach(o: NoiommuDev, ptId: number): { ret: number; ptId: number } {
  const r = sioctl(
    o.p,
    o.dev,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    vfio_device_attach_iommufd_pt,
    { argsz: 12, pt_id: ptId },
    12,
  );
  return { ret: r.ret, ptId: Number(r.out.pt_id) };
}

export function mapFixed(
  p: Process,
  iommufd: number,
  ioas: number,
  va: bigint,
  len: bigint,
  iova: bigint,
): number {
  return sioctl(p, iommufd, IOMMU_IOAS_MAP, iommu_ioas_map, {
    size: 40,
    flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
    ioas_id: ioas,
    user_va: va,
    length: len,
    iova,
  }).ret;
}

/** Anonymous memory, touched so every page has a frame. */
export function anon(p: Process, len: number, fill = 0x5a): bigint {
  const va = p.mmap(0n, BigInt(len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  expect(va > 0n).toBe(true);
  expect(p.writeMemory(va, new Uint8Array(len).fill(fill))).toBe(0);
  return va;
}

/** One 2 MiB hugetlb page. */
export function huge2m(p: Process): bigint {
  const va = p.mmap(
    0n,
    2n << 20n,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB,
  );
  expect(va > 0n).toBe(true);
  return va;
}

export interface GetPaResult {
  ret: number;
  phys: bigint;
  length: bigint;
}

/** IOMMU_IOAS_NOIOMMU_GET_PA as user space calls it. */
export function getPa(
  p: Process,
  iommufd: number,
  ioas: number,
  iova: bigint,
  length: bigint,
  extra: { flags?: number; reserved?: number } = {},
): GetPaResult {
  const r = sioctl(p, iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, iommu_ioas_noiommu_get_pa, {
    size: 40,
    flags: extra.flags ?? 0,
    ioas_id: ioas,
    __reserved: extra.reserved ?? 0,
    iova,
    length,
  });
  return { ret: r.ret, phys: r.out.out_phys, length: r.out.length };
}

// --- an AMDv1 decoder of our own (pagetables.md §2.1), reading raw bytes ----

function rd64(m: Machine, pa: bigint): bigint {
  const b = m.debug.readPhys(pa, 8);
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

export interface DecodedLeaf {
  pa: bigint;
  /** The leaf's size in bytes (a contiguous NL=7 run counts as one leaf). */
  size: bigint;
  pte: bigint;
  level: number;
}

/**
 * Walk the table from the root as the AMD IOMMU would: PR (bit 0), NL
 * (bits 11:9: 0 or 7 = leaf, else the child's level), OA bits 51:12, and
 * for NL=7 the size encoded as trailing ones in the OA field.
 */
export function walkAmdv1(m: Machine, root: bigint, topLevel: number, iova: bigint): DecodedLeaf | null {
  let table = root;
  for (let level = topLevel; level >= 0; level--) {
    const shift = 12n + 9n * BigInt(level);
    const idx = (iova >> shift) & 511n;
    const pte = rd64(m, table + idx * 8n);
    if ((pte & 1n) === 0n) return null;
    const nl = Number((pte >> 9n) & 7n);
    const oa = pte & 0x000f_ffff_ffff_f000n;
    if (level === 0 || nl === 0 || nl === 7) {
      if (nl !== 7) return { pa: oa, size: 1n << shift, pte, level };
      // Trailing ones from bit 12 up encode the size: 2^(ones + 13).
      let ones = 0n;
      while ((oa >> (12n + ones)) & 1n) ones++;
      const size = 1n << (ones + 13n);
      const base = oa & ~(size - 1n);
      return { pa: base, size, pte, level };
    }
    expect(nl).toBe(level); // a table pointer carries the level of the entry holding it
    table = oa;
  }
  return null;
}

/** The PA of `iova` per the decoded table (0n when unmapped). */
export function tablePa(m: Machine, root: bigint, topLevel: number, iova: bigint): bigint {
  const l = walkAmdv1(m, root, topLevel, iova);
  if (l === null) return 0n;
  return l.pa + (iova & (l.size - 1n));
}
