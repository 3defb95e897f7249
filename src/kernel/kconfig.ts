/**
 * The kernel configuration the model was "built" with. Defaults are a
 * current distribution kernel's (DESIGN.md): iommufd, the VFIO group,
 * container and cdev paths, and noiommu for both paths are built; the
 * iommufd-provided container and the selftest hooks are not.
 *
 * Dependencies follow drivers/vfio/Kconfig and drivers/iommu/iommufd/Kconfig
 * (vfio-noiommu-ppc64.md §1.5 and Part 2): a symbol whose dependencies are
 * not met is off whatever was asked, as `make olddefconfig` would leave it.
 */
export const KCONFIG_DEFAULTS = {
  IOMMUFD: true,
  /** Selftest kernel: IOMMU_TEST_CMD and the mock driver's test hooks. */
  IOMMUFD_TEST: false,
  /** /dev/vfio/vfio served by iommufd (needs VFIO_GROUP && !VFIO_CONTAINER). */
  IOMMUFD_VFIO_CONTAINER: false,
  /** The software noiommu HWPT of the cdev series (selected by VFIO_NOIOMMU with cdev). */
  IOMMUFD_NOIOMMU: true,
  VFIO: true,
  VFIO_GROUP: true,
  VFIO_CONTAINER: true,
  VFIO_DEVICE_CDEV: true,
  VFIO_NOIOMMU: true,
  VFIO_IOMMU_TYPE1: true,
  VFIO_PCI: true,
  /** PPC64: the platform has sPAPR TCE (set for `iommu: "spapr"` machines). */
  SPAPR_TCE_IOMMU: false,
  VFIO_IOMMU_SPAPR_TCE: true,
  /**
   * The PPC64 RFC's change: VFIO_DEVICE_CDEV buildable with SPAPR_TCE_IOMMU
   * (upstream makes it depend on !SPAPR_TCE_IOMMU). On by default in the model.
   */
  SPAPR_TCE_IOMMUFD: true,
  /**
   * Architectures without native 64-bit atomics (32-bit ones). The software
   * noiommu page table needs them, so cdev noiommu is unavailable there
   * (series v7). Off for the x86-64 and ppc64 machines modelled.
   */
  GENERIC_ATOMIC64: false,
} as const;

export type KconfigSymbol = keyof typeof KCONFIG_DEFAULTS;
export type Kconfig = Record<KconfigSymbol, boolean>;

/** Spellings used by earlier revisions of the noiommu series. */
export const KCONFIG_ALIASES: Record<string, KconfigSymbol> = {
  VFIO_GROUP_NOIOMMU: "VFIO_NOIOMMU",
  VFIO_CDEV_NOIOMMU: "VFIO_NOIOMMU",
};

export function isKconfigSymbol(s: string): s is KconfigSymbol {
  return Object.hasOwn(KCONFIG_DEFAULTS, s);
}

/**
 * Resolve a partial configuration into a consistent one. Throws on an
 * unknown symbol (a configuration mistake of the caller, not a syscall).
 */
export function resolveKconfig(partial: Record<string, boolean | undefined>, spapr: boolean): Kconfig {
  const k: Kconfig = { ...KCONFIG_DEFAULTS };
  k.SPAPR_TCE_IOMMU = spapr;
  for (const [name, v] of Object.entries(partial)) {
    if (v === undefined) continue;
    const sym = isKconfigSymbol(name) ? name : KCONFIG_ALIASES[name];
    if (sym === undefined) throw new Error(`unknown Kconfig symbol ${name}`);
    if (sym === "SPAPR_TCE_IOMMU") throw new Error("SPAPR_TCE_IOMMU follows the machine's iommu kind");
    k[sym] = v;
  }
  if (!k.VFIO) {
    k.VFIO_GROUP = k.VFIO_CONTAINER = k.VFIO_DEVICE_CDEV = k.VFIO_NOIOMMU = k.VFIO_PCI = false;
    k.VFIO_IOMMU_TYPE1 = k.VFIO_IOMMU_SPAPR_TCE = false;
  }
  // VFIO selects VFIO_GROUP when iommufd is absent or on sPAPR (without the RFC).
  if (k.VFIO && (!k.IOMMUFD || (k.SPAPR_TCE_IOMMU && !k.SPAPR_TCE_IOMMUFD))) k.VFIO_GROUP = true;
  // VFIO_DEVICE_CDEV depends on IOMMUFD && !SPAPR_TCE_IOMMU (the RFC lifts the second).
  if (!k.IOMMUFD || (k.SPAPR_TCE_IOMMU && !k.SPAPR_TCE_IOMMUFD)) k.VFIO_DEVICE_CDEV = false;
  // Without the group path, VFIO selects the cdev.
  if (k.VFIO && !k.VFIO_GROUP && k.IOMMUFD) k.VFIO_DEVICE_CDEV = true;
  // VFIO_CONTAINER depends on VFIO_GROUP; VFIO selects it when IOMMUFD is off.
  if (!k.VFIO_GROUP) k.VFIO_CONTAINER = false;
  if (k.VFIO && !k.IOMMUFD) k.VFIO_CONTAINER = true;
  // IOMMUFD_VFIO_CONTAINER depends on VFIO_GROUP && !VFIO_CONTAINER.
  if (!k.IOMMUFD || !k.VFIO_GROUP || k.VFIO_CONTAINER) k.IOMMUFD_VFIO_CONTAINER = false;
  if (!k.IOMMUFD) k.IOMMUFD_TEST = false;
  if (!k.VFIO_CONTAINER || !k.SPAPR_TCE_IOMMU) k.VFIO_IOMMU_SPAPR_TCE = false;
  if (!k.VFIO_CONTAINER) k.VFIO_IOMMU_TYPE1 = false;
  // VFIO_CONTAINER selects TYPE1 only on X86 || S390 || ARM || ARM64: a PPC64 kernel has sPAPR TCE instead.
  if (spapr) k.VFIO_IOMMU_TYPE1 = false;
  // VFIO_NOIOMMU as agreed in the v5 7/9 review (Alex Williamson's shape):
  // depends on (GROUP || CDEV), on (!GROUP || a container), and on
  // (!CDEV || !GENERIC_ATOMIC64). A group path without a container gives
  // noiommu up entirely, even when the cdev is built (case 4 of the matrix).
  const container = k.VFIO_CONTAINER || k.IOMMUFD_VFIO_CONTAINER;
  if (
    !k.VFIO ||
    !(k.VFIO_GROUP || k.VFIO_DEVICE_CDEV) ||
    (k.VFIO_GROUP && !container) ||
    (k.VFIO_DEVICE_CDEV && k.GENERIC_ATOMIC64)
  ) {
    k.VFIO_NOIOMMU = false;
  }
  // IOMMUFD_NOIOMMU is hidden: selected by VFIO_NOIOMMU when the cdev is
  // built, never on by itself.
  k.IOMMUFD_NOIOMMU = k.IOMMUFD && k.VFIO_NOIOMMU && k.VFIO_DEVICE_CDEV;
  return k;
}
