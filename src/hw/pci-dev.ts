import { type BarDef, PciConfig } from "./pci-config.js";
import { DmaEngine, type DmaEnv, type DmaMaster, type DmaTranslator } from "./pci-dma.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSI,
  PCI_CAP_ID_MSIX,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_COMMAND,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_QMASK,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSIX_ENTRY_CTRL_MASKBIT,
  PCI_MSIX_ENTRY_SIZE,
  PCI_MSIX_ENTRY_VECTOR_CTRL,
  PCI_MSIX_FLAGS,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_MSIX_FLAGS_QSIZE,
  PCI_MSIX_PBA,
  PCI_MSIX_TABLE,
  PCI_VENDOR_ID,
} from "./pci-regs.js";

/** An interrupt message as the function sends it (a posted write to addr with data). */
export interface MsiMessage {
  kind: "msi" | "msix";
  vector: number;
  addr: bigint;
  data: number;
}

/** Where interrupt messages land: the kernel's interrupt layer (vfio-pci routes them to eventfds). */
export type MsiSink = (fn: PciFunction, msg: MsiMessage) => void;

/** Where the MSI-X table and PBA live. */
export interface MsixLayout {
  vectors: number;
  bar: number;
  tableOffset: number;
  pbaOffset: number;
}

/**
 * A PCI Express function: its configuration space, memory BARs with MMIO
 * dispatch, MSI and MSI-X, function-level reset, and a DMA engine that goes
 * through the function's IOMMU (or uses physical addresses when it has
 * none). A device kind subclasses it and supplies its BAR registers.
 */
export abstract class PciFunction implements DmaMaster {
  readonly config = new PciConfig(PCI_CFG_SPACE_EXP_SIZE);
  readonly dma: DmaEngine;
  /** Set by the iommu layer when the function sits behind an IOMMU (its IommuDevice). */
  iommu: DmaTranslator | null = null;
  /** Set by whoever owns the interrupt (vfio-pci while the device is open). */
  msiSink: MsiSink | null = null;
  /** BAR definitions by BAR index (a 64-bit BAR leaves the next index undefined). */
  readonly bars: (BarDef | undefined)[] = [];
  readonly msix: MsixLayout | null;
  private msixTable: Uint8Array;
  private msixPba: Uint8Array;
  /** Interrupts sent so far (tests can see an interrupt happened). */
  irqsSent = 0;

  constructor(
    readonly bdf: string,
    env: DmaEnv,
    layout: { bars: (BarDef | undefined)[]; msiVectors: number; msix: MsixLayout | null },
  ) {
    this.dma = new DmaEngine(this, env);
    this.msix = layout.msix;
    this.msixTable = new Uint8Array((layout.msix?.vectors ?? 0) * PCI_MSIX_ENTRY_SIZE);
    this.msixPba = new Uint8Array(Math.ceil((layout.msix?.vectors ?? 0) / 64) * 8);
    let slot = 0;
    for (const b of layout.bars) {
      this.bars[slot] = b;
      slot += b?.is64 ? 2 : 1;
    }
    this.identify(this.config);
    this.config.defineBars(layout.bars);
    this.addCaps(layout.msiVectors, layout.msix);
    this.config.sealPowerOn();
    this.resetMsixTable();
  }

  /** Vendor/device/class and other read-only header fields. */
  protected abstract identify(cfg: PciConfig): void;
  /** A load of `len` bytes at `off` in BAR `bar` (the MSI-X BAR's table/PBA are handled here). */
  protected abstract barRead(bar: number, off: number, len: number): Uint8Array;
  protected abstract barWrite(bar: number, off: number, data: Uint8Array): void;
  /** Device-specific state back to power-on (FLR). */
  protected abstract resetDevice(): void;

  // --- configuration space --------------------------------------------------

  configRead(off: number, len: 1 | 2 | 4): number {
    return this.config.read(off, len);
  }

  configWrite(off: number, len: 1 | 2 | 4, value: number): void {
    const exp = this.config.findCap(PCI_CAP_ID_EXP);
    this.config.write(off, len, value);
    // Writing Initiate Function Level Reset resets the function (the bit reads as 0).
    if (exp !== 0 && (this.config.read(exp + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR) !== 0) {
      this.flr();
      return;
    }
    if (this.msix !== null) this.deliverPendingMsix();
  }

  command(): number {
    return this.config.read(PCI_COMMAND, 2);
  }

  busMaster(): boolean {
    return (this.command() & PCI_COMMAND_MASTER) !== 0;
  }

  memoryDecode(): boolean {
    return (this.command() & PCI_COMMAND_MEMORY) !== 0;
  }

  /** Size of BAR `i` in bytes (0 when unimplemented). */
  barSize(i: number): number {
    return this.bars[i]?.size ?? 0;
  }

  /**
   * The vendor and device IDs the PCI core records for the function
   * (pci_dev->vendor/device, the sysfs files). A VF reads 0xffff in its
   * own config space; the core takes the PF's vendor and the VF Device ID.
   */
  pciVendor(): number {
    return this.config.read(PCI_VENDOR_ID, 2);
  }

  pciDevice(): number {
    return this.config.read(PCI_DEVICE_ID, 2);
  }

  /** The PF of an SR-IOV Virtual Function (pci_physfn), null for any other function. */
  get physfn(): PciFunction | null {
    return null;
  }

  /** The type bits of BAR `i` (memory, 64-bit, prefetchable): the low nibble of its register. */
  barFlags(i: number): number {
    return this.config.read(PCI_BASE_ADDRESS_0 + 4 * i, 4) & 0xf;
  }

  /** The bus address BAR `i` is programmed with. */
  barAddress(i: number): bigint {
    const b = this.bars[i];
    if (b === undefined) return 0n;
    const lo = BigInt((this.config.read(PCI_BASE_ADDRESS_0 + 4 * i, 4) & 0xfffffff0) >>> 0);
    const hi = b.is64 ? BigInt(this.config.read(PCI_BASE_ADDRESS_0 + 4 * i + 4, 4)) : 0n;
    return (hi << 32n) | lo;
  }

  /** Firmware/PCI core BAR assignment. */
  assignBar(i: number, addr: bigint): void {
    const b = this.bars[i];
    if (b === undefined) throw new Error(`BAR ${i} not implemented`);
    this.config.write(PCI_BASE_ADDRESS_0 + 4 * i, 4, Number(addr & 0xffffffffn));
    if (b.is64) this.config.write(PCI_BASE_ADDRESS_0 + 4 * i + 4, 4, Number(addr >> 32n));
  }

  hasFlr(): boolean {
    const exp = this.config.findCap(PCI_CAP_ID_EXP);
    return exp !== 0 && (this.config.read(exp + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR) !== 0;
  }

  // --- MMIO -------------------------------------------------------------------

  /**
   * A memory read the function decodes (memory decode must be on: with it
   * off the function does not claim the cycle and the read returns all ones).
   */
  mmioRead(bar: number, off: number, len: number): Uint8Array {
    if (!this.memoryDecode() || off < 0 || off + len > this.barSize(bar))
      return new Uint8Array(len).fill(0xff);
    if (this.inMsix(bar, off, len)) {
      const out = new Uint8Array(len);
      for (let i = 0; i < len; i++) out[i] = this.msixByte(off + i);
      return out;
    }
    return this.barRead(bar, off, len);
  }

  mmioWrite(bar: number, off: number, data: Uint8Array): void {
    if (!this.memoryDecode() || off < 0 || off + data.length > this.barSize(bar)) return;
    const m = this.msix;
    if (m !== null && this.inMsix(bar, off, data.length)) {
      const t = off - m.tableOffset;
      if (t >= 0 && t + data.length <= this.msixTable.length) {
        this.msixTable.set(data, t);
        this.deliverPendingMsix();
      }
      return;
    }
    this.barWrite(bar, off, data);
  }

  // --- interrupts -------------------------------------------------------------

  /**
   * Signal interrupt vector `vector`: MSI-X when enabled, else MSI when
   * enabled, else nothing (INTx is not wired). An MSI is a memory write, so
   * it needs bus mastering. Returns whether a message was sent.
   */
  raiseIrq(vector: number): boolean {
    if (!this.busMaster()) return false;
    // the message does not pass the device's earlier memory writes (PCIe posted-write ordering)
    this.dma.flushBatch();
    const msixPos = this.config.findCap(PCI_CAP_ID_MSIX);
    if (msixPos !== 0 && this.msix !== null) {
      const flags = this.config.read(msixPos + PCI_MSIX_FLAGS, 2);
      if ((flags & PCI_MSIX_FLAGS_ENABLE) !== 0) {
        if (vector >= this.msix.vectors) return false;
        const masked =
          (flags & PCI_MSIX_FLAGS_MASKALL) !== 0 ||
          (this.msixTable[vector * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL] & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0;
        if (masked) {
          this.msixPba[vector >> 3] |= 1 << (vector & 7);
          return false;
        }
        return this.sendMsix(vector);
      }
    }
    const msiPos = this.config.findCap(PCI_CAP_ID_MSI);
    if (msiPos === 0) return false;
    const flags = this.config.read(msiPos + PCI_MSI_FLAGS, 2);
    if ((flags & PCI_MSI_FLAGS_ENABLE) === 0) return false;
    const enabled = 1 << ((flags & PCI_MSI_FLAGS_QSIZE) >> 4);
    if (vector >= enabled) return false;
    const addr =
      (BigInt(this.config.read(msiPos + PCI_MSI_ADDRESS_HI, 4)) << 32n) |
      BigInt(this.config.read(msiPos + PCI_MSI_ADDRESS_LO, 4));
    // Multiple-message MSI puts the vector number in the low data bits.
    const data = (this.config.read(msiPos + PCI_MSI_DATA_64, 2) & ~(enabled - 1)) | vector;
    return this.send({ kind: "msi", vector, addr, data });
  }

  /** Vectors the MSI capability offers (Multiple Message Capable), 0 without one. */
  msiCapable(): number {
    const pos = this.config.findCap(PCI_CAP_ID_MSI);
    return pos === 0 ? 0 : 1 << ((this.config.read(pos + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_QMASK) >> 1);
  }

  /** Vectors the MSI-X table has, 0 without MSI-X. */
  msixCapable(): number {
    const pos = this.config.findCap(PCI_CAP_ID_MSIX);
    return pos === 0 ? 0 : (this.config.read(pos + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;
  }

  // --- reset --------------------------------------------------------------------

  /** Function-level reset: configuration, MSI-X table and device state back to power-on. */
  flr(): void {
    this.config.resetToPowerOn();
    this.resetMsixTable();
    this.resetDevice();
  }

  /**
   * pci_reset_function(): the PCI core saves the configuration header and
   * capabilities, resets the function and restores them, so BAR addresses,
   * the command register and MSI state survive while the device's own
   * state is cleared.
   */
  resetFunction(): void {
    const saved = this.config.bytes.slice(0, 0x100);
    const table = this.msixTable.slice();
    this.flr();
    this.config.bytes.set(saved);
    this.msixTable.set(table);
  }

  // --- internals ------------------------------------------------------------------

  private addCaps(msiVectors: number, msix: MsixLayout | null): void {
    const cfg = this.config;
    if (msiVectors > 0) {
      const pos = cfg.addCap(PCI_CAP_ID_MSI, 0x40);
      const mmc = Math.log2(msiVectors);
      if (!Number.isInteger(mmc) || mmc > 5) throw new Error(`MSI vectors ${msiVectors}`);
      cfg.setRo(pos + PCI_MSI_FLAGS, 2, 0x80 | (mmc << 1));
      cfg.setWmask(pos + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
      cfg.setWmask(pos + PCI_MSI_ADDRESS_LO, 4, 0xfffffffc);
      cfg.setWmask(pos + PCI_MSI_ADDRESS_HI, 4, 0xffffffff);
      cfg.setWmask(pos + PCI_MSI_DATA_64, 2, 0xffff);
    }
    if (msix !== null) {
      const pos = cfg.addCap(PCI_CAP_ID_MSIX, 0x50);
      cfg.setRo(pos + PCI_MSIX_FLAGS, 2, msix.vectors - 1);
      cfg.setWmask(pos + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
      cfg.setRo(pos + PCI_MSIX_TABLE, 4, msix.tableOffset | msix.bar);
      cfg.setRo(pos + PCI_MSIX_PBA, 4, msix.pbaOffset | msix.bar);
    }
    // PCI Express endpoint, capability version 2, with Function Level Reset.
    const exp = cfg.addCap(PCI_CAP_ID_EXP, 0x60);
    cfg.setRo(exp + 2, 2, 0x0002);
    cfg.setRo(exp + PCI_EXP_DEVCAP, 4, PCI_EXP_DEVCAP_FLR);
    cfg.setWmask(exp + PCI_EXP_DEVCTL, 2, 0x80ff);
  }

  private resetMsixTable(): void {
    this.msixTable.fill(0);
    this.msixPba.fill(0);
    const n = this.msix?.vectors ?? 0;
    for (let v = 0; v < n; v++)
      this.msixTable[v * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
  }

  /**
   * Whether an access touches the MSI-X table or PBA. The rest of the BAR
   * that holds them is the device's own (the IOAT keeps its registers and
   * the table in BAR0, as the real part does).
   */
  private inMsix(bar: number, off: number, len: number): boolean {
    const m = this.msix;
    if (m === null || bar !== m.bar) return false;
    const overlaps = (start: number, size: number) => off < start + size && off + len > start;
    return overlaps(m.tableOffset, this.msixTable.length) || overlaps(m.pbaOffset, this.msixPba.length);
  }

  private msixByte(off: number): number {
    const m = this.msix!;
    const t = off - m.tableOffset;
    if (t >= 0 && t < this.msixTable.length) return this.msixTable[t];
    const p = off - m.pbaOffset;
    if (p >= 0 && p < this.msixPba.length) return this.msixPba[p];
    return 0;
  }

  private sendMsix(vector: number): boolean {
    const e = new DataView(this.msixTable.buffer, vector * 16, 16);
    const addr = (BigInt(e.getUint32(4, true)) << 32n) | BigInt(e.getUint32(0, true));
    return this.send({ kind: "msix", vector, addr, data: e.getUint32(8, true) });
  }

  /** A vector unmasked with its pending bit set fires now (PCI spec MSI-X pending semantics). */
  private deliverPendingMsix(): void {
    const m = this.msix!;
    const pos = this.config.findCap(PCI_CAP_ID_MSIX);
    const flags = this.config.read(pos + PCI_MSIX_FLAGS, 2);
    if ((flags & PCI_MSIX_FLAGS_ENABLE) === 0 || (flags & PCI_MSIX_FLAGS_MASKALL) !== 0) return;
    for (let v = 0; v < m.vectors; v++) {
      const bit = 1 << (v & 7);
      if ((this.msixPba[v >> 3] & bit) === 0) continue;
      if ((this.msixTable[v * 16 + PCI_MSIX_ENTRY_VECTOR_CTRL] & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0) continue;
      this.msixPba[v >> 3] &= ~bit;
      if (this.busMaster()) this.sendMsix(v);
    }
  }

  private send(msg: MsiMessage): boolean {
    this.irqsSent++;
    this.msiSink?.(this, msg);
    return true;
  }
}

/** The BAR index a 64-bit BAR's flags say (for tests and vfio's BAR emulation). */
export function barIs64(cfg: PciConfig, i: number): boolean {
  return (cfg.read(PCI_BASE_ADDRESS_0 + 4 * i, 4) & PCI_BASE_ADDRESS_MEM_TYPE_64) !== 0;
}
