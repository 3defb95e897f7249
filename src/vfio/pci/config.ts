import type { PciFunction } from "../../hw/pci-dev.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CAP_EXP_ENDPOINT_SIZEOF_V1,
  PCI_CAP_EXP_ENDPOINT_SIZEOF_V2,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSI,
  PCI_CAP_ID_MSIX,
  PCI_CAP_MSIX_SIZEOF,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_VERS,
  PCI_EXT_CAP_ID_SRIOV,
  PCI_EXT_CAP_SRIOV_SIZEOF,
  PCI_INTERRUPT_LINE,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_MASKBIT,
  PCI_MSIX_FLAGS,
  PCI_ROM_ADDRESS,
  PCI_STD_HEADER_SIZEOF,
} from "../../hw/pci-regs.js";

const CMD_PASSTHROUGH = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;

/**
 * vfio-pci's view of config space (drivers/vfio/pci/vfio_pci_config.c),
 * as far as the model needs it: the user reads a virtual copy (vconfig)
 * taken at open where vfio virtualizes, the hardware elsewhere.
 * - BARs and the ROM BAR are virtual: writes stay in vconfig; reads are
 *   masked to the BAR size with the real type bits, so size probing works
 *   without touching the device.
 * - The command register's I/O, memory, bus-master and INTx-disable bits
 *   reach the device; the rest is ignored.
 * - MSI and MSI-X capabilities are virtual (the host programs the real
 *   ones through VFIO_DEVICE_SET_IRQS).
 * - PCIe DevCtl "Initiate FLR" resets the function; other writes to
 *   the header and the capabilities are dropped.
 * - Bytes no capability claims (gaps between capabilities, and all of
 *   0x100-0xfff but a PF's SR-IOV capability, which reads through and
 *   drops writes: the PCI core owns it)
 *   pass through raw both ways, as the kernel's unassigned_perms do;
 *   devices keep registers there (the IOAT's error registers at 0x148
 *   and 0x180).
 */
export class VfioPciConfig {
  readonly vconfig: Uint8Array;
  private readonly msiPos: number;
  private readonly msixPos: number;
  private readonly expPos: number;
  /** Per byte: the bits the user's writes set in vconfig (0 = not virtualized). */
  private readonly vmask = new Uint8Array(4096);
  /** Per byte: 1 where no capability claims the byte (vfio's PCI_CAP_ID_INVALID: raw access). */
  private readonly unassigned = new Uint8Array(4096);

  constructor(
    private readonly fn: PciFunction,
    private readonly onFlr: () => void,
  ) {
    this.vconfig = fn.config.bytes.slice();
    this.msiPos = fn.config.findCap(PCI_CAP_ID_MSI);
    this.msixPos = fn.config.findCap(PCI_CAP_ID_MSIX);
    this.expPos = fn.config.findCap(PCI_CAP_ID_EXP);
    const set = (off: number, bytes: number[]) => this.vmask.set(bytes, off);
    set(PCI_BASE_ADDRESS_0, new Array(24).fill(0xff));
    set(PCI_INTERRUPT_LINE, [0xff]);
    if (this.msiPos !== 0) {
      // flags: enable and multiple-message-enable; address (dword aligned), upper address, data.
      set(
        this.msiPos + PCI_MSI_FLAGS,
        [0x71, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
      );
    }
    if (this.msixPos !== 0) set(this.msixPos + PCI_MSIX_FLAGS, [0x00, 0xc0]);
    // a VF has no Memory Space bit of its own (the PF's VF MSE enables it): vfio emulates one
    if (fn.physfn !== null) this.vmask[PCI_COMMAND] |= PCI_COMMAND_MEMORY;
    this.unassigned.fill(1, PCI_STD_HEADER_SIZEOF, fn.config.size);
    // the SR-IOV capability is the PCI core's: readable, never written by the user
    const sriov = fn.config.findExtCap(PCI_EXT_CAP_ID_SRIOV);
    if (sriov !== 0) this.unassigned.fill(0, sriov, sriov + PCI_EXT_CAP_SRIOV_SIZEOF);
    const claim = (pos: number, len: number) => {
      if (pos !== 0) this.unassigned.fill(0, pos, pos + len);
    };
    claim(this.msiPos, this.msiPos === 0 ? 0 : msiCapLen(fn.configRead(this.msiPos + PCI_MSI_FLAGS, 2)));
    claim(this.msixPos, PCI_CAP_MSIX_SIZEOF);
    claim(this.expPos, this.expPos === 0 ? 0 : expCapLen(fn.configRead(this.expPos + PCI_EXP_FLAGS, 2)));
  }

  get size(): number {
    return this.fn.config.size;
  }

  read(pos: number, len: 1 | 2 | 4): number {
    let v = 0;
    for (let i = len - 1; i >= 0; i--) v = v * 256 + this.readByte(pos + i);
    return v;
  }

  write(pos: number, len: 1 | 2 | 4, value: number): void {
    if (pos < PCI_COMMAND + 2 && pos + len > PCI_COMMAND) {
      // Merge the written bytes into the current command value, pass the decode bits on.
      const cur = this.fn.configRead(PCI_COMMAND, 2);
      let cmd = cur;
      for (let i = 0; i < len; i++) {
        const o = pos + i - PCI_COMMAND;
        if (o < 0 || o > 1) continue;
        const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
        cmd = (cmd & ~(0xff << (8 * o))) | (b << (8 * o));
      }
      this.fn.configWrite(PCI_COMMAND, 2, (cur & ~CMD_PASSTHROUGH) | (cmd & CMD_PASSTHROUGH));
    }
    let raw = 0;
    for (let i = 0; i < len; i++) {
      const o = pos + i;
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const m = this.vmask[o];
      if (m !== 0) this.vconfig[o] = (this.vconfig[o] & ~m) | (b & m);
      raw += this.unassigned[o];
    }
    if (raw === len) this.fn.configWrite(pos, len, value);
    else if (raw !== 0) {
      for (let i = 0; i < len; i++)
        if (this.unassigned[pos + i])
          this.fn.configWrite(pos + i, 1, Math.floor(value / 2 ** (8 * i)) & 0xff);
    }
    if (
      this.expPos !== 0 &&
      pos <= this.expPos + PCI_EXP_DEVCTL + 1 &&
      pos + len > this.expPos + PCI_EXP_DEVCTL + 1
    ) {
      const hi = Math.floor(value / 2 ** (8 * (this.expPos + PCI_EXP_DEVCTL + 1 - pos))) & 0xff;
      if ((hi << 8) & PCI_EXP_DEVCTL_BCR_FLR) this.onFlr();
    }
  }

  /** The user-visible value of BAR register `i` (vfio_bar_fixup). */
  private barValue(i: number): number {
    const size = this.fn.barSize(i);
    const off = PCI_BASE_ADDRESS_0 + 4 * i;
    const raw = this.vraw32(off);
    if (size === 0) {
      // The upper half of a 64-bit BAR carries the high address bits.
      if (i > 0 && this.fn.barSize(i - 1) > 0 && this.fn.barFlags(i - 1) & PCI_BASE_ADDRESS_MEM_TYPE_64) {
        const hiMask = Math.floor(2 ** 32 - this.fn.barSize(i - 1) / 2 ** 32);
        return (raw & hiMask) >>> 0;
      }
      return 0;
    }
    const flags = this.fn.barFlags(i);
    return ((raw & ~(size - 1) & 0xfffffff0) | flags) >>> 0;
  }

  private readByte(o: number): number {
    if (o >= PCI_BASE_ADDRESS_0 && o < PCI_BASE_ADDRESS_0 + 24) {
      const i = Math.floor((o - PCI_BASE_ADDRESS_0) / 4);
      return (this.barValue(i) >>> (8 * ((o - PCI_BASE_ADDRESS_0) % 4))) & 0xff;
    }
    if (o >= PCI_ROM_ADDRESS && o < PCI_ROM_ADDRESS + 4) return 0; // no expansion ROM
    // vfio_config_init(): a VF's IDs (0xffff in hardware) read as the PCI core's vendor and VF device
    if (o < 4 && this.fn.physfn !== null) {
      const id = o < 2 ? this.fn.pciVendor() : this.fn.pciDevice();
      return (id >> (8 * (o & 1))) & 0xff;
    }
    const m = this.vmask[o];
    if (m === 0) return this.fn.configRead(o, 1);
    return (this.vconfig[o] & m) | (this.fn.configRead(o, 1) & ~m & 0xff);
  }

  private vraw32(off: number): number {
    return (
      (this.vconfig[off] |
        (this.vconfig[off + 1] << 8) |
        (this.vconfig[off + 2] << 16) |
        (this.vconfig[off + 3] << 24)) >>>
      0
    );
  }
}

/** vfio_msi_cap_len(): 10 bytes, 4 more with a 64-bit address, 10 more with per-vector masking. */
function msiCapLen(flags: number): number {
  return 10 + (flags & PCI_MSI_FLAGS_64BIT ? 4 : 0) + (flags & PCI_MSI_FLAGS_MASKBIT ? 10 : 0);
}

/** vfio_cap_len() for PCI Express: the endpoint layout of capability version 1 or 2. */
function expCapLen(flags: number): number {
  return (flags & PCI_EXP_FLAGS_VERS) === 1 ? PCI_CAP_EXP_ENDPOINT_SIZEOF_V1 : PCI_CAP_EXP_ENDPOINT_SIZEOF_V2;
}
