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
  /** Closing lines, from what this build has (given a fresh machine to probe, and the machine the run used). */
  outro: (m: Machine, run?: Machine) => string[];
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

/** What the DMA sanitizer said during the run, one line per finding. */
function findings(run: Machine | undefined): string[] {
  if (run === undefined) return [];
  return run.debug
    .dmaLog()
    .filter((e) => e.finding !== undefined)
    .map(
      (e) =>
        `  ${e.device} DMA ${e.op} at 0x${e.addr.toString(16)} (${e.len} bytes, ${e.result}): ${e.finding}`,
    );
}

export const DEMOS: Record<(typeof DEMO_MODES)[number], DemoDef> = {
  noiommu: {
    mode: "noiommu",
    title: "A userspace driver with no IOMMU: the noiommu device cdev, GET_PA, DMA by physical address",
    missing: (m) => {
      const out: string[] = [];
      if (!hasDevIommu(m)) out.push("/dev/iommu (iommufd)");
      if (!bindsOn(m)) out.push("vfio-pci taking a device that has no IOMMU (noiommu)");
      return out;
    },
    outro: (_m, run) => {
      const lines = ["What the DMA sanitizer saw (m.debug.dmaLog()):", ...findings(run)];
      if (lines.length === 1) lines.push("  nothing");
      lines.push(
        "",
        "Nothing translated those addresses: a noiommu device reaches physical memory directly, so only",
        "the pins taken by IOAS_MAP keep its buffers in place, and a PA kept past IOAS_UNMAP points at",
        "memory the kernel may already have given to someone else. See docs/noiommu.md.",
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
