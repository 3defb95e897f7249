// A tiny userspace driver for the memcpy device, written the way a VMM or
// DPDK-style driver talks to VFIO: only syscalls on a Process.
import { expect } from "vitest";
import type { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  decode,
  encode,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_alloc,
  iommu_ioas_map,
  iommu_ioas_unmap,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  type StructDef,
  type StructInput,
  type StructValues,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
  vfio_region_info,
} from "../../src/uapi/index.js";

export const BDF = "0000:00:04.0";

/** ioctl with a struct: returns the return value and the struct as the kernel left it. */
export function sioctl(
  p: Process,
  fd: number,
  req: number,
  def: StructDef,
  v: StructInput,
  size = def.size,
): { ret: number; out: StructValues; bytes: Uint8Array } {
  const bytes = encode(def, v, size);
  const ret = p.ioctl(fd, req, bytes);
  return { ret, out: decode(def, bytes), bytes };
}

export function le(v: bigint | number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = BigInt(v);
  for (let i = 0; i < n; i++) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
}

export function fromLe(b: Uint8Array | number): bigint {
  if (typeof b === "number") throw new Error(`read failed: ${b}`);
  let x = 0n;
  for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]);
  return x;
}

export function regionOffset(p: Process, dev: number, index: number): bigint {
  const r = sioctl(p, dev, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info, { argsz: 32, index });
  expect(r.ret).toBe(0);
  return r.out.offset;
}

/** A buffer in the process, filled with `fill` (or a byte pattern). */
export function buffer(p: Process, len: number, fill?: (i: number) => number): bigint {
  const va = p.mmap(0n, BigInt(len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  expect(va > 0n).toBe(true);
  if (fill) {
    const b = new Uint8Array(len);
    for (let i = 0; i < len; i++) b[i] = fill(i);
    expect(p.writeMemory(va, b)).toBe(0);
  }
  return va;
}

/** What a driver has after opening the device one way or another. */
export interface Opened {
  p: Process;
  dev: number;
  cfg: bigint;
  bar0: bigint;
}

/** Set PCI_COMMAND_MASTER through the config region. */
export function enableBusMaster(o: Opened, on = true): void {
  const cmd = Number(fromLe(o.p.pread(o.dev, 2, o.cfg + 4n)));
  expect(o.p.pwrite(o.dev, le(on ? cmd | 4 : cmd & ~4, 2), o.cfg + 4n)).toBe(2);
}

/** Route MSI vector 0 to a new eventfd; returns the eventfd. */
export function msiEventfd(o: Opened): number {
  const efd = o.p.eventfd();
  const hdr = new Uint8Array(24);
  const dv = new DataView(hdr.buffer);
  dv.setUint32(0, 24, true);
  dv.setUint32(4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, true);
  dv.setUint32(8, VFIO_PCI_MSI_IRQ_INDEX, true);
  dv.setUint32(12, 0, true);
  dv.setUint32(16, 1, true);
  dv.setInt32(20, efd, true);
  expect(o.p.ioctl(o.dev, VFIO_DEVICE_SET_IRQS, hdr)).toBe(0);
  return efd;
}

/** Program SRC/DST/LEN and ring the doorbell by pwrite to BAR0. */
export function doorbell(o: Opened, src: bigint, dst: bigint, len: bigint): void {
  expect(o.p.pwrite(o.dev, le(src, 8), o.bar0 + 0x08n)).toBe(8);
  expect(o.p.pwrite(o.dev, le(dst, 8), o.bar0 + 0x10n)).toBe(8);
  expect(o.p.pwrite(o.dev, le(len, 8), o.bar0 + 0x18n)).toBe(8);
  expect(o.p.pwrite(o.dev, le(1, 4), o.bar0 + 0x20n)).toBe(4);
}

export function reg(o: Opened, off: number, n = 4): bigint {
  return fromLe(o.p.pread(o.dev, n, o.bar0 + BigInt(off)));
}

export function withRegions(p: Process, dev: number): Opened {
  return {
    p,
    dev,
    cfg: regionOffset(p, dev, VFIO_PCI_CONFIG_REGION_INDEX),
    bar0: regionOffset(p, dev, VFIO_PCI_BAR0_REGION_INDEX),
  };
}

// --- cdev + iommufd ---------------------------------------------------------

export interface CdevOpened extends Opened {
  iommufd: number;
  ioas: number;
  devid: number;
  hwpt: number;
}

export function openCdev(m: Machine, p: Process, node = "/dev/vfio/devices/vfio0"): CdevOpened {
  const iommufd = p.open("/dev/iommu");
  expect(iommufd).toBeGreaterThanOrEqual(0);
  const dev = p.open(node);
  expect(dev).toBeGreaterThanOrEqual(0);
  const b = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
  expect(b.ret).toBe(0);
  const a = sioctl(p, iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
  expect(a.ret).toBe(0);
  const ioas = Number(a.out.out_ioas_id);
  const at = sioctl(
    p,
    dev,
    VFIO_DEVICE_ATTACH_IOMMUFD_PT,
    vfio_device_attach_iommufd_pt,
    { argsz: 12, pt_id: ioas },
    12,
  );
  expect(at.ret).toBe(0);
  void m;
  return {
    ...withRegions(p, dev),
    iommufd,
    ioas,
    devid: Number(b.out.out_devid),
    hwpt: Number(at.out.pt_id),
  };
}

export function ioasMap(
  o: CdevOpened,
  va: bigint,
  len: number,
  iova: bigint,
  flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
): number {
  return sioctl(o.p, o.iommufd, IOMMU_IOAS_MAP, iommu_ioas_map, {
    size: 40,
    flags: flags | IOMMU_IOAS_MAP_FIXED_IOVA,
    ioas_id: o.ioas,
    user_va: va,
    length: len,
    iova,
  }).ret;
}

export function ioasUnmap(o: CdevOpened, iova: bigint, len: number): number {
  return sioctl(o.p, o.iommufd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap, {
    size: 24,
    ioas_id: o.ioas,
    iova,
    length: len,
  }).ret;
}

export function detachPt(o: CdevOpened): number {
  return sioctl(o.p, o.dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt, { argsz: 8 }, 8)
    .ret;
}

// --- group + container ------------------------------------------------------

export interface GroupOpened extends Opened {
  group: number;
  container: number;
}

/** Open /dev/vfio/<group>, attach it to /dev/vfio/vfio, SET_IOMMU, get the device fd. */
export function openGroup(
  p: Process,
  groupId: number,
  bdf = BDF,
  iommuType = VFIO_TYPE1v2_IOMMU,
): GroupOpened {
  const group = p.open(`/dev/vfio/${groupId}`);
  expect(group).toBeGreaterThanOrEqual(0);
  const container = p.open("/dev/vfio/vfio");
  expect(container).toBeGreaterThanOrEqual(0);
  expect(p.ioctl(group, VFIO_GROUP_SET_CONTAINER, le(container, 4))).toBe(0);
  expect(p.ioctl(container, VFIO_SET_IOMMU, BigInt(iommuType))).toBe(0);
  const name = new TextEncoder().encode(`${bdf}\0`);
  const dev = p.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, name);
  expect(dev).toBeGreaterThanOrEqual(0);
  return { ...withRegions(p, dev), group, container };
}

export function dmaMap(
  o: GroupOpened,
  va: bigint,
  len: number,
  iova: bigint,
  flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
): number {
  return sioctl(o.p, o.container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
    argsz: 32,
    flags,
    vaddr: va,
    iova,
    size: len,
  }).ret;
}

export function dmaUnmap(
  o: GroupOpened,
  iova: bigint,
  len: number,
  flags = 0,
): { ret: number; size: bigint } {
  const r = sioctl(o.p, o.container, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, {
    argsz: 24,
    flags,
    iova,
    size: len,
  });
  return { ret: r.ret, size: r.out.size };
}
