import type { BarDef, PciConfig } from "./pci-config.js";
import {
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_EXT_CAP_ID_SRIOV,
  PCI_EXT_CAP_SRIOV_SIZEOF,
  PCI_SRIOV_BAR,
  PCI_SRIOV_CAP,
  PCI_SRIOV_CTRL,
  PCI_SRIOV_CTRL_ARI,
  PCI_SRIOV_CTRL_MSE,
  PCI_SRIOV_CTRL_VFE,
  PCI_SRIOV_FUNC_LINK,
  PCI_SRIOV_INITIAL_VF,
  PCI_SRIOV_NUM_BARS,
  PCI_SRIOV_NUM_VF,
  PCI_SRIOV_SUP_PGSIZE,
  PCI_SRIOV_SYS_PGSIZE,
  PCI_SRIOV_TOTAL_VF,
  PCI_SRIOV_VF_DID,
  PCI_SRIOV_VF_OFFSET,
  PCI_SRIOV_VF_STRIDE,
} from "./pci-regs.js";

/** What a PF's silicon says about its Virtual Functions. */
export interface SriovLayout {
  /** TotalVFs (and InitialVFs: no VF Migration). */
  totalVfs: number;
  /** First VF Offset and VF Stride, in routing IDs from the PF's. */
  offset: number;
  stride: number;
  /** The VF Device ID (VFs read 0xffff in their own ID registers). */
  vfDeviceId: number;
  /** The VF BARs: each VF gets one of each, at VF BAR base + index * size. */
  vfBars: readonly (BarDef | undefined)[];
}

/** System page sizes the function supports: 4K, 8K, 64K, 256K, 1M and 4M, as most parts offer. */
const SUP_PGSIZE = 0x553;

/**
 * The Single Root I/O Virtualization extended capability of a PF as its
 * hardware decodes it (PCIe base spec 9.3.3; include/uapi/linux/pci_regs.h
 * offsets): VF Enable and VF MSE in SR-IOV Control, NumVFs, the read-only
 * TotalVFs / offset / stride / VF Device ID, the system page size, and six
 * VF BAR registers sized like ordinary BARs (writing all ones reads back
 * the size of one VF's BAR). No VF Migration.
 */
export class SriovCap {
  readonly pos: number;

  constructor(
    private readonly cfg: PciConfig,
    readonly layout: SriovLayout,
    /** The PF's own function number, for Function Dependency Link. */
    funcLink: number,
    pos = 0x100,
  ) {
    const { totalVfs, offset, stride, vfDeviceId } = layout;
    if (totalVfs < 1 || totalVfs > 0xffff) throw new Error(`TotalVFs ${totalVfs}`);
    if (offset === 0 || (totalVfs > 1 && stride === 0))
      throw new Error("SR-IOV needs a First VF Offset and a stride");
    this.pos = cfg.addExtCap(PCI_EXT_CAP_ID_SRIOV, 1, pos);
    cfg.setRo(pos + PCI_SRIOV_CAP, 4, 0);
    cfg.setWmask(pos + PCI_SRIOV_CTRL, 2, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE | PCI_SRIOV_CTRL_ARI);
    cfg.setRo(pos + PCI_SRIOV_INITIAL_VF, 2, totalVfs);
    cfg.setRo(pos + PCI_SRIOV_TOTAL_VF, 2, totalVfs);
    cfg.setWmask(pos + PCI_SRIOV_NUM_VF, 2, 0xffff);
    cfg.setRo(pos + PCI_SRIOV_FUNC_LINK, 1, funcLink);
    cfg.setRo(pos + PCI_SRIOV_VF_OFFSET, 2, offset);
    cfg.setRo(pos + PCI_SRIOV_VF_STRIDE, 2, stride);
    cfg.setRo(pos + PCI_SRIOV_VF_DID, 2, vfDeviceId);
    cfg.setRo(pos + PCI_SRIOV_SUP_PGSIZE, 4, SUP_PGSIZE);
    cfg.setRo(pos + PCI_SRIOV_SYS_PGSIZE, 4, 1);
    cfg.setWmask(pos + PCI_SRIOV_SYS_PGSIZE, 4, SUP_PGSIZE);
    let slot = 0;
    for (const bar of layout.vfBars) {
      if (slot >= PCI_SRIOV_NUM_BARS) throw new Error("too many VF BARs");
      const off = pos + PCI_SRIOV_BAR + 4 * slot;
      if (bar === undefined) {
        slot++;
        continue;
      }
      if (bar.size < 4096 || (bar.size & (bar.size - 1)) !== 0) throw new Error(`VF BAR size ${bar.size}`);
      const flags =
        (bar.is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetch ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
      cfg.setRo(off, 4, flags);
      cfg.setWmask(off, 4, (~(bar.size - 1) & 0xfffffff0) >>> 0);
      if (bar.is64) cfg.setWmask(off + 4, 4, 0xffffffff);
      slot += bar.is64 ? 2 : 1;
    }
    if (pos + PCI_EXT_CAP_SRIOV_SIZEOF > cfg.size) throw new Error("SR-IOV capability past config space");
  }

  totalVfs(): number {
    return this.cfg.read(this.pos + PCI_SRIOV_TOTAL_VF, 2);
  }

  numVfs(): number {
    return this.cfg.read(this.pos + PCI_SRIOV_NUM_VF, 2);
  }

  ctrl(): number {
    return this.cfg.read(this.pos + PCI_SRIOV_CTRL, 2);
  }

  /** VF Enable: the VFs exist on the bus. */
  vfEnabled(): boolean {
    return (this.ctrl() & PCI_SRIOV_CTRL_VFE) !== 0;
  }

  /** VF MSE: the VFs decode their memory BARs (a VF's own command register has no memory bit). */
  vfMemoryEnabled(): boolean {
    return (this.ctrl() & PCI_SRIOV_CTRL_MSE) !== 0;
  }

  /** The size of one VF's BAR `i` (0 when there is none). */
  vfBarSize(i: number): number {
    return this.barDef(i)?.size ?? 0;
  }

  /** The type bits of VF BAR `i`. */
  vfBarFlags(i: number): number {
    return this.cfg.read(this.pos + PCI_SRIOV_BAR + 4 * i, 4) & 0xf;
  }

  /** The programmed base of VF BAR `i` (VF 0's BAR). */
  vfBarBase(i: number): bigint {
    const off = this.pos + PCI_SRIOV_BAR + 4 * i;
    const lo = BigInt((this.cfg.read(off, 4) & 0xfffffff0) >>> 0);
    const hi = this.barDef(i)?.is64 ? BigInt(this.cfg.read(off + 4, 4)) : 0n;
    return (hi << 32n) | lo;
  }

  /** Where VF `index`'s BAR `i` sits: VF BAR base + index * the VF BAR size. */
  vfBarAddress(i: number, index: number): bigint {
    const size = this.vfBarSize(i);
    return size === 0 ? 0n : this.vfBarBase(i) + BigInt(size) * BigInt(index);
  }

  /** Program VF BAR `i`'s base (the PCI core's resource assignment for the IOV resources). */
  assignVfBar(i: number, addr: bigint): void {
    const off = this.pos + PCI_SRIOV_BAR + 4 * i;
    this.cfg.write(off, 4, Number(addr & 0xffffffffn));
    if (this.barDef(i)?.is64) this.cfg.write(off + 4, 4, Number(addr >> 32n));
  }

  /** The bytes of the capability (saved and restored around a function reset, as pci_restore_iov_state does). */
  save(): Uint8Array {
    return this.cfg.bytes.slice(this.pos, this.pos + PCI_EXT_CAP_SRIOV_SIZEOF);
  }

  restore(saved: Uint8Array): void {
    this.cfg.bytes.set(saved, this.pos);
  }

  private barDef(i: number): BarDef | undefined {
    let slot = 0;
    for (const b of this.layout.vfBars) {
      if (slot === i) return b;
      slot += b?.is64 ? 2 : 1;
      if (slot > i) return undefined;
    }
    return undefined;
  }
}

/**
 * The routing ID (bus << 8 | devfn) of VF `index` of the PF at `pfRid`
 * (the kernel's pci_iov_virtfn_bus/devfn): PF RID + First VF Offset +
 * index * VF Stride.
 */
export function vfRoutingId(pfRid: number, offset: number, stride: number, index: number): number {
  return pfRid + offset + stride * index;
}

/** "dddd:bb:dd.f" and a routing ID, both ways. */
export function bdfToRid(bdf: string): { domain: number; rid: number } {
  const [dom, bus, df] = bdf.split(":");
  const [dev, fn] = df.split(".");
  return {
    domain: parseInt(dom, 16),
    rid: (parseInt(bus, 16) << 8) | (parseInt(dev, 16) << 3) | parseInt(fn, 16),
  };
}

export function ridToBdf(domain: number, rid: number): string {
  const h = (v: number, w: number) => v.toString(16).padStart(w, "0");
  return `${h(domain, 4)}:${h(rid >> 8, 2)}:${h((rid >> 3) & 0x1f, 2)}.${rid & 7}`;
}
