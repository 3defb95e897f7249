import type { PhysMem } from "../hw/phys-mem.js";
import type { IommuDevice } from "../iommu/device.js";
import { IntelIommuDriver } from "../iommu/drivers/intel.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { Vfs } from "./vfs.js";

/** The intel-iommu debugfs directory (CONFIG_INTEL_IOMMU_DEBUGFS). */
export const INTEL_DEBUGFS = "/sys/kernel/debug/iommu/intel";

/**
 * /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct for every
 * function behind the model's VT-d unit, as drivers/iommu/intel/debugfs.c
 * writes it (the file the VFIO selftests read to check superpages).
 */
export function addIntelDebugfs(vfs: Vfs, iommu: IommuSubsystem, mem: PhysMem): void {
  for (const dev of iommu.devices.values()) addIntelDebugfsDevice(vfs, dev, mem);
}

/** One device's directory (at boot, or when a VF appears); nothing for a device not behind VT-d. */
export function addIntelDebugfsDevice(vfs: Vfs, dev: IommuDevice, mem: PhysMem): void {
  if (!(dev.driver instanceof IntelIommuDriver)) return;
  vfs.add(`${INTEL_DEBUGFS}/${dev.name}/domain_translation_struct`, {
    type: "attr",
    read: () => domainTranslationStruct(dev, mem),
  });
}

export function removeIntelDebugfsDevice(vfs: Vfs, name: string): void {
  vfs.remove(`${INTEL_DEBUGFS}/${name}/domain_translation_struct`);
}

/**
 * The device's current domain, walked in simulated memory from its root as
 * the kernel's pgtable_walk_level() walks it: a "Device … @0x<pgd>" line
 * (scalable mode, the unit has SMTS, so "with pasid 0": the RID's), the
 * column header, then one line per leaf in IOVA order. Each leaf line holds
 * the IOVA's 4 KiB frame number and the entries on the path to it: PML5E,
 * PML4E and PDPE always (0 where the table has fewer levels), then the PDE
 * only when it is non-zero, and the PTE only when both are. Nothing at all
 * when the device is not translated by a VT-d paging domain (blocked or
 * identity: the kernel finds no second-stage table and prints nothing).
 */
export function domainTranslationStruct(dev: IommuDevice, mem: PhysMem): string {
  const d = dev.domain;
  const pt = d.type === "paging" ? d.pt : undefined;
  if (pt === undefined || pt.format !== "vtdss") return "";
  const info = pt.info();
  const out: string[] = [
    `Device ${dev.name} with pasid 0 @0x${info.rootPhys.toString(16)}\n`,
    `${"IOVA_PFN".padEnd(17)}\t${"PML5E".padEnd(18)}\t${"PML4E".padEnd(18)}\t${"PDPE".padEnd(18)}\t${"PDE".padEnd(18)}\tPTE\n`,
  ];
  // path[level] as 16 hex digits, with the kernel's levels 1..5 (src/pt counts from 0)
  const path: string[] = ["", ZERO, ZERO, ZERO, ZERO, ZERO];
  const walk = (tablePfn: number, level: number, startPfn: number) => {
    const words = mem.peekU32(tablePfn);
    if (words === undefined) return; // never written: all entries empty
    const span = VTD_LEVEL_PAGES[level];
    for (let i = 0; i < 512; i++) {
      const lo = words[2 * i];
      const hi = words[2 * i + 1];
      if ((lo | hi) === 0) continue; // VT-d has no present bit: an empty entry is all zero
      path[level] = hex16(lo, hi);
      const pfn = startPfn + i * span;
      if (level === 1 || (lo & VTD_PS) !== 0) out.push(leafLine(pfn, path));
      else walk((hi & 0xfffff) * 2 ** 20 + (lo >>> 12), level - 1, pfn);
      path[level] = ZERO;
    }
  };
  walk(Number(info.rootPhys / 4096n), info.topLevel + 1, 0);
  return out.join("");
}

const ZERO = "0".repeat(16);
/** 4 KiB pages one entry spans at each kernel level (1: 4 KiB … 5: 256 TiB). */
const VTD_LEVEL_PAGES = [0, 1, 512, 512 ** 2, 512 ** 3, 512 ** 4];
/** Bit 7 (PS): a leaf above level 1 (2 MiB, 1 GiB superpage). */
const VTD_PS = 0x80;

function hex16(lo: number, hi: number): string {
  return (hi >>> 0).toString(16).padStart(8, "0") + (lo >>> 0).toString(16).padStart(8, "0");
}

function leafLine(iovaPfn: number, path: string[]): string {
  let line = `0x${iovaPfn.toString(16).padStart(13, "0")} |\t0x${path[5]}\t0x${path[4]}\t0x${path[3]}`;
  if (path[2] !== ZERO) {
    line += `\t0x${path[2]}`;
    if (path[1] !== ZERO) line += `\t0x${path[1]}`;
  }
  return `${line}\n`;
}
