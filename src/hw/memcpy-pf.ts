import { MemcpyDevice } from "./memcpy-dev.js";
import type { BarDef } from "./pci-config.js";
import type { PciFunction } from "./pci-dev.js";
import type { DmaEnv } from "./pci-dma.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_VENDOR_ID,
} from "./pci-regs.js";
import { bdfToRid, ridToBdf, SriovCap, vfRoutingId } from "./pci-sriov.js";

/** The VF Device ID of the memcpy PF's Virtual Functions. */
export const MEMCPY_VF_DEVICE_ID = 0x0002;
/** TotalVFs of the memcpy PF. */
export const MEMCPY_PF_TOTAL_VFS = 4;
/**
 * First VF Offset and VF Stride: a PF at 00:04.0 (routing ID 0x20) has
 * its VFs at 00:10.0, 00:10.1, ... (away from the slots boot devices use).
 */
export const MEMCPY_PF_VF_OFFSET = 0x60;
export const MEMCPY_PF_VF_STRIDE = 1;

/**
 * The memcpy device as an SR-IOV Physical Function (`--pci BDF=memcpy-pf`):
 * the same engine, plus an SR-IOV extended capability at 0x100 whose VFs
 * are memcpy engines of their own (MemcpyVf), each VF BAR the size of the
 * PF's matching BAR. Its VFs appear when software sets VF Enable with
 * NumVFs (the kernel's sriov_numvfs does); the bus adds them.
 */
export class MemcpyPf extends MemcpyDevice {
  readonly sriov: SriovCap;

  constructor(bdf: string, env: DmaEnv) {
    super(bdf, env);
    this.sriov = new SriovCap(
      this.config,
      {
        totalVfs: MEMCPY_PF_TOTAL_VFS,
        offset: MEMCPY_PF_VF_OFFSET,
        stride: MEMCPY_PF_VF_STRIDE,
        vfDeviceId: MEMCPY_VF_DEVICE_ID,
        vfBars: this.barLayout(),
      },
      bdfToRid(bdf).rid & 0xff,
    );
    this.config.sealPowerOn();
  }

  /** The BDF of VF `index` (undefined past bus 0xff). */
  vfBdf(index: number): string | undefined {
    const { domain, rid } = bdfToRid(this.bdf);
    const l = this.sriov.layout;
    const vf = vfRoutingId(rid, l.offset, l.stride, index);
    return vf > 0xffff ? undefined : ridToBdf(domain, vf);
  }

  /** A Virtual Function of this PF (the bus adds it while VF Enable is set). */
  createVf(index: number, env: DmaEnv): MemcpyVf {
    const bdf = this.vfBdf(index);
    if (bdf === undefined) throw new Error(`VF ${index} of ${this.bdf} is past bus 0xff`);
    return new MemcpyVf(bdf, env, this, index);
  }

  /**
   * pci_reset_function(): FLR clears the SR-IOV capability (VF Enable off)
   * like the rest; the PCI core restores it with the header afterwards
   * (pci_restore_iov_state), so VFs the kernel enabled stay enabled.
   */
  override resetFunction(): void {
    const saved = this.sriov.save();
    super.resetFunction();
    this.sriov.restore(saved);
  }

  /** The PF's BARs in defineBars order (an empty slot stays empty): each VF gets one of each. */
  private barLayout(): (BarDef | undefined)[] {
    const out: (BarDef | undefined)[] = [];
    for (let slot = 0; slot < 6; ) {
      const b = this.bars[slot];
      out.push(b);
      slot += b?.is64 ? 2 : 1;
    }
    return out;
  }
}

/**
 * A Virtual Function of a MemcpyPf: a memcpy engine with its own config
 * space, MSI/MSI-X and DMA (through its own IOMMU context), as SR-IOV
 * defines a VF: Vendor and Device ID read 0xffff, the BAR registers read 0
 * (the VF's BARs are carved from the PF's VF BARs), and the command
 * register has no Memory Space bit (the PF's VF MSE decides).
 */
export class MemcpyVf extends MemcpyDevice {
  constructor(
    bdf: string,
    env: DmaEnv,
    readonly pf: MemcpyPf,
    readonly vfIndex: number,
  ) {
    super(bdf, env);
    const cfg = this.config;
    cfg.setRo(PCI_VENDOR_ID, 2, 0xffff);
    cfg.setRo(PCI_DEVICE_ID, 2, 0xffff);
    cfg.setRo(PCI_BASE_ADDRESS_0, 24, 0);
    cfg.setWmask(PCI_BASE_ADDRESS_0, 24, 0);
    cfg.wmask[PCI_COMMAND] &= ~PCI_COMMAND_MEMORY;
    cfg.bytes[PCI_COMMAND] &= ~PCI_COMMAND_MEMORY;
    cfg.sealPowerOn();
  }

  override get physfn(): PciFunction {
    return this.pf;
  }

  override pciVendor(): number {
    return this.pf.pciVendor();
  }

  override pciDevice(): number {
    return this.pf.sriov.layout.vfDeviceId;
  }

  override barFlags(i: number): number {
    return this.pf.sriov.vfBarFlags(i);
  }

  override barAddress(i: number): bigint {
    return this.pf.sriov.vfBarAddress(i, this.vfIndex);
  }

  override assignBar(i: number, _addr: bigint): void {
    throw new Error(`VF ${this.bdf}: BAR ${i} is assigned through the PF's VF BARs`);
  }

  override memoryDecode(): boolean {
    return this.pf.sriov.vfEnabled() && this.pf.sriov.vfMemoryEnabled();
  }
}
