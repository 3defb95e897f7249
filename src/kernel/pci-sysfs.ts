import { MemcpyPf } from "../hw/memcpy-pf.js";
import type { PciBus } from "../hw/pci-bus.js";
import type { PciFunction } from "../hw/pci-dev.js";
import type { Vfs } from "./vfs.js";

const IORESOURCE_MEM = 0x200;
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_MEM_64 = 0x100000;
const IORESOURCE_SIZEALIGN = 0x40000;
/** Lines in a function's `resource` file on x86 (BARs, ROM, IOV and bridge windows). */
const PCI_NUM_RESOURCES = 13;
/** The first IOV resource (after the six BARs and the ROM). */
const PCI_IOV_RESOURCES = 7;

const hex = (v: number, w: number) => `0x${v.toString(16).padStart(w, "0")}\n`;
const hex64 = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;

/**
 * The attributes pci-sysfs.c gives every PCI function, read from its
 * configuration space as the kernel does: vendor, device, subsystem ids,
 * class, resource (one "start end flags" line per resource), numa_node.
 * (The binary `config` file is served by whoever reads bytes: the bridge.)
 */
export function addPciSysfs(vfs: Vfs, bus: PciBus): void {
  for (const fn of bus.all()) addPciFunctionSysfs(vfs, fn);
}

/** The attributes of one function (at boot, or when a VF is added). */
export function addPciFunctionSysfs(vfs: Vfs, fn: PciFunction): void {
  const dir = `/sys/bus/pci/devices/${fn.bdf}`;
  for (const [name, read] of pciAttrs(fn)) vfs.add(`${dir}/${name}`, { type: "attr", read });
}

/** A function leaves (a VF removed): its attributes go. */
export function removePciFunctionSysfs(vfs: Vfs, fn: PciFunction): void {
  const dir = `/sys/bus/pci/devices/${fn.bdf}`;
  for (const [name] of pciAttrs(fn)) vfs.remove(`${dir}/${name}`);
}

function pciAttrs(fn: PciFunction): [string, () => string][] {
  return [
    // the PCI core's cached IDs: a VF's own ID registers read 0xffff
    ["vendor", () => hex(fn.pciVendor(), 4)],
    ["device", () => hex(fn.pciDevice(), 4)],
    ["subsystem_vendor", () => hex(fn.configRead(0x2c, 2), 4)],
    ["subsystem_device", () => hex(fn.configRead(0x2e, 2), 4)],
    ["class", () => hex(fn.configRead(0x08, 4) >>> 8, 6)],
    ["revision", () => hex(fn.configRead(0x08, 1), 2)],
    ["resource", () => resourceText(fn)],
    ["numa_node", () => "-1\n"],
    ["irq", () => "0\n"],
  ];
}

function resourceText(fn: PciFunction): string {
  let out = "";
  const iov = fn instanceof MemcpyPf ? fn.sriov : undefined;
  for (let i = 0; i < PCI_NUM_RESOURCES; i++) {
    // resources 7-12 are a PF's IOV resources: TotalVFs copies of each VF BAR
    if (iov !== undefined && i >= PCI_IOV_RESOURCES && i < PCI_IOV_RESOURCES + 6) {
      const size = BigInt(iov.vfBarSize(i - PCI_IOV_RESOURCES));
      if (size !== 0n) {
        const start = iov.vfBarBase(i - PCI_IOV_RESOURCES);
        const t = iov.vfBarFlags(i - PCI_IOV_RESOURCES);
        const flags = IORESOURCE_MEM | (t & 4 ? IORESOURCE_MEM_64 : 0) | (t & 8 ? IORESOURCE_PREFETCH : 0);
        out += `${hex64(start)} ${hex64(start + size * BigInt(iov.totalVfs()) - 1n)} ${hex64(BigInt(flags))}\n`;
        continue;
      }
    }
    const b = i < 6 ? fn.bars[i] : undefined;
    if (b === undefined) {
      out += `${hex64(0n)} ${hex64(0n)} ${hex64(0n)}\n`;
      continue;
    }
    const start = fn.barAddress(i);
    let flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN;
    if (b.is64) flags |= IORESOURCE_MEM_64;
    if (b.prefetch === true) flags |= IORESOURCE_PREFETCH;
    out += `${hex64(start)} ${hex64(start + BigInt(b.size) - 1n)} ${hex64(BigInt(flags))}\n`;
  }
  return out;
}
