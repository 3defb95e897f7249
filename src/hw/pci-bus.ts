import type { DmaLog } from "./dma-log.js";
import { DmaSanitizer } from "./dma-sanitizer.js";
import { IoatDevice } from "./ioat-dev.js";
import { MemcpyDevice } from "./memcpy-dev.js";
import { MemcpyPf, type MemcpyVf } from "./memcpy-pf.js";
import type { PciFunction } from "./pci-dev.js";
import { PCI_COMMAND, PCI_COMMAND_MEMORY } from "./pci-regs.js";
import type { PhysMem } from "./phys-mem.js";

/**
 * The device kinds a machine can have: the model's memcpy device, the
 * memcpy device as an SR-IOV PF (its VFs come and go through
 * sriov_numvfs), and an Intel IOAT (CBDMA) channel.
 */
export const PCI_DEVICE_KINDS = ["memcpy", "memcpy-pf", "ioat"] as const;
export type PciDeviceKind = (typeof PCI_DEVICE_KINDS)[number];

export interface PciSlotConfig {
  bdf: string;
  kind: PciDeviceKind;
}

/** Where firmware places BARs: the 32-bit MMIO window below the MSI doorbell. */
export const PCI_MMIO_BASE = 0xfe000000n;
const PCI_MMIO_LIMIT = 0xfee00000n;

const BDF_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/;

export function isBdf(s: string): boolean {
  return BDF_RE.test(s);
}

/**
 * The machine's PCI bus: the functions by BDF, BAR assignment as firmware
 * does it at boot (memory decode on, bus mastering off), and the DMA
 * sanitizer every function's DMA engine reports to.
 */
export class PciBus {
  readonly sanitizer = new DmaSanitizer();
  private readonly fns = new Map<string, PciFunction>();
  private nextMmio = PCI_MMIO_BASE;

  constructor(
    private readonly phys: PhysMem,
    private readonly dmaLog: DmaLog,
  ) {}

  add(cfg: PciSlotConfig): PciFunction {
    if (!isBdf(cfg.bdf)) throw new Error(`bad PCI address ${cfg.bdf} (want dddd:bb:dd.f, lower-case hex)`);
    if (this.fns.has(cfg.bdf)) throw new Error(`duplicate PCI device ${cfg.bdf}`);
    const env = { phys: this.phys, dmaLog: this.dmaLog, sanitizer: this.sanitizer };
    let fn: PciFunction;
    switch (cfg.kind) {
      case "memcpy":
        fn = new MemcpyDevice(cfg.bdf, env);
        break;
      case "memcpy-pf":
        fn = new MemcpyPf(cfg.bdf, env);
        break;
      case "ioat":
        fn = new IoatDevice(cfg.bdf, env);
        break;
      default:
        throw new Error(`unknown PCI device kind ${String(cfg.kind)}`);
    }
    for (let i = 0; i < 6; i++) {
      const size = fn.barSize(i);
      if (size === 0) continue;
      fn.assignBar(i, this.allocMmio(BigInt(size), BigInt(size)));
    }
    if (fn instanceof MemcpyPf) {
      // the IOV resources: room for TotalVFs copies of each VF BAR, aligned to one VF BAR's size
      const iov = fn.sriov;
      for (let i = 0; i < 6; i++) {
        const size = BigInt(iov.vfBarSize(i));
        if (size !== 0n) iov.assignVfBar(i, this.allocMmio(size * BigInt(iov.totalVfs()), size));
      }
      for (let v = 0; v < iov.totalVfs(); v++) {
        const vf = fn.vfBdf(v);
        if (vf !== undefined && this.fns.has(vf))
          throw new Error(`${cfg.bdf}: VF ${v} would be ${vf}, where a device already is`);
      }
    }
    for (const other of this.fns.values()) {
      if (!(other instanceof MemcpyPf)) continue;
      for (let v = 0; v < other.sriov.totalVfs(); v++)
        if (other.vfBdf(v) === cfg.bdf)
          throw new Error(`${cfg.bdf} is where ${other.bdf}'s VF ${v} would be`);
    }
    fn.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    this.fns.set(cfg.bdf, fn);
    return fn;
  }

  /**
   * A VF appears (pci_iov_add_virtfn): the PF has VF Enable set; the VF's
   * BARs are the PF's VF BARs, nothing to assign.
   */
  addVf(pf: MemcpyPf, index: number): MemcpyVf {
    const env = { phys: this.phys, dmaLog: this.dmaLog, sanitizer: this.sanitizer };
    const vf = pf.createVf(index, env);
    if (this.fns.has(vf.bdf)) throw new Error(`duplicate PCI device ${vf.bdf}`);
    this.fns.set(vf.bdf, vf);
    return vf;
  }

  /** A function leaves the bus (pci_stop_and_remove_bus_device of a VF). */
  remove(bdf: string): void {
    this.fns.delete(bdf);
  }

  private allocMmio(size: bigint, align: bigint): bigint {
    const addr = (this.nextMmio + align - 1n) & ~(align - 1n);
    if (addr + size > PCI_MMIO_LIMIT) throw new Error("PCI MMIO window exhausted");
    this.nextMmio = addr + size;
    return addr;
  }

  get(bdf: string): PciFunction | undefined {
    return this.fns.get(bdf);
  }

  all(): PciFunction[] {
    return [...this.fns.values()];
  }
}
