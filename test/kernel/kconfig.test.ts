import { describe, expect, it } from "vitest";
import { KCONFIG_DEFAULTS, resolveKconfig } from "../../src/kernel/kconfig.js";
import { PARAM_DEFAULTS, parseParam } from "../../src/kernel/params.js";

describe("Kconfig", () => {
  it("defaults to a distribution kernel: group, container, cdev and noiommu built", () => {
    const k = resolveKconfig({}, false);
    expect(k.IOMMUFD).toBe(true);
    expect(k.VFIO_GROUP).toBe(true);
    expect(k.VFIO_CONTAINER).toBe(true);
    expect(k.VFIO_DEVICE_CDEV).toBe(true);
    expect(k.VFIO_NOIOMMU).toBe(true);
    expect(k.IOMMUFD_NOIOMMU).toBe(true);
    expect(k.IOMMUFD_VFIO_CONTAINER).toBe(false);
    expect(k.IOMMUFD_TEST).toBe(false);
  });

  it("IOMMUFD_VFIO_CONTAINER needs VFIO_GROUP && !VFIO_CONTAINER", () => {
    expect(resolveKconfig({ IOMMUFD_VFIO_CONTAINER: true }, false).IOMMUFD_VFIO_CONTAINER).toBe(false);
    const k = resolveKconfig({ IOMMUFD_VFIO_CONTAINER: true, VFIO_CONTAINER: false }, false);
    expect(k.IOMMUFD_VFIO_CONTAINER).toBe(true);
  });

  it("without IOMMUFD the cdev cannot be built and VFIO selects group and container", () => {
    const k = resolveKconfig({ IOMMUFD: false, VFIO_GROUP: false, VFIO_CONTAINER: false }, false);
    expect(k.VFIO_DEVICE_CDEV).toBe(false);
    expect(k.VFIO_GROUP).toBe(true);
    expect(k.VFIO_CONTAINER).toBe(true);
    expect(k.IOMMUFD_NOIOMMU).toBe(false);
  });

  it("without the group path VFIO selects the cdev and the container goes", () => {
    const k = resolveKconfig({ VFIO_GROUP: false, VFIO_DEVICE_CDEV: false }, false);
    expect(k.VFIO_DEVICE_CDEV).toBe(true);
    expect(k.VFIO_CONTAINER).toBe(false);
  });

  it("accepts the seed series' symbol spellings as aliases of VFIO_NOIOMMU", () => {
    expect(resolveKconfig({ VFIO_CDEV_NOIOMMU: false }, false).VFIO_NOIOMMU).toBe(false);
    expect(resolveKconfig({ VFIO_GROUP_NOIOMMU: false }, false).VFIO_NOIOMMU).toBe(false);
    expect(resolveKconfig({ VFIO_CDEV_NOIOMMU: false }, false).IOMMUFD_NOIOMMU).toBe(false);
  });

  it("sPAPR: cdev only with the RFC's change", () => {
    expect(resolveKconfig({}, true).VFIO_DEVICE_CDEV).toBe(true);
    expect(resolveKconfig({}, true).VFIO_IOMMU_SPAPR_TCE).toBe(true);
    expect(resolveKconfig({ SPAPR_TCE_IOMMUFD: false }, true).VFIO_DEVICE_CDEV).toBe(false);
    expect(resolveKconfig({}, false).VFIO_IOMMU_SPAPR_TCE).toBe(false);
  });

  it("rejects unknown symbols", () => {
    expect(() => resolveKconfig({ NOT_A_SYMBOL: true }, false)).toThrow(/unknown Kconfig symbol/);
    expect(Object.keys(KCONFIG_DEFAULTS)).toContain("VFIO_NOIOMMU");
  });
});

describe("module parameters", () => {
  it("parse like param_set_bool / param_set_uint", () => {
    expect(PARAM_DEFAULTS["vfio.enable_unsafe_noiommu_mode"]).toBe(false);
    expect(parseParam("vfio.enable_unsafe_noiommu_mode", "Y\n")).toBe(true);
    expect(parseParam("vfio.enable_unsafe_noiommu_mode", "0")).toBe(false);
    expect(parseParam("vfio.enable_unsafe_noiommu_mode", "maybe")).toBeUndefined();
    expect(parseParam("vfio_iommu_type1.dma_entry_limit", "100")).toBe(100);
    expect(parseParam("vfio_iommu_type1.dma_entry_limit", "-1")).toBeUndefined();
  });
});

describe("the noiommu Kconfig matrix of the v5 7/9 review", () => {
  // [case, VFIO_GROUP, container, VFIO_DEVICE_CDEV] → noiommu possible, cdev noiommu
  const cases: [number, boolean, boolean, boolean, boolean, boolean][] = [
    [1, true, true, false, true, false],
    [2, true, false, false, false, false],
    [3, true, true, true, true, true],
    [4, true, false, true, false, false], // deliberately given up
    [5, false, false, true, true, true],
  ];
  it.each(cases)(
    "case %i: group=%s container=%s cdev=%s",
    (_n, group, container, cdev, noiommu, cdevNoiommu) => {
      const k = resolveKconfig(
        { VFIO_GROUP: group, VFIO_CONTAINER: container, VFIO_DEVICE_CDEV: cdev },
        false,
      );
      expect(k.VFIO_GROUP).toBe(group);
      expect(k.VFIO_CONTAINER).toBe(container);
      expect(k.VFIO_DEVICE_CDEV).toBe(cdev);
      expect(k.VFIO_NOIOMMU).toBe(noiommu);
      expect(k.IOMMUFD_NOIOMMU).toBe(cdevNoiommu);
    },
  );

  it("case 3 holds with the iommufd-provided container too", () => {
    const k = resolveKconfig({ VFIO_CONTAINER: false, IOMMUFD_VFIO_CONTAINER: true }, false);
    expect(k.VFIO_NOIOMMU).toBe(true);
    expect(k.IOMMUFD_NOIOMMU).toBe(true);
  });

  it("case 6 (no group, no cdev) cannot be configured: VFIO selects the cdev", () => {
    const k = resolveKconfig({ VFIO_GROUP: false, VFIO_DEVICE_CDEV: false }, false);
    expect(k.VFIO_DEVICE_CDEV).toBe(true);
  });

  it("cdev noiommu is unavailable with GENERIC_ATOMIC64", () => {
    const k = resolveKconfig({ GENERIC_ATOMIC64: true, VFIO_GROUP: false }, false);
    expect(k.VFIO_NOIOMMU).toBe(false);
    expect(k.IOMMUFD_NOIOMMU).toBe(false);
  });

  it("IOMMUFD_NOIOMMU cannot be forced on by itself", () => {
    expect(resolveKconfig({ VFIO_NOIOMMU: false, IOMMUFD_NOIOMMU: true }, false).IOMMUFD_NOIOMMU).toBe(false);
  });
});
