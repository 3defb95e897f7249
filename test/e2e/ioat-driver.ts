// A userspace IOAT driver doing what the VFIO selftests' lib/drivers/ioat
// driver does, step for step, through a Process only: config space by
// pread/pwrite of the config region, the registers by loads and stores of
// the exact widths (readb/readw/readq, writeb/writew/writel/writeq) on an
// mmap of BAR0, MSI-X through SET_IRQS with eventfds.
import { expect } from "vitest";
import type { Process } from "../../src/kernel/process.js";
import {
  EFD_NONBLOCK,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_MSIX_IRQ_INDEX,
  vfio_irq_info,
} from "../../src/uapi/index.js";
import { fromLe, le, type Opened, sioctl } from "./driver.js";

export const CH = 0x80;
export const CHANCTRL = CH + 0x00;
export const CHANCMD = CH + 0x04;
export const DMACOUNT = CH + 0x06;
export const CHANSTS = CH + 0x08;
export const CHAINADDR = CH + 0x10;
export const CHANCMP = CH + 0x18;
export const CDAR = CH + 0x20;
export const CHANERR = CH + 0x28;
export const CHANERR_INT = 0x180;
export const DMAUNCERRSTS = 0x148;
export const DONE = 1n;
export const SUSPENDED = 2n;
export const HALTED = 3n;

/** Where the driver keeps its state: the descriptor at 0, send_msi's buffers at 64 and 72. */
export interface DriverRegion {
  va: bigint;
  iova: bigint;
}

export class IoatDriver {
  bar0 = 0n;
  efds: number[] = [];
  maxSize = 0;
  readonly maxCount = 65535;
  /** What the last failed wait read before resetting (ioat_handle_error prints these). */
  lastError = { chanerr: 0, chanerrInt: 0, dmauncerrsts: 0 };

  constructor(
    readonly o: Opened,
    readonly region: DriverRegion,
  ) {}

  get p(): Process {
    return this.o.p;
  }

  // --- MMIO through the BAR0 mapping, at the driver's widths ----------------------------

  read(off: number, n: 1 | 2 | 4 | 8): bigint {
    const r = this.p.readMemory(this.bar0 + BigInt(off), n);
    if (typeof r === "number") throw new Error(`BAR0 load at 0x${off.toString(16)}: ${r}`);
    return fromLe(r);
  }

  write(off: number, n: 1 | 2 | 4 | 8, v: bigint | number): void {
    expect(this.p.writeMemory(this.bar0 + BigInt(off), le(v, n))).toBe(0);
  }

  cfgRead(off: number, n: 1 | 2 | 4): number {
    return Number(fromLe(this.p.pread(this.o.dev, n, this.o.cfg + BigInt(off))));
  }

  cfgWrite(off: number, n: 1 | 2 | 4, v: number): void {
    expect(this.p.pwrite(this.o.dev, le(v, n), this.o.cfg + BigInt(off))).toBe(n);
  }

  status(): bigint {
    return this.read(CHANSTS, 8) & 7n;
  }

  // --- ioat.c --------------------------------------------------------------------------

  /** ioat_probe: 8086:2021, BAR0 mapped, CBVER 3.2 or 3.3. */
  probe(): boolean {
    if (this.cfgRead(0, 2) !== 0x8086 || this.cfgRead(2, 2) !== 0x2021) return false;
    this.bar0 = this.p.mmap(0n, 16384n, PROT_READ | PROT_WRITE, MAP_SHARED, this.o.dev, this.o.bar0);
    expect(this.bar0 > 0n).toBe(true);
    const ver = Number(this.read(0x08, 1));
    return ver === 0x32 || ver === 0x33;
  }

  /** ioat_clear_errors, including the upstream slip (DMAUNCERRSTS written to CHANERR_INT). */
  clearErrors(): void {
    this.cfgWrite(CHANERR_INT, 4, this.cfgRead(CHANERR_INT, 4));
    this.cfgWrite(CHANERR_INT, 4, this.cfgRead(DMAUNCERRSTS, 4));
    this.write(CHANERR, 4, this.read(CHANERR, 4));
  }

  /** ioat_reset: clear errors, CHANCMD RESET, poll until the bit clears, assert HALTED. */
  reset(): void {
    this.clearErrors();
    this.write(CHANCMD, 1, 0x20);
    let attempts = 5000;
    while ((this.read(CHANCMD, 1) & 0x20n) !== 0n) expect(--attempts).toBeGreaterThan(0);
    expect(this.status()).toBe(HALTED);
  }

  /** ioat_init: command register, reset, INTRCTRL, every MSI-X vector on an eventfd, the limits. */
  init(): void {
    this.cfgWrite(0x04, 2, 0x0406);
    this.reset();
    this.write(0x03, 1, 0x08);
    const info = sioctl(this.p, this.o.dev, VFIO_DEVICE_GET_IRQ_INFO, vfio_irq_info, {
      argsz: 16,
      index: VFIO_PCI_MSIX_IRQ_INDEX,
    });
    expect(info.ret).toBe(0);
    const count = Number(info.out.count);
    expect(count).toBeGreaterThanOrEqual(1);
    this.efds = Array.from({ length: count }, () => this.p.eventfd(0, EFD_NONBLOCK));
    expect(this.setIrqs(VFIO_IRQ_SET_DATA_EVENTFD, this.efds)).toBe(0);
    this.maxSize = 2 ** Number(this.read(0x01, 1));
  }

  /** ioat_remove: reset, disable MSI-X. */
  remove(): void {
    this.reset();
    expect(this.setIrqs(VFIO_IRQ_SET_DATA_NONE, [])).toBe(0);
    for (const fd of this.efds) expect(this.p.close(fd)).toBe(0);
    this.efds = [];
  }

  /** __ioat_memcpy_start: the self-chained descriptor, CHAINADDR, CHANCTRL, DMACOUNT. */
  start(src: bigint, dst: bigint, size: number, count: number, interrupt = false): void {
    const d = new Uint8Array(64);
    const dv = new DataView(d.buffer);
    dv.setUint32(0, size, true);
    dv.setUint32(4, interrupt ? 1 : 0, true); // op COPY (0) in 31:24, int_en in bit 0
    dv.setBigUint64(8, src, true);
    dv.setBigUint64(16, dst, true);
    dv.setBigUint64(24, this.region.iova, true);
    expect(this.p.writeMemory(this.region.va, d)).toBe(0);
    this.write(CHAINADDR, 8, this.region.iova);
    this.write(CHANCTRL, 2, 0x0009);
    this.write(DMACOUNT, 2, count);
  }

  /** ioat_memcpy_wait: DONE then SUSPEND until SUSPENDED (0); HALTED: report, reset, -1. */
  wait(): number {
    for (let spins = 0; ; spins++) {
      expect(spins).toBeLessThan(1000);
      const st = this.status();
      if (st === DONE) break;
      if (st === HALTED) {
        this.lastError = {
          chanerr: Number(this.read(CHANERR, 4)),
          chanerrInt: this.cfgRead(CHANERR_INT, 4),
          dmauncerrsts: this.cfgRead(DMAUNCERRSTS, 4),
        };
        this.reset();
        return -1;
      }
    }
    this.write(CHANCMD, 1, 0x04);
    for (let spins = 0; this.status() !== SUSPENDED; spins++) expect(spins).toBeLessThan(1000);
    return 0;
  }

  /** ioat_send_msi: an 8-byte copy inside the driver region with int_en, then wait. */
  sendMsi(): void {
    this.start(this.region.iova + 64n, this.region.iova + 72n, 8, 1, true);
    expect(this.wait()).toBe(0);
  }

  /** The eventfd of vector 0: its count, or -errno (EAGAIN: no interrupt). */
  interrupts(): bigint | number {
    const r = this.p.read(this.efds[0], 8);
    return typeof r === "number" ? r : fromLe(r);
  }

  private setIrqs(flags: number, fds: number[]): number {
    const hdr = new Uint8Array(20 + 4 * fds.length);
    const dv = new DataView(hdr.buffer);
    dv.setUint32(0, hdr.length, true);
    dv.setUint32(4, flags | VFIO_IRQ_SET_ACTION_TRIGGER, true);
    dv.setUint32(8, VFIO_PCI_MSIX_IRQ_INDEX, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, fds.length, true);
    for (const [i, fd] of fds.entries()) dv.setInt32(20 + 4 * i, fd, true);
    return this.p.ioctl(this.o.dev, VFIO_DEVICE_SET_IRQS, hdr);
  }
}
