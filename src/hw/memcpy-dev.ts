import type { PciConfig } from "./pci-config.js";
import { PciFunction } from "./pci-dev.js";
import type { DmaEnv } from "./pci-dma.js";
import {
  PCI_CLASS_PROG,
  PCI_COMMAND,
  PCI_DEVICE_ID,
  PCI_HEADER_TYPE,
  PCI_INTERRUPT_PIN,
  PCI_REVISION_ID,
  PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID,
  PCI_VENDOR_ID,
} from "./pci-regs.js";

/** The model's own PCI vendor ID (DESIGN.md "The memcpy device"). */
export const MEMCPY_VENDOR_ID = 0x1de0;
export const MEMCPY_DEVICE_ID = 0x0001;
/** Class 0x08 (base system peripheral), subclass 0x80 (other), prog-if 0. */
export const MEMCPY_CLASS = 0x088000;
export const MEMCPY_REVISION = 0x01;

/** BAR0 register offsets. */
export const MEMCPY_REG_ID = 0x00;
export const MEMCPY_REG_SRC = 0x08;
export const MEMCPY_REG_DST = 0x10;
export const MEMCPY_REG_LEN = 0x18;
export const MEMCPY_REG_DOORBELL = 0x20;
export const MEMCPY_REG_STATUS = 0x24;
export const MEMCPY_REG_FAULT_ADDR = 0x28;
export const MEMCPY_REG_COUNT = 0x30;

/** "MCPY" read as a little-endian u32. */
export const MEMCPY_ID_VALUE = 0x5950434d;
export const MEMCPY_STATUS_IDLE = 0;
export const MEMCPY_STATUS_DONE = 2;
export const MEMCPY_STATUS_ERROR = 3;

export const MEMCPY_BAR0_SIZE = 4096;
/**
 * MSI-X lives in its own 16 KiB BAR (BAR2): the table at 0 and the PBA at
 * 0x2000, on pages of their own, as real parts lay it out (an Intel 82599
 * has the same 16 KiB MSI-X BAR with its PBA at 0x2000). vfio-pci maps the
 * whole BAR (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE).
 */
export const MEMCPY_MSIX_BAR = 2;
export const MEMCPY_MSIX_BAR_SIZE = 0x4000;
export const MEMCPY_MSIX_TABLE_OFFSET = 0;
export const MEMCPY_MSIX_PBA_OFFSET = 0x2000;
export const MEMCPY_MSIX_VECTORS = 4;
/** The largest copy the engine accepts (a device limit; larger lengths end in STATUS 3). */
export const MEMCPY_MAX_LEN = 1 << 30;

/**
 * The memcpy device: one DMA job at a time, started by a doorbell write and
 * run synchronously. The whole source and destination are translated
 * before a byte moves, so a fault anywhere aborts the job with nothing
 * written. Completion (or failure) sends interrupt vector 0 when MSI or
 * MSI-X is enabled.
 */
export class MemcpyDevice extends PciFunction {
  /** BAR0 as its registers read. */
  private readonly regs = new Uint8Array(MEMCPY_BAR0_SIZE);
  private readonly rv = new DataView(this.regs.buffer);

  constructor(bdf: string, env: DmaEnv) {
    super(bdf, env, {
      bars: [
        { size: MEMCPY_BAR0_SIZE, is64: true },
        { size: MEMCPY_MSIX_BAR_SIZE, is64: true },
      ],
      msiVectors: 1,
      msix: {
        vectors: MEMCPY_MSIX_VECTORS,
        bar: MEMCPY_MSIX_BAR,
        tableOffset: MEMCPY_MSIX_TABLE_OFFSET,
        pbaOffset: MEMCPY_MSIX_PBA_OFFSET,
      },
    });
    this.resetDevice();
  }

  protected identify(cfg: PciConfig): void {
    cfg.setRo(PCI_VENDOR_ID, 2, MEMCPY_VENDOR_ID);
    cfg.setRo(PCI_DEVICE_ID, 2, MEMCPY_DEVICE_ID);
    cfg.setRo(PCI_REVISION_ID, 1, MEMCPY_REVISION);
    cfg.setRo(PCI_CLASS_PROG, 3, MEMCPY_CLASS);
    cfg.setRo(PCI_HEADER_TYPE, 1, 0);
    cfg.setRo(PCI_SUBSYSTEM_VENDOR_ID, 2, MEMCPY_VENDOR_ID);
    cfg.setRo(PCI_SUBSYSTEM_ID, 2, MEMCPY_DEVICE_ID);
    // No INTx pin: the device signals only by MSI/MSI-X.
    cfg.setRo(PCI_INTERRUPT_PIN, 1, 0);
    // I/O space, memory space, bus master, INTx disable.
    cfg.setWmask(PCI_COMMAND, 2, 0x0407);
  }

  protected resetDevice(): void {
    this.regs.fill(0);
    this.rv.setUint32(MEMCPY_REG_ID, MEMCPY_ID_VALUE, true);
  }

  protected barRead(bar: number, off: number, len: number): Uint8Array {
    if (bar !== 0) return new Uint8Array(len);
    return this.regs.slice(off, off + len);
  }

  protected barWrite(bar: number, off: number, data: Uint8Array): void {
    if (bar !== 0) return;
    let ring = false;
    for (let i = 0; i < data.length; i++) {
      const o = off + i;
      // SRC, DST and LEN are read/write; the doorbell acts on bit 0 of its
      // first byte; everything else is read-only.
      if (o >= MEMCPY_REG_SRC && o < MEMCPY_REG_DOORBELL) this.regs[o] = data[i];
      else if (o === MEMCPY_REG_DOORBELL && (data[i] & 1) !== 0) ring = true;
    }
    if (ring) this.run();
  }

  /** Register values, for tests and debug views. */
  reg64(off: number): bigint {
    return this.rv.getBigUint64(off, true);
  }

  reg32(off: number): number {
    return this.rv.getUint32(off, true);
  }

  private run(): void {
    const src = this.reg64(MEMCPY_REG_SRC);
    const dst = this.reg64(MEMCPY_REG_DST);
    const len64 = this.reg64(MEMCPY_REG_LEN);
    if (!this.busMaster()) {
      this.dma.logFault(
        "read",
        src,
        Number(len64 > BigInt(MEMCPY_MAX_LEN) ? 0n : len64),
        "bus mastering is disabled",
        this.dma.masterFinding(),
      );
      this.finish(MEMCPY_STATUS_ERROR, src);
      return;
    }
    if (len64 > BigInt(MEMCPY_MAX_LEN)) {
      this.finish(MEMCPY_STATUS_ERROR, 0n);
      return;
    }
    const len = Number(len64);
    const s = this.dma.translate(src, len, false);
    if (!s.ok) {
      this.dma.logFault("read", src, len, s.reason);
      this.finish(MEMCPY_STATUS_ERROR, s.addr);
      return;
    }
    const d = this.dma.translate(dst, len, true);
    if (!d.ok) {
      this.dma.logFault("write", dst, len, d.reason);
      this.finish(MEMCPY_STATUS_ERROR, d.addr);
      return;
    }
    if (len > 0) {
      const bytes = this.dma.readSegs(src, s.segments, len);
      this.dma.writeSegs(dst, d.segments, bytes);
    }
    this.rv.setUint32(MEMCPY_REG_COUNT, (this.reg32(MEMCPY_REG_COUNT) + 1) >>> 0, true);
    this.finish(MEMCPY_STATUS_DONE, 0n);
  }

  private finish(status: number, faultAddr: bigint): void {
    this.rv.setUint32(MEMCPY_REG_STATUS, status, true);
    this.rv.setBigUint64(MEMCPY_REG_FAULT_ADDR, faultAddr, true);
    this.raiseIrq(0);
  }
}
