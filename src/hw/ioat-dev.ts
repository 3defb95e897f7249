import {
  IOAT_BAR0_SIZE,
  IOAT_CDAR_OFFSET,
  IOAT_CHAINADDR_OFFSET,
  IOAT_CHAN_DMACOUNT_OFFSET,
  IOAT_CHAN0,
  IOAT_CHANCMD_ABORT,
  IOAT_CHANCMD_OFFSET,
  IOAT_CHANCMD_RESET,
  IOAT_CHANCMD_RESUME,
  IOAT_CHANCMD_SUSPEND,
  IOAT_CHANCMP_OFFSET,
  IOAT_CHANCNT_OFFSET,
  IOAT_CHANCTRL_ERR_INT_EN,
  IOAT_CHANCTRL_INT_REARM,
  IOAT_CHANCTRL_OFFSET,
  IOAT_CHANERR_CHAIN_ADDR_VALUE_ERR,
  IOAT_CHANERR_COMPLETION_ADDR_ERR,
  IOAT_CHANERR_CONTROL_ERR,
  IOAT_CHANERR_DEST_ADDR_ERR,
  IOAT_CHANERR_IMPLEMENTED,
  IOAT_CHANERR_LENGTH_ERR,
  IOAT_CHANERR_NEXT_ADDR_ERR,
  IOAT_CHANERR_NEXT_DESC_ALIGN_ERR,
  IOAT_CHANERR_OFFSET,
  IOAT_CHANERR_READ_DATA_ERR,
  IOAT_CHANERR_SRC_ADDR_ERR,
  IOAT_CHANERR_WRITE_DATA_ERR,
  IOAT_CHANSTS_ACTIVE,
  IOAT_CHANSTS_DONE,
  IOAT_CHANSTS_HALTED,
  IOAT_CHANSTS_OFFSET,
  IOAT_CHANSTS_STATUS,
  IOAT_CHANSTS_SUSPENDED,
  IOAT_CLASS,
  IOAT_DESC_CTL_COMPL_WRITE,
  IOAT_DESC_CTL_INT_EN,
  IOAT_DESC_CTL_NULL,
  IOAT_DESC_CTL_OFFSET,
  IOAT_DESC_CTL_OP_SHIFT,
  IOAT_DESC_DST_OFFSET,
  IOAT_DESC_NEXT_OFFSET,
  IOAT_DESC_SIZE,
  IOAT_DESC_SIZE_OFFSET,
  IOAT_DESC_SRC_OFFSET,
  IOAT_DEVICE_ID,
  IOAT_INTRCTRL_MASTER_INT_EN,
  IOAT_INTRCTRL_MSIX_VECTOR_CONTROL,
  IOAT_INTRCTRL_OFFSET,
  IOAT_MSIX_PBA_OFFSET,
  IOAT_MSIX_TABLE_OFFSET,
  IOAT_MSIX_VECTORS,
  IOAT_OP_COPY,
  IOAT_PCI_CHANERR_INT_OFFSET,
  IOAT_PCI_DMAUNCERRSTS_OFFSET,
  IOAT_REVISION,
  IOAT_VENDOR_ID,
  IOAT_VER_3_3,
  IOAT_VER_OFFSET,
  IOAT_XFERCAP_LOG2,
  IOAT_XFERCAP_OFFSET,
} from "./ioat-regs.js";
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

/** Registers live in the first 256 bytes of BAR0; the rest (outside the MSI-X table/PBA) reads 0. */
const REGS = 0x100;
const CH = IOAT_CHAN0;
const DESC_ALIGN = 64n;
/** Bytes of channel registers CHANCMD RESET clears (CHANCTRL up to CHANERR). */
const IOAT_CHANNEL_REGS = IOAT_CHANERR_OFFSET + 4;
/** CHANSTS bits 63:6 hold the completed descriptor's address. */
const CHANSTS_ADDR_MASK = ~0x3fn & ((1n << 64n) - 1n);

/** Why a channel halted: the CHANERR bit to set. */
interface Halt {
  err: number;
}

/**
 * An Intel I/OAT (CBDMA, Skylake-SP 8086:2021) with one channel, as the
 * kernel's ioat driver and the VFIO selftests' ioat driver program it.
 *
 * The engine is synchronous: a DMACOUNT write processes descriptors, each
 * fetched by DMA from its (IO)VA, following `next`, until the count of
 * descriptors processed since CHAINADDR was last written equals DMACOUNT
 * (16-bit, wrapping). Each copy translates its whole source and
 * destination before a byte moves, so a descriptor that faults writes
 * nothing; the descriptors before it in the same run stay done. Any
 * error halts the channel (CHANSTS HALTED, CHANERR and config
 * CHANERR_INT set) with no completion interrupt, and the channel stays
 * halted until CHANERR is clear again (RW1C or CHANCMD RESET).
 */
export class IoatDevice extends PciFunction {
  private readonly regs = new Uint8Array(REGS);
  private readonly rv = new DataView(this.regs.buffer);
  /** Writable bits per register byte. */
  private readonly wmask = new Uint8Array(REGS);
  /** Write-one-to-clear bits per register byte. */
  private readonly w1c = new Uint8Array(REGS);
  /** Descriptors processed since CHAINADDR was written (what DMACOUNT is compared with). */
  private processed = 0;
  /** The next descriptor to fetch; null: the one CHAINADDR names. */
  private next: bigint | null = null;
  /** Descriptors completed since power-on (for tests and benches). */
  completed = 0;

  constructor(bdf: string, env: DmaEnv) {
    super(bdf, env, {
      bars: [{ size: IOAT_BAR0_SIZE, is64: true }],
      msiVectors: 1,
      msix: {
        vectors: IOAT_MSIX_VECTORS,
        bar: 0,
        tableOffset: IOAT_MSIX_TABLE_OFFSET,
        pbaOffset: IOAT_MSIX_PBA_OFFSET,
      },
    });
    const rw = (off: number, len: number, mask: number) => {
      for (let i = 0; i < len; i++) this.wmask[off + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
    };
    rw(IOAT_INTRCTRL_OFFSET, 1, IOAT_INTRCTRL_MASTER_INT_EN | IOAT_INTRCTRL_MSIX_VECTOR_CONTROL);
    rw(CH + IOAT_CHANCTRL_OFFSET, 2, 0xffff);
    rw(CH + IOAT_CHAN_DMACOUNT_OFFSET, 2, 0xffff);
    // Descriptors are 64-byte aligned; the low bits of the chain and completion addresses still latch, so
    // a misaligned CHAINADDR is seen (and refused) when the engine starts.
    for (let i = 0; i < 8; i++) {
      this.wmask[CH + IOAT_CHAINADDR_OFFSET + i] = 0xff;
      this.wmask[CH + IOAT_CHANCMP_OFFSET + i] = 0xff;
    }
    for (let i = 0; i < 4; i++)
      this.w1c[CH + IOAT_CHANERR_OFFSET + i] = (IOAT_CHANERR_IMPLEMENTED >>> (8 * i)) & 0xff;
    this.resetDevice();
  }

  protected identify(cfg: PciConfig): void {
    cfg.setRo(PCI_VENDOR_ID, 2, IOAT_VENDOR_ID);
    cfg.setRo(PCI_DEVICE_ID, 2, IOAT_DEVICE_ID);
    cfg.setRo(PCI_REVISION_ID, 1, IOAT_REVISION);
    cfg.setRo(PCI_CLASS_PROG, 3, IOAT_CLASS);
    cfg.setRo(PCI_HEADER_TYPE, 1, 0);
    cfg.setRo(PCI_SUBSYSTEM_VENDOR_ID, 2, IOAT_VENDOR_ID);
    cfg.setRo(PCI_SUBSYSTEM_ID, 2, 0);
    cfg.setRo(PCI_INTERRUPT_PIN, 1, 0);
    cfg.setWmask(PCI_COMMAND, 2, 0x0407);
    // Extended config: the uncorrectable-error status and the channel error mirror are RW1C. The dword
    // at 0x100 stays 0 (no extended capabilities), so vfio-pci passes 0x100-0xfff through raw.
    cfg.setW1c(IOAT_PCI_DMAUNCERRSTS_OFFSET, 4, 0xffffffff);
    cfg.setW1c(IOAT_PCI_CHANERR_INT_OFFSET, 4, IOAT_CHANERR_IMPLEMENTED);
  }

  protected resetDevice(): void {
    this.regs.fill(0);
    this.regs[IOAT_CHANCNT_OFFSET] = 1;
    this.regs[IOAT_XFERCAP_OFFSET] = IOAT_XFERCAP_LOG2;
    this.regs[IOAT_VER_OFFSET] = IOAT_VER_3_3;
    this.resetChannel();
  }

  /** The largest copy one descriptor may ask for. */
  get maxCopy(): number {
    return 2 ** IOAT_XFERCAP_LOG2;
  }

  protected barRead(bar: number, off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    if (bar !== 0 || off >= REGS) return out;
    out.set(this.regs.subarray(off, Math.min(REGS, off + len)));
    return out;
  }

  protected barWrite(bar: number, off: number, data: Uint8Array): void {
    if (bar !== 0) return;
    let cmd = -1;
    let count = false;
    let chain = false;
    for (let i = 0; i < data.length; i++) {
      const o = off + i;
      if (o >= REGS) break;
      const b = data[i];
      if (o === CH + IOAT_CHANCMD_OFFSET) {
        cmd = b;
        continue;
      }
      const wm = this.wmask[o];
      this.regs[o] = ((this.regs[o] & ~wm) | (b & wm)) & ~(b & this.w1c[o]);
      if (o >= CH + IOAT_CHAN_DMACOUNT_OFFSET && o < CH + IOAT_CHAN_DMACOUNT_OFFSET + 2) count = true;
      if (o >= CH + IOAT_CHAINADDR_OFFSET && o < CH + IOAT_CHAINADDR_OFFSET + 8) chain = true;
    }
    if (chain) {
      // A new chain: the engine starts over at CHAINADDR and counts from 0.
      this.processed = 0;
      this.next = null;
    }
    if (cmd >= 0) this.chanCmd(cmd);
    if (count) this.run();
  }

  // --- register views (tests, inspect) ------------------------------------------

  reg8(off: number): number {
    return this.regs[off];
  }

  reg16(off: number): number {
    return this.rv.getUint16(off, true);
  }

  reg32(off: number): number {
    return this.rv.getUint32(off, true);
  }

  reg64(off: number): bigint {
    return this.rv.getBigUint64(off, true);
  }

  /** CHANSTS bits 2:0. */
  status(): number {
    return this.regs[CH + IOAT_CHANSTS_OFFSET] & IOAT_CHANSTS_STATUS;
  }

  chanerr(): number {
    return this.reg32(CH + IOAT_CHANERR_OFFSET);
  }

  /** Descriptors processed since CHAINADDR was written. */
  processedCount(): number {
    return this.processed;
  }

  // --- the channel ----------------------------------------------------------------

  private chanCmd(cmd: number): void {
    if ((cmd & IOAT_CHANCMD_RESET) !== 0) {
      // Reset completes at once: CHANCMD reads 0 again before the next access.
      this.resetChannel();
      return;
    }
    const st = this.status();
    if ((cmd & IOAT_CHANCMD_ABORT) !== 0) {
      // Nothing is ever in flight between accesses: abort just stops the channel.
      this.setStatus(IOAT_CHANSTS_HALTED);
      return;
    }
    if ((cmd & IOAT_CHANCMD_SUSPEND) !== 0 && st !== IOAT_CHANSTS_HALTED) {
      this.setStatus(IOAT_CHANSTS_SUSPENDED);
      return;
    }
    if ((cmd & IOAT_CHANCMD_RESUME) !== 0 && st === IOAT_CHANSTS_SUSPENDED) this.setStatus(IOAT_CHANSTS_DONE);
  }

  /** CHANCMD RESET: channel registers, errors and the engine's position cleared; the channel halted. */
  private resetChannel(): void {
    this.regs.fill(0, CH, CH + IOAT_CHANNEL_REGS);
    this.setStatus(IOAT_CHANSTS_HALTED);
    this.config.bytes.fill(0, IOAT_PCI_CHANERR_INT_OFFSET, IOAT_PCI_CHANERR_INT_OFFSET + 4);
    this.processed = 0;
    this.next = null;
  }

  private setStatus(st: number): void {
    this.regs[CH + IOAT_CHANSTS_OFFSET] = (this.regs[CH + IOAT_CHANSTS_OFFSET] & ~IOAT_CHANSTS_STATUS) | st;
  }

  /** The DMACOUNT doorbell: process descriptors until the count is reached or one fails. */
  private run(): void {
    if (this.chanerr() !== 0) return; // latched errors keep the channel halted
    const target = this.reg16(CH + IOAT_CHAN_DMACOUNT_OFFSET);
    this.setStatus(IOAT_CHANSTS_ACTIVE);
    // the whole chain runs within this access: one DMA batch (a self-chained
    // descriptor and its source are read once, not once per copy)
    this.dma.beginBatch();
    try {
      while (this.processed !== target) {
        const addr = this.next ?? this.reg64(CH + IOAT_CHAINADDR_OFFSET);
        const halt = this.process(addr);
        if (halt !== null) {
          this.halt(halt);
          return;
        }
      }
    } finally {
      this.dma.endBatch();
    }
    this.setStatus(IOAT_CHANSTS_DONE);
  }

  /** Fetch, check and perform one descriptor; null when it completed. */
  private process(addr: bigint): Halt | null {
    this.rv.setBigUint64(CH + IOAT_CDAR_OFFSET, addr, true);
    if (addr % DESC_ALIGN !== 0n) {
      const err = this.next === null ? IOAT_CHANERR_CHAIN_ADDR_VALUE_ERR : IOAT_CHANERR_NEXT_DESC_ALIGN_ERR;
      return { err };
    }
    const fetched = this.dma.read(addr, IOAT_DESC_SIZE);
    if (!fetched.ok) return { err: this.faultBit(IOAT_CHANERR_NEXT_ADDR_ERR, false) };
    const d = new DataView(fetched.bytes.buffer);
    const size = d.getUint32(IOAT_DESC_SIZE_OFFSET, true);
    const ctl = d.getUint32(IOAT_DESC_CTL_OFFSET, true);
    const src = d.getBigUint64(IOAT_DESC_SRC_OFFSET, true);
    const dst = d.getBigUint64(IOAT_DESC_DST_OFFSET, true);
    const next = d.getBigUint64(IOAT_DESC_NEXT_OFFSET, true);
    if (ctl >>> IOAT_DESC_CTL_OP_SHIFT !== IOAT_OP_COPY) return { err: IOAT_CHANERR_CONTROL_ERR };
    if (size > this.maxCopy) return { err: IOAT_CHANERR_LENGTH_ERR };
    if ((ctl & IOAT_DESC_CTL_NULL) === 0) {
      const halt = this.copy(src, dst, size);
      if (halt !== null) return halt;
    }
    this.processed = (this.processed + 1) & 0xffff;
    this.completed++;
    this.next = next;
    const sts = (addr & CHANSTS_ADDR_MASK) | BigInt(IOAT_CHANSTS_ACTIVE);
    this.rv.setBigUint64(CH + IOAT_CHANSTS_OFFSET, sts, true);
    if ((ctl & IOAT_DESC_CTL_COMPL_WRITE) !== 0) {
      // Completion writeback: CHANSTS as it reads after this descriptor, to CHANCMP.
      const where = this.reg64(CH + IOAT_CHANCMP_OFFSET);
      const done = new Uint8Array(8);
      new DataView(done.buffer).setBigUint64(0, sts | BigInt(IOAT_CHANSTS_DONE), true);
      const w = this.dma.write(where, done);
      if (!w.ok) return { err: IOAT_CHANERR_COMPLETION_ADDR_ERR };
    }
    const ctrl = this.reg16(CH + IOAT_CHANCTRL_OFFSET);
    if ((ctl & IOAT_DESC_CTL_INT_EN) !== 0 && (ctrl & IOAT_CHANCTRL_INT_REARM) !== 0) {
      // One interrupt per arming: the driver rearms by writing CHANCTRL again.
      this.rv.setUint16(CH + IOAT_CHANCTRL_OFFSET, ctrl & ~IOAT_CHANCTRL_INT_REARM, true);
      this.raiseIrq(0);
    }
    return null;
  }

  /** One copy: both sides translated in full before a byte moves, so a faulting copy writes nothing. */
  private copy(src: bigint, dst: bigint, size: number): Halt | null {
    const s = this.dma.translate(src, size, false);
    if (!s.ok) {
      this.dma.logFault("read", src, size, s.reason, this.dma.masterFinding());
      return { err: this.faultBit(IOAT_CHANERR_SRC_ADDR_ERR, false) };
    }
    const t = this.dma.translate(dst, size, true);
    if (!t.ok) {
      this.dma.logFault("write", dst, size, t.reason, this.dma.masterFinding());
      return { err: this.faultBit(IOAT_CHANERR_DEST_ADDR_ERR, true) };
    }
    if (size > 0) this.dma.writeSegs(dst, t.segments, this.dma.readSegs(src, s.segments, size));
    return null;
  }

  /**
   * Which CHANERR bit a failed DMA sets: behind an IOMMU a refused
   * translation is an address error; without one (or with bus mastering
   * off) the request itself fails on the bus, a read or write data error.
   */
  private faultBit(addrErr: number, write: boolean): number {
    if (this.iommu !== null && this.busMaster()) return addrErr;
    return write ? IOAT_CHANERR_WRITE_DATA_ERR : IOAT_CHANERR_READ_DATA_ERR;
  }

  private halt(h: Halt): void {
    const off = CH + IOAT_CHANERR_OFFSET;
    this.rv.setUint32(off, (this.reg32(off) | h.err) >>> 0, true);
    const cfg = this.config;
    const mirror = cfg.read(IOAT_PCI_CHANERR_INT_OFFSET, 4);
    cfg.setRo(IOAT_PCI_CHANERR_INT_OFFSET, 4, (mirror | h.err) >>> 0);
    this.setStatus(IOAT_CHANSTS_HALTED);
    // No completion interrupt on an error; only an error interrupt, when the driver asked for one.
    if ((this.reg16(CH + IOAT_CHANCTRL_OFFSET) & IOAT_CHANCTRL_ERR_INT_EN) !== 0) this.raiseIrq(0);
  }
}
