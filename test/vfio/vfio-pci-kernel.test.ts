// vfio-pci behaviour pinned against drivers/vfio/vfio_main.c (vfio_ioctl_device_feature,
// the core's migration/logging features), include/linux/vfio.h (vfio_check_feature),
// drivers/vfio/pci/vfio_pci_core.c (low-power features, hot reset) and
// drivers/vfio/pci/vfio_pci_rdwr.c (vfio_pci_ioeventfd).
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  EAGAIN,
  EBADF,
  EEXIST,
  EINVAL,
  ENODEV,
  ENOSPC,
  ENOTTY,
  MAP_SHARED,
  PROT_READ,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
  VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_IOEVENTFD,
  VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
  vfio_device_info,
} from "../../src/uapi/index.js";
import { BDF, fromLe, le, openCdev, openGroup, reg, sioctl } from "../e2e/driver.js";

const FN0 = "0000:01:00.0";
const FN1 = "0000:01:00.1";

function feature(
  p: Process,
  dev: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
  argsz?: number,
) {
  const b = new Uint8Array(8 + payload.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz ?? b.length, true);
  dv.setUint32(4, flags, true);
  b.set(payload, 8);
  return p.ioctl(dev, VFIO_DEVICE_FEATURE, b);
}

function s32(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setInt32(0, v, true);
  return b;
}

function counter(p: Process, efd: number): bigint | number {
  const r = p.read(efd, 8);
  return typeof r === "number" ? r : fromLe(r);
}

function getInfo(p: Process, dev: number): number {
  return sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret;
}

describe("VFIO_DEVICE_FEATURE: core features and vfio_check_feature", () => {
  it("migration and DMA logging are ENOTTY (no mig_ops/log_ops); VF token ENOTTY without SR-IOV", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    const S = VFIO_DEVICE_FEATURE_SET;
    const G = VFIO_DEVICE_FEATURE_GET;
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_MIGRATION | G, new Uint8Array(8))).toBe(-ENOTTY);
    // The ENOTTY comes before any GET/SET check of the feature itself.
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_MIGRATION | S)).toBe(-ENOTTY);
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE | VFIO_DEVICE_FEATURE_PROBE)).toBe(-ENOTTY);
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_DMA_LOGGING_START | S, new Uint8Array(24))).toBe(-ENOTTY);
    // The core's flag checks still come first.
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_MIGRATION | G | S)).toBe(-EINVAL);
    expect(feature(p, o.dev, VFIO_DEVICE_FEATURE_PCI_VF_TOKEN | S, new Uint8Array(16))).toBe(-ENOTTY);
  });

  it("LOW_POWER_ENTRY: SET only; PROBE answers 0 without entering; twice is EINVAL; EXIT always 0", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    const E = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
    const X = VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
    expect(feature(p, o.dev, E | VFIO_DEVICE_FEATURE_GET)).toBe(-EINVAL);
    expect(feature(p, o.dev, E)).toBe(-EINVAL); // neither GET nor SET without PROBE
    expect(feature(p, o.dev, E | VFIO_DEVICE_FEATURE_PROBE)).toBe(0);
    expect(feature(p, o.dev, E | VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET)).toBe(0);
    expect(feature(p, o.dev, X | VFIO_DEVICE_FEATURE_SET)).toBe(0); // not engaged: nothing to do
    const va = p.mmap(0n, 4096n, PROT_READ, MAP_SHARED, o.dev, o.bar0);
    expect(fromLe(p.readMemory(va, 4))).toBe(0x5950434dn);
    expect(feature(p, o.dev, E | VFIO_DEVICE_FEATURE_SET)).toBe(0);
    // BAR mappings fault while the device may be runtime suspended (SIGBUS in the kernel).
    expect(p.readMemory(va, 4)).toBeLessThan(0);
    // An ioctl resumes the device only for its duration: still engaged, entering again is EINVAL.
    expect(getInfo(p, o.dev)).toBe(0);
    expect(feature(p, o.dev, E | VFIO_DEVICE_FEATURE_SET)).toBe(-EINVAL);
    expect(feature(p, o.dev, X | VFIO_DEVICE_FEATURE_SET)).toBe(0);
    expect(fromLe(p.readMemory(va, 4))).toBe(0x5950434dn);
  });

  it("LOW_POWER_ENTRY_WITH_WAKEUP: payload and fd checks; the next access signals the eventfd and exits", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    const W = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP | VFIO_DEVICE_FEATURE_SET;
    const efd = p.eventfd();
    expect(feature(p, o.dev, W, s32(efd), 12)).toBe(-EINVAL); // payload needs 8 bytes
    expect(feature(p, o.dev, W, s32(-1))).toBe(-EINVAL);
    expect(feature(p, o.dev, W, s32(99))).toBe(-EBADF);
    expect(feature(p, o.dev, W, s32(o.iommufd))).toBe(-EINVAL); // not an eventfd
    const files = m.debug.counters().openFiles;
    expect(feature(p, o.dev, W, s32(efd))).toBe(0);
    expect(feature(p, o.dev, W, s32(efd))).toBe(0); // that ioctl resumed the device, which left low power
    expect(counter(p, efd)).toBe(1n);
    // The second entry engaged again: a region read resumes and signals too, once.
    expect(reg(o, 0)).toBe(0x5950434dn);
    expect(counter(p, efd)).toBe(1n);
    expect(reg(o, 0)).toBe(0x5950434dn);
    expect(counter(p, efd)).toBe(-EAGAIN);
    expect(feature(p, o.dev, W, s32(efd))).toBe(0);
    // Closing the device exits low power and drops the eventfd reference.
    expect(p.close(o.dev)).toBe(0);
    expect(m.debug.counters().openFiles).toBeLessThan(files);
    expect(counter(p, efd)).toBe(-EAGAIN); // close exits without signalling
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

/** Two functions of one device on bus 1 (behind a bridge), both bound to vfio-pci. */
function busOne(bindBoth = true): Machine {
  const m = new Machine({
    pci: [
      { bdf: FN0, kind: "memcpy" },
      { bdf: FN1, kind: "memcpy" },
    ],
  });
  expect(m.bindDriver(FN0, "vfio-pci")).toBe(0);
  if (bindBoth) expect(m.bindDriver(FN1, "vfio-pci")).toBe(0);
  return m;
}

function hotResetInfo(p: Process, dev: number, argsz: number) {
  const b = new Uint8Array(Math.max(argsz, 12));
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz, true);
  const ret = p.ioctl(dev, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, b);
  const devs = [];
  for (let i = 0; 12 + 8 * (i + 1) <= b.length && i < dv.getUint32(8, true); i++) {
    devs.push({
      id: dv.getInt32(12 + 8 * i, true),
      segment: dv.getUint16(16 + 8 * i, true),
      bus: dv.getUint8(18 + 8 * i),
      devfn: dv.getUint8(19 + 8 * i),
    });
  }
  return { ret, flags: dv.getUint32(4, true), count: dv.getUint32(8, true), devs };
}

function hotReset(p: Process, dev: number, fds: number[], flags = 0) {
  const b = new Uint8Array(12 + 4 * fds.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, b.length, true);
  dv.setUint32(4, flags, true);
  dv.setUint32(8, fds.length, true);
  for (const [i, fd] of fds.entries()) dv.setInt32(12 + 4 * i, fd, true);
  return p.ioctl(dev, VFIO_DEVICE_PCI_HOT_RESET, b);
}

describe("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO / VFIO_DEVICE_PCI_HOT_RESET", () => {
  it("a device on the root bus has no slot or bus reset: ENODEV (after the argument checks)", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openGroup(p, 0);
    expect(hotResetInfo(p, o.dev, 11).ret).toBe(-EINVAL);
    expect(hotResetInfo(p, o.dev, 64).ret).toBe(-ENODEV);
    expect(hotReset(p, o.dev, [o.group], 1)).toBe(-EINVAL); // flags
    expect(hotReset(p, o.dev, [])).toBe(-EINVAL); // the group path needs group fds
    expect(hotReset(p, o.dev, [o.group])).toBe(-ENODEV);
  });

  it("group path: ENOSPC reports the count; entries give group ids; reset needs every group", () => {
    const m = busOne();
    const p = m.spawn();
    const o = openGroup(p, 0, FN0);
    const small = hotResetInfo(p, o.dev, 12 + 8);
    expect(small).toMatchObject({ ret: -ENOSPC, count: 2, flags: 0 });
    const info = hotResetInfo(p, o.dev, 12 + 16);
    expect(info.ret).toBe(0);
    expect(info.flags).toBe(0);
    expect(info.devs).toEqual([
      { id: 0, segment: 0, bus: 1, devfn: 0 },
      { id: 1, segment: 0, bus: 1, devfn: 1 },
    ]);
    expect(p.pwrite(o.dev, le(0x1234, 8), o.bar0 + 0x08n)).toBe(8);
    expect(hotReset(p, o.dev, [o.group])).toBe(-EINVAL); // group 1 is missing
    expect(hotReset(p, o.dev, [o.dev])).toBe(-EINVAL); // not a group fd
    expect(hotReset(p, o.dev, [77])).toBe(-EBADF);
    expect(hotReset(p, o.dev, [o.group, o.group, o.group])).toBe(-EINVAL); // more fds than devices
    expect(reg(o, 0x08, 8)).toBe(0x1234n);
    const g1 = p.open("/dev/vfio/1");
    expect(hotReset(p, o.dev, [o.group, g1])).toBe(0);
    expect(reg(o, 0x08, 8)).toBe(0n); // the bus reset cleared the function
  });

  it("a function on the bus not bound to vfio-pci makes the reset EINVAL", () => {
    const m = busOne(false);
    const p = m.spawn();
    const o = openGroup(p, 0, FN0);
    const info = hotResetInfo(p, o.dev, 64);
    expect(info.devs.map((d) => d.id)).toEqual([0, 1]);
    expect(hotReset(p, o.dev, [o.group])).toBe(-EINVAL);
  });

  it("cdev path: devids, OWNED; a zero-length array; another iommufd or none is NOT_OWNED", () => {
    const m = busOne();
    const p = m.spawn();
    const a = openCdev(m, p, "/dev/vfio/devices/vfio0");
    expect(hotReset(p, a.dev, [3])).toBe(-EINVAL); // a cdev passes no group fds
    let info = hotResetInfo(p, a.dev, 64);
    // vfio1 is not opened and its group is not in this iommufd: NOT_OWNED, the OWNED flag cleared.
    expect(info.flags).toBe(VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
    expect(info.devs.map((d) => d.id)).toEqual([a.devid, -1]);
    expect(hotReset(p, a.dev, [])).toBe(-EINVAL);
    // Bound to the same iommufd: its device id, and the reset is allowed.
    const dev1 = p.open("/dev/vfio/devices/vfio1");
    const b = new Uint8Array(24);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 24, true);
    dv.setInt32(8, a.iommufd, true);
    expect(p.ioctl(dev1, VFIO_DEVICE_BIND_IOMMUFD, b)).toBe(0);
    const devid1 = dv.getUint32(12, true);
    info = hotResetInfo(p, a.dev, 64);
    expect(info.flags).toBe(VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED);
    expect(info.devs.map((d) => d.id)).toEqual([a.devid, devid1]);
    expect(hotReset(p, a.dev, [])).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

function ioeventfd(
  p: Process,
  dev: number,
  offset: bigint,
  data: bigint,
  flags: number,
  fd: number,
  argsz = 32,
) {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, argsz, true);
  dv.setUint32(4, flags, true);
  dv.setBigUint64(8, offset, true);
  dv.setBigUint64(16, data, true);
  dv.setInt32(24, fd, true);
  return p.ioctl(dev, VFIO_DEVICE_IOEVENTFD, b);
}

describe("VFIO_DEVICE_IOEVENTFD", () => {
  it("argument rules; a write(2) to the eventfd writes the BAR; remove with fd -1; close drops it", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    const efd = p.eventfd();
    const bar2 = o.bar0 + (2n << 40n);
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 4, efd, 27)).toBe(-EINVAL); // argsz
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 0, efd)).toBe(-EINVAL); // no size
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 3, efd)).toBe(-EINVAL); // two sizes
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 0x14, efd)).toBe(-EINVAL); // unknown flag
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 4, -2)).toBe(-EINVAL);
    expect(ioeventfd(p, o.dev, o.cfg, 1n, 4, efd)).toBe(-EINVAL); // config region: BARs only
    expect(ioeventfd(p, o.dev, o.bar0 + 4094n, 1n, 4, efd)).toBe(-EINVAL); // past the BAR
    expect(ioeventfd(p, o.dev, bar2 + 0x10n, 1n, 4, efd)).toBe(-EINVAL); // MSI-X table
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 1n, 8, efd)).toBe(-EINVAL); // 8 bytes
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, -1)).toBe(-ENODEV); // nothing to remove
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, 99)).toBe(-EBADF);
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, o.iommufd)).toBe(-EINVAL);
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, efd)).toBe(0);
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, efd)).toBe(-EEXIST);
    expect(reg(o, 0x08, 8)).toBe(0n);
    expect(p.write(efd, le(1, 8))).toBe(8);
    expect(reg(o, 0x08, 8)).toBe(0x1234n);
    expect(counter(p, efd)).toBe(-EAGAIN); // the virqfd consumed the count
    expect(ioeventfd(p, o.dev, o.bar0 + 8n, 0x1234n, 4, -1)).toBe(0);
    expect(p.pwrite(o.dev, le(0, 8), o.bar0 + 0x08n)).toBe(8);
    expect(p.write(efd, le(1, 8))).toBe(8);
    expect(reg(o, 0x08, 8)).toBe(0n);
    expect(counter(p, efd)).toBe(1n);
    // An eventfd already signalled fires at registration; closing the device drops it.
    expect(p.write(efd, le(1, 8))).toBe(8);
    expect(ioeventfd(p, o.dev, o.bar0 + 0x10n, 0x40n, 2, efd)).toBe(0);
    expect(reg(o, 0x10, 8)).toBe(0x40n);
    const files = m.debug.counters().openFiles;
    expect(p.close(o.dev)).toBe(0);
    expect(m.debug.counters().openFiles).toBeLessThan(files);
    expect(p.close(efd)).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
