// The IOAT channel driven the way vfio_pci_driver_test drives it through the
// selftests' ioat driver, on an Intel IOMMU (cdev + iommufd), an AMD IOMMU
// (group + type1v2 container) and noiommu (programmed with the physical
// addresses IOMMU_IOAS_NOIOMMU_GET_PA gives).
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import { EAGAIN } from "../../src/uapi/errno.js";
import { attach, CDEV, getPa, ioasAlloc, mapFixed, openBound, RAWIO } from "../noiommu/helpers.js";
import { buffer, dmaMap, ioasMap, openCdev, openGroup } from "./driver.js";
import { CHANERR, CHANERR_INT, CHANSTS, DONE, HALTED, IoatDriver } from "./ioat-driver.js";

const BDF = "0000:00:04.0";
const PCI = [{ bdf: BDF, kind: "ioat" as const }];
const PAT = (i: number) => (i * 13 + 7) & 0xff;

interface Rig {
  m: Machine;
  p: Process;
  drv: IoatDriver;
  src: bigint;
  dst: bigint;
  /** Bus addresses the device is given for src, dst. */
  srcBus: bigint;
  dstBus: bigint;
  /** A bus address nothing is mapped at (noiommu: no RAM there). */
  unmapped: bigint;
  /** CHANERR bits for a refused source / destination in this mode. */
  srcErr: number;
  dstErr: number;
}

/** Map `len` bytes at `va` for the device; returns the address to program. */
type Mapper = (va: bigint, len: number) => bigint;

function build(m: Machine, p: Process, o: ConstructorParameters<typeof IoatDriver>[0], map: Mapper) {
  const src = buffer(p, 4096, PAT);
  const dst = buffer(p, 4096);
  const region = buffer(p, 4096);
  const srcBus = map(src, 4096);
  const dstBus = map(dst, 4096);
  const regionBus = map(region, 4096);
  const drv = new IoatDriver(o, { va: region, iova: regionBus });
  expect(drv.probe()).toBe(true);
  drv.init();
  return { m, p, drv, src, dst, srcBus, dstBus };
}

const MODES: Record<string, () => Rig> = {
  "intel, cdev + iommufd": () => {
    const m = new Machine({ iommu: "intel", pci: PCI });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openCdev(m, p);
    let next = 0x10_0000n;
    const r = build(m, p, o, (va, len) => {
      const iova = next;
      next += 0x10_0000n;
      expect(ioasMap(o, va, len, iova)).toBe(0);
      return iova;
    });
    return { ...r, unmapped: 0x4000_0000n, srcErr: 0x1, dstErr: 0x2 };
  },
  "amd, group + type1v2 container": () => {
    const m = new Machine({ iommu: "amd", pci: PCI });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openGroup(p, 0, BDF);
    let next = 0x20_0000n;
    const r = build(m, p, o, (va, len) => {
      const iova = next;
      next += 0x10_0000n;
      expect(dmaMap(o, va, len, iova)).toBe(0);
      return iova;
    });
    return { ...r, unmapped: 0x4000_0000n, srcErr: 0x1, dstErr: 0x2 };
  },
  "noiommu, by physical address": () => {
    const m = new Machine({ iommu: "none", params: { "vfio.enable_unsafe_noiommu_mode": true }, pci: PCI });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn({ caps: RAWIO, rlimitMemlock: 64n << 20n });
    const o = openBound(p, CDEV);
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    let next = 0x10_0000n;
    const r = build(m, p, o, (va, len) => {
      const iova = next;
      next += 0x10_0000n;
      expect(mapFixed(p, o.iommufd, ioas, va, BigInt(len), iova)).toBe(0);
      const pa = getPa(p, o.iommufd, ioas, iova, BigInt(len));
      expect(pa.ret).toBe(0);
      return pa.phys;
    });
    // Far above the machine's RAM: the read or write gets no completer (master abort).
    return { ...r, unmapped: 1n << 44n, srcErr: 0x100, dstErr: 0x200 };
  },
};

describe.each(Object.entries(MODES))("IOAT driven like the VFIO selftests' ioat driver: %s", (_, rig) => {
  it("init: 8086:2021, CBVER 0x33, reset ends HALTED, INTRCTRL 0x08, one MSI-X vector, 4 KiB copies", () => {
    const { drv, m } = rig();
    expect(drv.cfgRead(0x04, 2) & 0x0406).toBe(0x0406);
    expect(Number(drv.read(0x08, 1))).toBe(0x33);
    expect(Number(drv.read(0x03, 1))).toBe(0x08);
    expect(drv.efds).toHaveLength(1);
    expect(drv.maxSize).toBe(4096);
    expect(drv.status()).toBe(HALTED);
    expect(drv.interrupts()).toBe(-EAGAIN);
    expect(m.debug.dmaLog()).toEqual([]);
  });

  it("memcpy: the self-chained descriptor copies XFERCAP bytes; DONE, then SUSPEND -> SUSPENDED; no interrupt", () => {
    const { drv, p, src, dst, srcBus, dstBus, m } = rig();
    drv.start(srcBus, dstBus, drv.maxSize, 1);
    expect(drv.read(CHANSTS, 8)).toBe(drv.region.iova | DONE);
    expect(drv.wait()).toBe(0);
    expect(p.readMemory(dst, 4096)).toEqual(p.readMemory(src, 4096));
    expect(drv.interrupts()).toBe(-EAGAIN);
    expect(m.debug.dmaLog().map((e) => [e.op, e.addr, e.len, e.result, e.finding])).toEqual([
      ["read", drv.region.iova, 64, "ok", undefined],
      ["read", srcBus, 4096, "ok", undefined],
      ["write", dstBus, 4096, "ok", undefined],
    ]);
  });

  it("send_msi raises exactly one interrupt on vector 0's eventfd", () => {
    const { drv } = rig();
    drv.sendMsi();
    expect(drv.interrupts()).toBe(1n);
    expect(drv.interrupts()).toBe(-EAGAIN);
    drv.sendMsi();
    expect(drv.interrupts()).toBe(1n);
  });

  it("from an unmapped address: HALTED, the source error in CHANERR and CHANERR_INT, no interrupt, nothing written", () => {
    const { drv, p, dst, unmapped, dstBus, srcErr, m } = rig();
    drv.start(unmapped, dstBus, drv.maxSize, 1, true);
    expect(drv.status()).toBe(HALTED);
    expect(drv.wait()).toBe(-1);
    expect(drv.lastError).toEqual({ chanerr: srcErr, chanerrInt: srcErr, dmauncerrsts: 0 });
    expect(drv.interrupts()).toBe(-EAGAIN);
    expect(p.readMemory(dst, 4096)).toEqual(new Uint8Array(4096));
    const log = m.debug.dmaLog();
    expect(log.map((e) => [e.op, e.addr, e.result])).toEqual([
      ["read", drv.region.iova, "ok"],
      ["read", unmapped, "fault"],
    ]);
    // The wait reset the channel: errors cleared, HALTED, ready again.
    expect(Number(drv.read(CHANERR, 4))).toBe(0);
    expect(drv.cfgRead(CHANERR_INT, 4)).toBe(0);
    expect(drv.status()).toBe(HALTED);
  });

  it("to an unmapped address: HALTED, the destination error, no interrupt, the source still intact", () => {
    const { drv, p, src, srcBus, unmapped, dstErr } = rig();
    drv.start(srcBus, unmapped, drv.maxSize, 1, true);
    expect(drv.wait()).toBe(-1);
    expect(drv.lastError.chanerr).toBe(dstErr);
    expect(drv.lastError.chanerrInt).toBe(dstErr);
    expect(drv.interrupts()).toBe(-EAGAIN);
    const want = new Uint8Array(4096).map((_, i) => PAT(i));
    expect(p.readMemory(src, 4096)).toEqual(want);
  });

  it("the reset's write-backs clear the errors by themselves: config 0x180 (raw through vfio-pci) and CHANERR are RW1C", () => {
    const { drv, srcBus, dstBus, unmapped, srcErr } = rig();
    drv.start(unmapped, dstBus, 16, 1);
    expect(drv.status()).toBe(HALTED);
    expect(drv.cfgRead(CHANERR_INT, 4)).toBe(srcErr);
    drv.clearErrors();
    expect(drv.cfgRead(CHANERR_INT, 4)).toBe(0);
    expect(Number(drv.read(CHANERR, 4))).toBe(0);
    // With no error latched the channel runs again without a reset.
    drv.start(srcBus, dstBus, 16, 1);
    expect(drv.wait()).toBe(0);
  });

  it("memcpy storm: one doorbell processes the same descriptor count times", () => {
    const { drv, p, src, dst, srcBus, dstBus, m } = rig();
    const count = 300;
    drv.start(srcBus, dstBus, drv.maxSize, count);
    expect(drv.wait()).toBe(0);
    expect(p.readMemory(dst, 4096)).toEqual(p.readMemory(src, 4096));
    const log = m.debug.dmaLog();
    expect(log).toHaveLength(3 * count);
    expect(log.filter((e) => e.op === "write" && e.addr === dstBus)).toHaveLength(count);
    expect(log.every((e) => e.result === "ok" && e.finding === undefined)).toBe(true);
    expect(drv.interrupts()).toBe(-EAGAIN);
  });

  it("mix and match: errors, successes and interrupts in any order; remove and exit leave nothing behind", () => {
    const { drv, p, src, dst, srcBus, dstBus, unmapped, m } = rig();
    // Host storage for frames (residentFrames) grows as DMA first touches them; nothing else may change.
    const counters = () => ({ ...m.debug.counters(), residentFrames: 0 });
    const before = counters();
    drv.start(unmapped, dstBus, 16, 1);
    expect(drv.wait()).toBe(-1);
    drv.sendMsi();
    drv.start(srcBus, dstBus, 100, 2);
    expect(drv.wait()).toBe(0);
    drv.start(srcBus, unmapped, 16, 1);
    expect(drv.wait()).toBe(-1);
    drv.start(srcBus + 100n, dstBus + 100n, 3996, 1);
    expect(drv.wait()).toBe(0);
    expect(p.readMemory(dst, 4096)).toEqual(p.readMemory(src, 4096));
    expect(drv.interrupts()).toBe(1n);
    expect(counters()).toEqual(before);
    drv.remove();
    expect(m.debug.counters().pinnedPages).toBeGreaterThan(0);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
