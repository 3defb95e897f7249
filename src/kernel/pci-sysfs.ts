import type { PciBus } from "../hw/pci-bus.js";
import type { PciFunction } from "../hw/pci-dev.js";
import type { Vfs } from "./vfs.js";

const IORESOURCE_MEM = 0x200;
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_MEM_64 = 0x100000;
const IORESOURCE_SIZEALIGN = 0x40000;
/** Lines in a function's `resource` file on x86 (BARs, ROM, IOV and bridge windows). */
const PCI_NUM_RESOURCES = 13;

const hex = (v: number, w: number) => `0x${v.toString(16).padStart(w, "0")}\n`;
const hex64 = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;

/**
 * The attributes pci-sysfs.c gives every PCI function, read from its
 * configuration space as the kernel does: vendor, device, subsystem ids,
 * class, resource (one "start end flags" line per resource), numa_node.
 * (The binary `config` file is served by whoever reads bytes: the bridge.)
 */
export function addPciSysfs(vfs: Vfs, bus: PciBus): void {
  for (const fn of bus.all()) {
    const dir = `/sys/bus/pci/devices/${fn.bdf}`;
    const attr = (name: string, read: () => string) => vfs.add(`${dir}/${name}`, { type: "attr", read });
    attr("vendor", () => hex(fn.configRead(0x00, 2), 4));
    attr("device", () => hex(fn.configRead(0x02, 2), 4));
    attr("subsystem_vendor", () => hex(fn.configRead(0x2c, 2), 4));
    attr("subsystem_device", () => hex(fn.configRead(0x2e, 2), 4));
    attr("class", () => hex(fn.configRead(0x08, 4) >>> 8, 6));
    attr("revision", () => hex(fn.configRead(0x08, 1), 2));
    attr("resource", () => resourceText(fn));
    attr("numa_node", () => "-1\n");
    attr("irq", () => "0\n");
  }
}

function resourceText(fn: PciFunction): string {
  let out = "";
  for (let i = 0; i < PCI_NUM_RESOURCES; i++) {
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
