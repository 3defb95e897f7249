import type { Machine } from "../index.js";
import { VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU } from "../uapi/vfio.js";

/**
 * The guided demos. Each is a scenario in examples/demo-<mode>.yaml (the
 * file users can copy) plus what the mode needs from the model: a demo
 * whose subsystem is not there yet says so instead of running.
 */
export interface DemoDef {
  mode: string;
  title: string;
  /** The parts of the model this demo needs that this build lacks (empty: it can run). */
  missing: (m: Machine) => string[];
  /** Closing lines, from what this build has (given a fresh machine to probe). */
  outro: (m: Machine) => string[];
}

export const DEMO_MODES = ["noiommu", "iommu", "ppc64", "vfio-group"] as const;

export function hasBindDriver(m: Machine): boolean {
  return typeof m.bindDriver === "function";
}

export function hasDevIommu(m: Machine): boolean {
  try {
    return m.listDir("/dev").includes("iommu");
  } catch {
    return false;
  }
}

/** Whether vfio-pci takes the machine's first PCI device (probed on a throwaway machine). */
function bindsOn(m: Machine): boolean {
  const bdf = m.pciConfig[0]?.bdf;
  return bdf !== undefined && m.bindDriver(bdf, "vfio-pci") >= 0;
}

/** Whether /dev/vfio/vfio offers the sPAPR TCE v2 backend: asked as user space would. */
function hasSpaprContainer(m: Machine): boolean {
  const p = m.spawn();
  try {
    const fd = p.open("/dev/vfio/vfio");
    return fd >= 0 && p.ioctl(fd, VFIO_CHECK_EXTENSION, BigInt(VFIO_SPAPR_TCE_v2_IOMMU)) === 1;
  } finally {
    p.exit();
  }
}

function parts(m: Machine): { name: string; present: boolean }[] {
  return [
    { name: "/dev/iommu (iommufd)", present: hasDevIommu(m) },
    { name: "vfio-pci binding and /dev/vfio nodes (m.bindDriver)", present: hasBindDriver(m) },
  ];
}

/** The noiommu path as far as this build has it (probed on a fresh noiommu machine). */
function noiommuParts(m: Machine): { name: string; present: boolean }[] {
  return [
    { name: "/dev/iommu (iommufd)", present: hasDevIommu(m) },
    { name: "vfio-pci taking a device that has no IOMMU (noiommu)", present: bindsOn(m) },
  ];
}

export const DEMOS: Record<(typeof DEMO_MODES)[number], DemoDef> = {
  noiommu: {
    mode: "noiommu",
    title: "A machine without an IOMMU, as a noiommu userspace driver sees it",
    missing: () => [],
    outro: (m) => {
      const lines = ["What this build models of the noiommu path:"];
      for (const p of noiommuParts(m))
        lines.push(`  ${p.present ? "[x]" : "[ ]"} ${p.name}${p.present ? "" : " -- coming"}`);
      lines.push(
        "  [ ] the noiommu device cdev walk-through (bind, IOAS map, IOMMU_IOAS_NOIOMMU_GET_PA, a DMA",
        "      to the physical address) -- this demo grows into it when the noiommu series lands",
      );
      return lines;
    },
  },
  iommu: {
    mode: "iommu",
    title: "iommufd with a VFIO device cdev: IOAS, map, attach, a DMA through the IOMMU",
    missing: (m) =>
      parts(m)
        .filter((p) => !p.present)
        .map((p) => p.name),
    outro: () => ["Every DMA above was translated by walking the page table bytes in simulated memory."],
  },
  ppc64: {
    mode: "ppc64",
    title: "PPC64 sPAPR TCE: the VFIO container and its DMA windows",
    missing: (m) => {
      if (!hasBindDriver(m)) return ["vfio-pci binding and /dev/vfio nodes (m.bindDriver)"];
      if (!bindsOn(m)) return ["vfio-pci on an sPAPR machine (binding the device is refused today)"];
      return hasSpaprContainer(m)
        ? []
        : ["the sPAPR TCE v2 container (VFIO_CHECK_EXTENSION(VFIO_SPAPR_TCE_v2_IOMMU) is 0 today)"];
    },
    outro: () => [
      "The default 32-bit window and a dynamic 64-bit window are both TCE tables in simulated memory.",
    ],
  },
  "vfio-group": {
    mode: "vfio-group",
    title: "The legacy VFIO path: group, type1 container, MAP_DMA",
    missing: (m) => (hasBindDriver(m) ? [] : ["vfio-pci binding and /dev/vfio nodes (m.bindDriver)"]),
    outro: () => [
      "The same device is also reachable through /dev/vfio/devices/vfioN (the cdev); not both at once.",
    ],
  },
};
