/**
 * Module parameters (/sys/module/<mod>/parameters/<name>), by their
 * "module.name" spelling as on the kernel command line.
 */
export const PARAM_DEFAULTS = {
  /** vfio_main.c: read when a device registers (and live by CHECK_EXTENSION). */
  "vfio.enable_unsafe_noiommu_mode": false,
  /** vfio_iommu_type1.c */
  "vfio_iommu_type1.allow_unsafe_interrupts": false,
  "vfio_iommu_type1.dma_entry_limit": 65535,
  /** vfio_pci */
  "vfio_pci.nointxmask": false,
  "vfio_pci.disable_idle_d3": false,
  /** vfio_pci.c: off means sriov_configure refuses (ENOENT), so sriov_numvfs cannot change. */
  "vfio_pci.enable_sriov": false,
} as const;

export type ParamName = keyof typeof PARAM_DEFAULTS;
export type ParamValue = boolean | number;

export function isParamName(s: string): s is ParamName {
  return Object.hasOwn(PARAM_DEFAULTS, s);
}

/** Parse a value as the kernel's param_set_bool / param_set_uint would. */
export function parseParam(name: ParamName, value: ParamValue | string): ParamValue | undefined {
  const kind = typeof PARAM_DEFAULTS[name];
  if (kind === "boolean") {
    if (typeof value === "boolean") return value;
    if (typeof value === "number") return value !== 0;
    const v = value.trim();
    if (["1", "y", "Y", "on"].includes(v)) return true;
    if (["0", "n", "N", "off"].includes(v)) return false;
    return undefined;
  }
  const n =
    typeof value === "number" ? value : typeof value === "boolean" ? Number(value) : Number(value.trim());
  return Number.isInteger(n) && n >= 0 && n <= 0xffffffff ? n : undefined;
}
