/**
 * Which selftest programs `npm run conformance` runs and on what machine
 * (docs/conformance.md): the iommufd selftests on the selftest's mock IOMMU,
 * the 7.2 VFIO selftests on the memcpy device at 0000:00:04.0 (the driver
 * test on the emulated Intel IOAT channel there), and the noiommu series'
 * selftest with no IOMMU.
 */

export const TREES = ["6.12", "7.2", "vfio", "noiommu"] as const;
export type Tree = (typeof TREES)[number];

export const PROGRAMS: Readonly<Record<Tree, readonly string[]>> = {
  "6.12": ["iommufd", "iommufd_fail_nth"],
  "7.2": ["iommufd", "iommufd_fail_nth"],
  vfio: [
    "vfio_iommufd_setup_test",
    "vfio_dma_mapping_test",
    "vfio_dma_mapping_mmio_test",
    "vfio_pci_device_test",
    "vfio_pci_device_init_perf_test",
    "vfio_pci_driver_test",
    "vfio_pci_sriov_uapi_test",
  ],
  noiommu: ["vfio_iommufd_noiommu_test"],
};

/** The device every VFIO program drives (VFIO_SELFTESTS_BDF). */
export const VFIO_BDF = "0000:00:04.0";
/** vfio_pci_device_init_perf_test opens these in parallel threads, one each (argv). */
export const PERF_BDFS = ["0000:00:04.0", "0000:00:05.0", "0000:00:06.0", "0000:00:07.0"];
/**
 * The device kind vfio_pci_driver_test runs on: a library driver must claim
 * it or the whole program skips. ioat.c claims the emulated IOAT channel
 * (8086:2021); the memcpy device is claimed by none.
 */
export const DRIVER_TEST_KIND = "ioat";
/** An IOAT (CBDMA) channel sits on Intel platforms, behind VT-d. */
export const DRIVER_TEST_IOMMU = "intel";

/**
 * The iommufd selftest's GET_PA revision: it asserts success with a length
 * of 0, which only v7 takes as "no limit" (scripts/selftests/noiommu/README.md).
 */
export const NOIOMMU_TEST_REVISION = "v7";

/** `iommufd-sim exec …` for one program; `path` is the binary. */
export function execArgs(tree: Tree, bin: string, path: string): string[] {
  switch (tree) {
    case "6.12":
    case "7.2":
      // issue 13: mock IOMMU, IOMMUFD_TEST, the 6.12 UAPI profile for 6.12
      return [
        "exec",
        "--iommu",
        "mock",
        "--kconfig",
        "IOMMUFD_TEST=y",
        ...(tree === "6.12" ? ["--kernel", "6.12"] : []),
        "--",
        path,
      ];
    case "vfio":
      if (bin === "vfio_dma_mapping_test") {
        // its superpage checks read the Intel debugfs page-table dump
        return ["exec", "--iommu", "intel", "--", path];
      }
      if (bin === "vfio_pci_driver_test") {
        return ["exec", "--iommu", DRIVER_TEST_IOMMU, "--pci", `${VFIO_BDF}=${DRIVER_TEST_KIND}`, "--", path];
      }
      if (bin === "vfio_pci_sriov_uapi_test") {
        // an SR-IOV PF whose VFs vfio-pci may create (the module parameter the test needs)
        return ["exec", "--pci", `${VFIO_BDF}=memcpy-pf`, "--param", "vfio_pci.enable_sriov=1", "--", path];
      }
      if (bin === "vfio_pci_device_init_perf_test") {
        return ["exec", ...PERF_BDFS.flatMap((b) => ["--pci", `${b}=memcpy`]), "--", path, ...PERF_BDFS];
      }
      return ["exec", "--", path];
    case "noiommu":
      return [
        "exec",
        "--iommu",
        "none",
        "--param",
        "vfio.enable_unsafe_noiommu_mode=1",
        "--noiommu-revision",
        NOIOMMU_TEST_REVISION,
        "--",
        path,
      ];
  }
}

/** Environment for one program: the VFIO programs find their device in VFIO_SELFTESTS_BDF. */
export function programEnv(tree: Tree, _bin: string): Record<string, string> {
  return tree === "vfio" || tree === "noiommu" ? { VFIO_SELFTESTS_BDF: VFIO_BDF } : {};
}
