import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CAPABILITY_LIST,
  PCI_CFG_EXT_CAP_START,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  pciExtCapId,
  pciExtCapNext,
} from "./pci-regs.js";

/** A BAR as the function decodes it. Sizes are powers of two, at least 16 bytes. */
export interface BarDef {
  size: number;
  /** A 64-bit memory BAR takes this slot and the next. */
  is64: boolean;
  prefetch?: boolean;
}

/**
 * A function's configuration space as the hardware holds it: 4 KiB of
 * bytes plus a write mask (bits software may change) and a write-1-to-clear
 * mask, as real config registers behave. BAR size probing falls out of
 * the write mask: the low address bits of a BAR are not writable, so
 * writing all ones reads back ~(size - 1) with the type bits.
 */
export class PciConfig {
  readonly bytes = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  readonly wmask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  readonly w1cmask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private poweron = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  /** The last capability added (to chain the next one). */
  private lastCap = 0;
  /** The last extended capability added. */
  private lastExtCap = 0;

  constructor(readonly size: number = PCI_CFG_SPACE_EXP_SIZE) {}

  read(off: number, len: 1 | 2 | 4): number {
    if (off < 0 || off + len > this.size) return len === 4 ? 0xffffffff : (1 << (8 * len)) - 1;
    let v = 0;
    for (let i = len - 1; i >= 0; i--) v = v * 256 + this.bytes[off + i];
    return v;
  }

  /** A configuration write as the device decodes it (read-only bits kept, W1C bits cleared). */
  write(off: number, len: 1 | 2 | 4, value: number): void {
    if (off < 0 || off + len > this.size) return;
    for (let i = 0; i < len; i++) {
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const o = off + i;
      const wm = this.wmask[o];
      const w1c = this.w1cmask[o];
      let nv = (this.bytes[o] & ~wm) | (b & wm);
      nv &= ~(b & w1c);
      this.bytes[o] = nv & 0xff;
    }
  }

  // --- construction helpers (the function's "silicon") --------------------

  /** Set a read-only value (firmware/silicon), little-endian. */
  setRo(off: number, len: number, value: number): void {
    for (let i = 0; i < len; i++) this.bytes[off + i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  }

  setWmask(off: number, len: number, mask: number): void {
    for (let i = 0; i < len; i++) this.wmask[off + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
  }

  setW1c(off: number, len: number, mask: number): void {
    for (let i = 0; i < len; i++) this.w1cmask[off + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
  }

  /** Lay out memory BARs from slot 0: the type bits are read-only, the address bits above the size writable. */
  defineBars(bars: readonly (BarDef | undefined)[]): void {
    let slot = 0;
    for (const bar of bars) {
      if (slot >= 6) throw new Error("too many BARs");
      const off = PCI_BASE_ADDRESS_0 + 4 * slot;
      if (bar === undefined) {
        slot++;
        continue;
      }
      if (bar.size < 16 || (bar.size & (bar.size - 1)) !== 0) throw new Error(`BAR size ${bar.size}`);
      const flags = (bar.is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetch ? 0x8 : 0);
      this.setRo(off, 4, flags);
      this.setWmask(off, 4, (~(bar.size - 1) & 0xfffffff0) >>> 0);
      if (bar.is64) {
        this.setWmask(off + 4, 4, 0xffffffff);
        slot += 2;
      } else {
        slot++;
      }
    }
  }

  /** Append a capability to the list; returns its offset. `len` bytes are reserved from `off`. */
  addCap(id: number, off: number): number {
    if (this.lastCap === 0) {
      this.bytes[PCI_CAPABILITY_LIST] = off;
      this.bytes[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    } else {
      this.bytes[this.lastCap + 1] = off;
    }
    this.bytes[off] = id;
    this.bytes[off + 1] = 0;
    this.lastCap = off;
    return off;
  }

  /** Walk the capability list: the offset of capability `id`, or 0. */
  findCap(id: number): number {
    let pos = this.bytes[PCI_CAPABILITY_LIST] & ~3;
    for (let ttl = 48; pos >= 0x40 && ttl > 0; ttl--) {
      if (this.bytes[pos] === id) return pos;
      pos = this.bytes[pos + 1] & ~3;
    }
    return 0;
  }

  /**
   * Append a PCI Express extended capability (the list starts at 0x100;
   * the header dword holds ID, version and the next offset). Returns `off`.
   */
  addExtCap(id: number, version: number, off: number): number {
    if (off < PCI_CFG_EXT_CAP_START || off % 4 !== 0 || off >= this.size)
      throw new Error(`ext cap at ${off}`);
    if (this.lastExtCap !== 0) {
      const prev = this.read(this.lastExtCap, 4);
      this.setRo(this.lastExtCap, 4, (prev & 0xfffff) + off * 2 ** 20);
    } else if (off !== PCI_CFG_EXT_CAP_START) {
      throw new Error("the first extended capability sits at 0x100");
    }
    this.setRo(off, 4, (id & 0xffff) | ((version & 0xf) << 16));
    this.lastExtCap = off;
    return off;
  }

  /** Walk the extended capability list (pci_find_ext_capability): the offset of `id`, or 0. */
  findExtCap(id: number): number {
    if (this.size <= PCI_CFG_EXT_CAP_START) return 0;
    let pos = PCI_CFG_EXT_CAP_START;
    // at most (4096 - 256) / 8 capabilities, as the kernel's ttl
    for (let ttl = 480; pos >= PCI_CFG_EXT_CAP_START && ttl > 0; ttl--) {
      const header = this.read(pos, 4);
      if (header === 0 || header === 0xffffffff) return 0;
      if (pciExtCapId(header) === id) return pos;
      pos = pciExtCapNext(header);
    }
    return 0;
  }

  /** Remember the current contents as the power-on state (what FLR restores). */
  sealPowerOn(): void {
    this.poweron = this.bytes.slice();
  }

  /** Back to the power-on state (function-level reset). */
  resetToPowerOn(): void {
    this.bytes.set(this.poweron);
  }
}
