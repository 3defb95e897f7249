import { describe, expect, it } from "vitest";
import {
  MEMCPY_MSIX_BAR_SIZE,
  MEMCPY_MSIX_PBA_OFFSET,
  MEMCPY_MSIX_TABLE_OFFSET,
} from "../../src/hw/memcpy-dev.js";
import { Machine } from "../../src/kernel/machine.js";
import {
  E2BIG,
  EAGAIN,
  EBADF,
  EBADFD,
  EFAULT,
  EINVAL,
  ENOENT,
  ENOTTY,
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO,
  VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_PCI_BAR2_REGION_INDEX,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_info,
  vfio_irq_info,
  vfio_region_info,
} from "../../src/uapi/index.js";
import {
  BDF,
  doorbell,
  enableBusMaster,
  fromLe,
  le,
  openCdev,
  openGroup,
  reg,
  sioctl,
} from "../e2e/driver.js";

function bound() {
  const m = new Machine();
  m.bindDriver(BDF, "vfio-pci");
  const p = m.spawn({ rlimitMemlock: 64n << 20n });
  return { m, p, o: openCdev(m, p) };
}

function irqSet(
  flags: number,
  index: number,
  start: number,
  count: number,
  data: number[] = [],
  elem = 4,
  argsz?: number,
) {
  const b = new Uint8Array(20 + data.length * elem);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz ?? b.length, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, index, true);
  dv.setUint32(12, start, true);
  dv.setUint32(16, count, true);
  data.forEach((d, i) => {
    if (elem === 4) dv.setInt32(20 + 4 * i, d, true);
    else dv.setUint8(20 + i, d);
  });
  return b;
}

describe("device cdev before bind", () => {
  it("every ioctl but BIND, and read/write/mmap, give EINVAL", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const dev = p.open("/dev/vfio/devices/vfio0");
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 24 }).ret).toBe(-EINVAL);
    expect(p.ioctl(dev, VFIO_DEVICE_RESET)).toBe(-EINVAL);
    expect(p.ioctl(dev, 0x3b99)).toBe(-EINVAL);
    expect(p.pread(dev, 4, 7n << 40n)).toBe(-EINVAL);
    expect(p.pwrite(dev, new Uint8Array(4), 0n)).toBe(-EINVAL);
    expect(p.mmap(0n, 4096n, PROT_READ, MAP_SHARED, dev, 0n)).toBe(-BigInt(EINVAL));
  });
});

describe("VFIO_DEVICE_BIND_IOMMUFD check order", () => {
  function fresh() {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    return { m, p, ifd: p.open("/dev/iommu"), dev: p.open("/dev/vfio/devices/vfio0") };
  }
  const bind = (
    p: ReturnType<typeof fresh>["p"],
    dev: number,
    v: Record<string, number | bigint>,
    size = 24,
  ) => sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, v, size);

  it("argsz below 16 is EINVAL", () => {
    const { p, ifd, dev } = fresh();
    expect(bind(p, dev, { argsz: 15, iommufd: ifd }).ret).toBe(-EINVAL);
  });
  it("a non-zero byte past the 24-byte struct is E2BIG; a zero tail is fine", () => {
    const { p, ifd, dev } = fresh();
    const b = new Uint8Array(32);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 32, true);
    dv.setInt32(8, ifd, true);
    b[30] = 1;
    expect(p.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, b)).toBe(-E2BIG);
    b[30] = 0;
    expect(p.ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, b)).toBe(0);
  });
  it("a negative iommufd is EINVAL (not EBADF); unknown flags EINVAL; a token EFAULT unreadable, else EINVAL (not a PF or VF)", () => {
    const { p, dev } = fresh();
    expect(bind(p, dev, { argsz: 24, iommufd: -1 }).ret).toBe(-EINVAL);
    expect(bind(p, dev, { argsz: 24, iommufd: 0, flags: 2 }).ret).toBe(-EINVAL);
    // vfio-pci checks tokens, so the UUID is read first (vfio_df_check_token)
    expect(bind(p, dev, { argsz: 24, iommufd: 0, flags: 1 }).ret).toBe(-EFAULT);
    const uuid = p.mmap(0n, 4096n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(bind(p, dev, { argsz: 24, iommufd: 0, flags: 1, token_uuid_ptr: uuid }).ret).toBe(-EINVAL);
    expect(p.lastError()?.reason).toMatch(/not a PF or VF/);
  });
  it("a closed fd is EBADF, a file that is not an iommufd EBADFD", () => {
    const { p, dev } = fresh();
    expect(bind(p, dev, { argsz: 24, iommufd: 50 }).ret).toBe(-EBADF);
    expect(bind(p, dev, { argsz: 24, iommufd: p.eventfd() }).ret).toBe(-EBADFD);
  });
  it("binding twice is EINVAL; a second cdev fd of an open device is EINVAL; out_devid is written", () => {
    const { p, ifd, dev } = fresh();
    const r = bind(p, dev, { argsz: 24, iommufd: ifd });
    expect(r.ret).toBe(0);
    expect(r.out.out_devid).toBeGreaterThan(0n);
    expect(bind(p, dev, { argsz: 24, iommufd: ifd }).ret).toBe(-EINVAL);
    const dev2 = p.open("/dev/vfio/devices/vfio0");
    expect(dev2).toBeGreaterThanOrEqual(0);
    expect(bind(p, dev2, { argsz: 24, iommufd: ifd }).ret).toBe(-EINVAL);
  });
  it("a group-obtained device fd is EINVAL for BIND and ENOTTY for ATTACH/DETACH", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openGroup(p, 0);
    const ifd = p.open("/dev/iommu");
    expect(bind(p, o.dev, { argsz: 24, iommufd: ifd }).ret).toBe(-EINVAL);
    expect(
      sioctl(p, o.dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, { argsz: 16, pt_id: 1 })
        .ret,
    ).toBe(-ENOTTY);
    expect(
      p.ioctl(o.dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, new Uint8Array([12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    ).toBe(-ENOTTY);
  });
  it("without VFIO_DEVICE_CDEV there is no cdev and BIND on a group fd is ENOTTY", () => {
    const m = new Machine({ kconfig: { VFIO_DEVICE_CDEV: false } });
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    expect(p.open("/dev/vfio/devices/vfio0")).toBe(-ENOENT);
    const o = openGroup(p, 0);
    expect(bind(p, o.dev, { argsz: 24, iommufd: 0 }).ret).toBe(-ENOTTY);
  });
});

describe("ATTACH/DETACH_IOMMUFD_PT", () => {
  it("writes back the auto HWPT id; replace keeps it attached; errors change nothing", () => {
    const { m, p, o } = bound();
    expect(o.hwpt).not.toBe(o.ioas);
    const att = (v: Record<string, number>, size = 16) =>
      sioctl(p, o.dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, v, size);
    expect(att({ argsz: 11, pt_id: o.ioas }).ret).toBe(-EINVAL);
    expect(att({ argsz: 16, flags: 2, pt_id: o.ioas }).ret).toBe(-EINVAL);
    // vfio-pci has pasid_attach_ioas; an IOAS only gives automatic HWPTs, never PASID-compatible.
    expect(att({ argsz: 16, flags: 1, pt_id: o.ioas }).ret).toBe(-EINVAL);
    expect(att({ argsz: 16, pt_id: 0xffffffff }).ret).toBe(-ENOENT);
    // a second IOAS: replace
    const a2 = sioctl(p, o.iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
    const r = att({ argsz: 16, pt_id: Number(a2.out.out_ioas_id) });
    expect(r.ret).toBe(0);
    expect(r.out.pt_id).not.toBe(BigInt(o.hwpt));
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("vfio-pci ioctls", () => {
  // vfio_pci_core.c vfio_pci_ioctl_get_info: a zeroed struct, min(argsz, sizeof) bytes copied.
  it("GET_INFO: PCI|RESET, 9 regions, 5 irqs; copies min(argsz, 24) bytes of a zeroed struct", () => {
    const { p, o } = bound();
    const r = sioctl(p, o.dev, VFIO_DEVICE_GET_INFO, vfio_device_info, {
      argsz: 24,
      cap_offset: 0x55,
      pad: 0x66,
    });
    expect(r.ret).toBe(0);
    expect([r.out.flags, r.out.num_regions, r.out.num_irqs, r.out.cap_offset, r.out.pad]).toEqual([
      3n,
      9n,
      5n,
      0n,
      0n,
    ]);
    const s = sioctl(p, o.dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16, cap_offset: 0x55 });
    expect(s.out.cap_offset).toBe(0x55n);
    const t = sioctl(p, o.dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 18, cap_offset: 0x55555555 });
    expect(t.out.cap_offset).toBe(0x55550000n); // two bytes of the zeroed cap_offset reached user space
    expect(sioctl(p, o.dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 15 }).ret).toBe(-EINVAL);
  });

  it("GET_REGION_INFO bytes: config, BAR0, BAR1 (upper half), MSI-X BAR cap chain, ROM, VGA", () => {
    const { p, o } = bound();
    const ri = (index: number, argsz = 32, size = 32) =>
      sioctl(p, o.dev, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info, { argsz, index }, size);
    const cfg = ri(7);
    expect([cfg.out.flags, cfg.out.size, cfg.out.offset]).toEqual([3n, 4096n, 7n << 40n]);
    const bar0 = ri(0);
    expect([bar0.out.flags, bar0.out.size, bar0.out.offset, bar0.out.cap_offset]).toEqual([
      7n,
      4096n,
      0n,
      0n,
    ]);
    const bar1 = ri(1);
    expect([bar1.out.flags, bar1.out.size, bar1.out.offset]).toEqual([0n, 0n, 1n << 40n]);
    // BAR2 holds the MSI-X table: CAPS and, with room, the MSIX_MAPPABLE cap right after the struct
    const small = ri(2);
    expect(small.out.flags).toBe(0xfn);
    expect(small.out.argsz).toBe(40n);
    expect(small.out.cap_offset).toBe(0n);
    const big = ri(2, 40, 40);
    expect(big.out.cap_offset).toBe(32n);
    expect([...big.bytes.subarray(32, 40)]).toEqual([3, 0, 1, 0, 0, 0, 0, 0]);
    const rom = ri(6);
    expect([rom.out.flags, rom.out.size]).toEqual([0n, 0n]);
    expect(ri(8).ret).toBe(-EINVAL);
    expect(ri(9).ret).toBe(-EINVAL);
    expect(ri(7, 31).ret).toBe(-EINVAL);
  });

  it("GET_IRQ_INFO: INTx 0 vectors (no pin), MSI 1, MSI-X 4, ERR 1, REQ 1; index 5 EINVAL", () => {
    const { p, o } = bound();
    const ii = (index: number) =>
      sioctl(p, o.dev, VFIO_DEVICE_GET_IRQ_INFO, vfio_irq_info, { argsz: 16, index });
    expect([0, 1, 2, 3, 4].map((i) => [ii(i).out.flags, ii(i).out.count])).toEqual([
      [7n, 0n],
      [9n, 1n],
      [9n, 4n],
      [9n, 1n],
      [9n, 1n],
    ]);
    expect(ii(5).ret).toBe(-EINVAL);
  });

  it("SET_IRQS validation: argsz, index, flags, range, data type, data size; MASK on MSI ENOTTY", () => {
    const { p, o } = bound();
    const efd = p.eventfd();
    const TRIG = 0x20;
    const EFD = 0x4;
    const set = (b: Uint8Array) => p.ioctl(o.dev, VFIO_DEVICE_SET_IRQS, b);
    expect(set(irqSet(EFD | TRIG, 1, 0, 1, [efd], 4, 19))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 5, 0, 1, [efd]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG | 0x40, 1, 0, 1, [efd]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 1, 1, 1, [efd]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 1, 0, 2, [efd, efd]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | 0x2 | TRIG, 1, 0, 1, [efd]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 1, 0, 1, [efd], 4, 23))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 0, 0, 1, [efd]))).toBe(-EINVAL); // no INTx vectors
    expect(set(irqSet(0x1 | 0x8, 1, 0, 1))).toBe(-ENOTTY);
    expect(set(irqSet(EFD | TRIG, 1, 0, 1, [p.memfdCreate("x")]))).toBe(-EINVAL);
    expect(set(irqSet(EFD | TRIG, 1, 0, 1, [99]))).toBe(-EBADF);
    expect(set(irqSet(0x1 | TRIG, 1, 0, 1))).toBe(-EINVAL); // loopback before enabling
    // enable MSI, loopback through DATA_NONE and DATA_BOOL, then MSI-X refused while MSI is on
    expect(set(irqSet(EFD | TRIG, 1, 0, 1, [efd]))).toBe(0);
    expect(set(irqSet(0x1 | TRIG, 1, 0, 1))).toBe(0);
    expect(set(irqSet(0x2 | TRIG, 1, 0, 1, [1], 1))).toBe(0);
    expect(set(irqSet(0x2 | TRIG, 1, 0, 1, [0], 1))).toBe(0);
    expect(fromLe(p.read(efd, 8))).toBe(2n);
    expect(set(irqSet(EFD | TRIG, 2, 0, 1, [efd]))).toBe(-EINVAL);
    // disable with DATA_NONE count 0; then MSI-X works and delivers
    expect(set(irqSet(0x1 | TRIG, 1, 0, 0))).toBe(0);
    expect(set(irqSet(EFD | TRIG, 2, 0, 1, [efd]))).toBe(0);
    enableBusMaster(o);
    doorbell(o, 0n, 0n, 0n);
    expect(fromLe(p.read(efd, 8))).toBe(1n);
  });

  it("closing the device drops the eventfds it held", () => {
    const { m, p, o } = bound();
    const efd = p.eventfd();
    expect(p.ioctl(o.dev, VFIO_DEVICE_SET_IRQS, irqSet(0x24, 1, 0, 1, [efd]))).toBe(0);
    const before = m.debug.counters().openFiles;
    expect(p.close(o.dev)).toBe(0);
    expect(m.debug.counters().openFiles).toBe(before - 1);
    expect(m.debug.counters().vfioDeviceFiles).toBe(0);
  });

  it("RESET clears the registers; FEATURE is ENOTTY for unsupported features, EINVAL for bad flags", () => {
    const { p, o } = bound();
    enableBusMaster(o);
    doorbell(o, 0n, 0n, 0n);
    expect(reg(o, 0x30)).toBe(1n);
    expect(p.ioctl(o.dev, VFIO_DEVICE_RESET)).toBe(0);
    expect(reg(o, 0x30)).toBe(0n);
    expect(reg(o, 0x24)).toBe(0n);
    // bus mastering survives (the PCI core restores config around the FLR)
    expect(fromLe(p.pread(o.dev, 2, o.cfg + 4n)) & 4n).toBe(4n);
    const feat = (flags: number) =>
      p.ioctl(o.dev, VFIO_DEVICE_FEATURE, new Uint8Array([8, 0, 0, 0, ...le(flags, 4)]));
    expect(feat(0x10000 | 10)).toBe(-ENOTTY);
    expect(feat(0x30000 | 10)).toBe(-EINVAL);
    expect(feat(0x80000)).toBe(-EINVAL);
  });
});

describe("vfio-pci config space virtualization", () => {
  it("BARs size-probe virtually; the device keeps its address; bus master reaches the device", () => {
    const { m, p, o } = bound();
    const fn = m.pci.get(BDF)!;
    const hwBar = fn.barAddress(0);
    expect(fromLe(p.pread(o.dev, 4, o.cfg + 0x10n)) & ~0xfn).toBe(hwBar & 0xffffffffn);
    expect(p.pwrite(o.dev, le(0xffffffff, 4), o.cfg + 0x10n)).toBe(4);
    expect(fromLe(p.pread(o.dev, 4, o.cfg + 0x10n))).toBe(0xfffff004n);
    expect(fn.barAddress(0)).toBe(hwBar);
    expect(fromLe(p.pread(o.dev, 2, o.cfg + 4n))).toBe(2n); // memory on, master off after open
    enableBusMaster(o);
    expect(fn.busMaster()).toBe(true);
    // vendor ID is read-only; reading past config space is EFAULT
    expect(p.pwrite(o.dev, le(0x1234, 2), o.cfg)).toBe(2);
    expect(fromLe(p.pread(o.dev, 2, o.cfg))).toBe(0x1den << 4n);
    expect(p.pread(o.dev, 4, o.cfg + 4094n)).toBe(-14);
  });

  it("BAR access with memory decode off is EIO; past the BAR EINVAL; unimplemented BAR EINVAL", () => {
    const { p, o } = bound();
    expect(p.pread(o.dev, 4, o.bar0 + 4096n)).toBe(-EINVAL);
    expect(p.pread(o.dev, 4, 4n << 40n)).toBe(-EINVAL);
    expect(p.pwrite(o.dev, le(0, 2), o.cfg + 4n)).toBe(2);
    expect(p.pread(o.dev, 4, o.bar0)).toBe(-5);
  });
});

describe("BAR mmap", () => {
  it("loads and stores reach the device registers; MAP_PRIVATE and the config region are EINVAL", () => {
    const { m, p, o } = bound();
    const va = p.mmap(0n, 4096n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, o.bar0);
    expect(va > 0n).toBe(true);
    expect(fromLe(p.readMemory(va, 4))).toBe(0x5950434dn);
    expect(p.mmap(0n, 4096n, PROT_READ, MAP_PRIVATE, o.dev, o.bar0)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0n, 4096n, PROT_READ, MAP_SHARED, o.dev, o.cfg)).toBe(-BigInt(EINVAL));
    expect(p.mmap(0n, 8192n, PROT_READ, MAP_SHARED, o.dev, o.bar0)).toBe(-BigInt(EINVAL));
    // drive a copy through the mapping
    enableBusMaster(o);
    expect(p.writeMemory(va + 0x18n, le(0, 8))).toBe(0);
    expect(p.writeMemory(va + 0x20n, le(1, 4))).toBe(0);
    expect(fromLe(p.readMemory(va + 0x24n, 4))).toBe(2n);
    // the mapping keeps the device open after its fd is closed
    expect(p.close(o.dev)).toBe(0);
    expect(fromLe(p.readMemory(va + 0x30n, 4))).toBe(1n);
    expect(p.munmap(va, 4096n)).toBe(0);
    expect(m.vfio.devices.get(BDF)!.openCount).toBe(0);
  });
});

describe("MSI-X BAR mmap (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE)", () => {
  const bar2 = BigInt(VFIO_PCI_BAR2_REGION_INDEX) << 40n;
  const table = BigInt(MEMCPY_MSIX_TABLE_OFFSET);
  const pba = BigInt(MEMCPY_MSIX_PBA_OFFSET);

  it("is 16 KiB with the table and the PBA on pages of their own, and maps whole", () => {
    const { p, o } = bound();
    const ri = sioctl(p, o.dev, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info, { argsz: 32, index: 2 });
    expect([ri.out.flags, ri.out.size, ri.out.offset]).toEqual([0xfn, 0x4000n, bar2]);
    expect(MEMCPY_MSIX_BAR_SIZE).toBe(0x4000);
    expect(table / 4096n).not.toBe(pba / 4096n);
    expect(p.mmap(0n, 0x8000n, PROT_READ, MAP_SHARED, o.dev, bar2)).toBe(-BigInt(EINVAL));
    const va = p.mmap(0n, 0x4000n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, bar2);
    expect(va > 0n).toBe(true);
    // a partial mapping past the table page reaches the PBA page alone
    const vb = p.mmap(0n, 0x1000n, PROT_READ, MAP_SHARED, o.dev, bar2 + pba);
    expect(vb > 0n).toBe(true);
    expect(fromLe(p.readMemory(vb, 8))).toBe(0n);
    // the bytes between the structures read 0
    expect(fromLe(p.readMemory(va + 0x1000n, 8))).toBe(0n);
    expect(p.munmap(va, 0x4000n)).toBe(0);
    expect(p.munmap(vb, 0x1000n)).toBe(0);
  });

  it("a store to the table through the mapping reaches the device; read/write of the region skip the table", () => {
    const { p, o } = bound();
    const efd = p.eventfd();
    expect(p.ioctl(o.dev, VFIO_DEVICE_SET_IRQS, irqSet(0x24, 2, 0, 1, [efd]))).toBe(0);
    const va = p.mmap(0n, 0x4000n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, bar2);
    // vector 0 as the host programmed it: the interrupt window, unmasked
    expect(fromLe(p.readMemory(va + table, 4))).toBe(0xfee00000n);
    expect(fromLe(p.readMemory(va + table + 12n, 4))).toBe(0n);
    // vfio_pci_bar_rw excludes the table: reads are ones, writes are dropped
    expect([...(p.pread(o.dev, 4, bar2 + table + 12n) as Uint8Array)]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect(p.pwrite(o.dev, le(1, 4), bar2 + table + 12n)).toBe(4);
    expect(fromLe(p.readMemory(va + table + 12n, 4))).toBe(0n);
    // the mapping is the device's table: masking vector 0 there holds the completion in the PBA
    enableBusMaster(o);
    expect(p.writeMemory(va + table + 12n, le(1, 4))).toBe(0);
    doorbell(o, 0n, 0n, 0n);
    expect(p.read(efd, 8)).toBe(-EAGAIN);
    expect(fromLe(p.readMemory(va + pba, 8))).toBe(1n);
    // the PBA is outside the excluded table: the region reads it too
    expect(fromLe(p.pread(o.dev, 8, bar2 + pba))).toBe(1n);
    // unmasking sends the pending message
    expect(p.writeMemory(va + table + 12n, le(0, 4))).toBe(0);
    expect(fromLe(p.read(efd, 8))).toBe(1n);
    expect(fromLe(p.readMemory(va + pba, 8))).toBe(0n);
    expect(p.munmap(va, 0x4000n)).toBe(0);
  });

  it("a message rewritten through the mapping is one the host never set up: blocked, and logged", () => {
    const { m, p, o } = bound();
    const [e0, e1] = [p.eventfd(), p.eventfd()];
    expect(p.ioctl(o.dev, VFIO_DEVICE_SET_IRQS, irqSet(0x24, 2, 0, 2, [e0, e1]))).toBe(0);
    const va = p.mmap(0n, 0x4000n, PROT_READ | PROT_WRITE, MAP_SHARED, o.dev, bar2);
    const data0 = table + 8n;
    const data1 = table + 16n + 8n;
    const host0 = fromLe(p.readMemory(va + data0, 4));
    enableBusMaster(o);
    // a data word of the user's own: the completion (vector 0) reaches no eventfd
    expect(p.writeMemory(va + data0, le(0x1234, 4))).toBe(0);
    doorbell(o, 0n, 0n, 0n);
    expect(p.read(e0, 8)).toBe(-EAGAIN);
    expect(p.read(e1, 8)).toBe(-EAGAIN);
    expect(m.debug.dmesg().at(-1)).toBe(
      `err: DMAR: [INTR-REMAP] ${BDF}: MSI-X vector 0 sent addr 0xfee00000 data 0x1234, no interrupt the host set up: blocked`,
    );
    // entry 0 made a copy of entry 1's message: vector 1's eventfd fires
    expect(p.writeMemory(va + data0, p.readMemory(va + data1, 4) as Uint8Array)).toBe(0);
    doorbell(o, 0n, 0n, 0n);
    expect(p.read(e0, 8)).toBe(-EAGAIN);
    expect(fromLe(p.read(e1, 8))).toBe(1n);
    // the host's message back: vector 0 again
    expect(p.writeMemory(va + data0, le(host0, 4))).toBe(0);
    doorbell(o, 0n, 0n, 0n);
    expect(fromLe(p.read(e0, 8))).toBe(1n);
    expect(p.munmap(va, 0x4000n)).toBe(0);
  });
});

describe("group SET_CONTAINER with a file that is neither a container nor an iommufd", () => {
  it("is EBADFD", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const g = p.open("/dev/vfio/0");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(p.eventfd(), 4))).toBe(-EBADFD);
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(77, 4))).toBe(-EBADF);
  });
});
