import type { IommuDevice } from "../iommu/device.js";
import { IntelIommuDriver } from "../iommu/drivers/intel.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { Vfs } from "./vfs.js";

/** The intel-iommu debugfs directory (CONFIG_INTEL_IOMMU_DEBUGFS). */
export const INTEL_DEBUGFS = "/sys/kernel/debug/iommu/intel";

/** VT-d levels are 1 (4 KiB leaves) up to 5; src/pt counts from 0. */
const VTD_STRIDE = 9;

const hex16 = (v: bigint) => `0x${v.toString(16).padStart(16, "0")}`;

/**
 * /sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct for every
 * function behind the model's VT-d unit, as drivers/iommu/intel/debugfs.c
 * writes it (the file the VFIO selftests read to check superpages).
 */
export function addIntelDebugfs(vfs: Vfs, iommu: IommuSubsystem): void {
  for (const dev of iommu.devices.values()) {
    if (!(dev.driver instanceof IntelIommuDriver)) continue;
    vfs.add(`${INTEL_DEBUGFS}/${dev.name}/domain_translation_struct`, {
      type: "attr",
      read: () => domainTranslationStruct(dev),
    });
  }
}

/**
 * The device's current domain, read from its page-table bytes in simulated
 * memory: a "Device … @0x<pgd>" line (scalable mode, the unit has SMTS, so
 * "with pasid 0": the RID's), the column header, then one line per leaf in
 * IOVA order. Each leaf line holds the IOVA's 4 KiB frame number and the
 * entries on the path to it: PML5E, PML4E and PDPE always (0 where the
 * table has fewer levels), then the PDE only when it is non-zero, and the
 * PTE only when both are. Nothing at all when the device is not translated
 * by a paging domain (blocked or identity: the kernel finds no second-stage
 * table behind the PASID entry and prints nothing).
 */
export function domainTranslationStruct(dev: IommuDevice): string {
  const d = dev.domain;
  const pt = d.type === "paging" ? d.pt : undefined;
  if (pt?.dump === undefined) return "";
  const info = pt.info();
  const pgd = info.rootPhys;
  let out = `Device ${dev.name} with pasid 0 @0x${pgd.toString(16)}\n`;
  out += `${"IOVA_PFN".padEnd(17)}\t${"PML5E".padEnd(18)}\t${"PML4E".padEnd(18)}\t${"PDPE".padEnd(18)}\t${"PDE".padEnd(18)}\tPTE\n`;
  // path[level] with the kernel's levels 1..5; index[level] the entry's slot
  const path: bigint[] = [0n, 0n, 0n, 0n, 0n, 0n];
  const index: number[] = [0, 0, 0, 0, 0, 0];
  for (const e of pt.dump()) {
    const level = e.level + 1;
    path[level] = e.raw;
    index[level] = e.index;
    // a deeper walk ended: the levels below this entry are not on its path
    for (let l = level - 1; l >= 1; l--) path[l] = 0n;
    if (level > 1 && e.text.startsWith("TABLE")) continue;
    let iovaPfn = 0n;
    for (let l = info.topLevel + 1; l >= level; l--)
      iovaPfn |= BigInt(index[l]) << BigInt(VTD_STRIDE * (l - 1));
    out += `0x${iovaPfn.toString(16).padStart(13, "0")} |\t${hex16(path[5])}\t${hex16(path[4])}\t${hex16(path[3])}`;
    if (path[2] !== 0n) {
      out += `\t${hex16(path[2])}`;
      if (path[1] !== 0n) out += `\t${hex16(path[1])}`;
    }
    out += "\n";
  }
  return out;
}
