import { defineStruct, fld } from "../uapi/struct.js";

/*
 * The model's own uapi for sPAPR TCE under iommufd. Upstream has none yet:
 * the PPC64 RFC hard-codes one 1 GiB window, and Jason Gunthorpe's review
 * asks for window attributes as driver data at IOMMU_HWPT_ALLOC and for
 * IOMMU_GET_HW_INFO to report what the platform supports. These layouts
 * and type values are this model's extension (docs/ppc64.md), chosen far
 * from upstream's small enum values so they can never be mistaken for one.
 */

/** enum iommu_hw_info_type value of struct iommu_hw_info_spapr_tce (model extension). */
export const IOMMU_HW_INFO_TYPE_SPAPR_TCE = 0x5350;
/** enum iommu_hwpt_data_type value of struct iommu_hwpt_spapr_tce (model extension). */
export const IOMMU_HWPT_DATA_SPAPR_TCE = 0x5350;

/** iommu_hw_info_spapr_tce.flags: the platform can add a 64-bit dynamic window. */
export const IOMMU_HW_INFO_SPAPR_TCE_DDW = 1;

/**
 * struct iommu_hw_info_spapr_tce (48 bytes): what VFIO_IOMMU_SPAPR_TCE_GET_INFO
 * reports for a v2 container, plus where each window slot starts.
 */
export const iommu_hw_info_spapr_tce = defineStruct({
  name: "iommu_hw_info_spapr_tce",
  size: 48,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: { DDW: 1n } }),
    fld("max_dynamic_windows_supported", 4, 4, "out"),
    fld("pgsizes", 8, 8, "out", { fmt: "hex" }),
    fld("max_levels", 16, 4, "out"),
    fld("__reserved", 20, 4, "out", { kind: "reserved" }),
    fld("dma32_window_start", 24, 8, "out", { fmt: "hex" }),
    fld("dma32_window_size", 32, 8, "out", { fmt: "hex" }),
    fld("dma64_window_start", 40, 8, "out", { fmt: "hex" }),
  ],
});

/** Window slots a table_group has (IOMMU_TABLE_GROUP_MAX_TABLES). */
export const SPAPR_MAX_WINDOWS = 2;
/** Bytes of one struct iommu_hwpt_spapr_tce_window. */
export const SPAPR_WINDOW_DESC_SIZE = 32;

/**
 * struct iommu_hwpt_spapr_tce (72 bytes), IOMMU_HWPT_ALLOC driver data:
 * num_windows descriptors of
 *   struct iommu_hwpt_spapr_tce_window { __aligned_u64 start_addr;
 *     __aligned_u64 window_size; __u32 page_shift; __u32 levels;
 *     __u32 flags; __u32 __reserved; }
 * start_addr names the slot: dma32_window_start or dma64_window_start of
 * GET_HW_INFO (the platform chooses bus addresses; the user only picks).
 */
export const iommu_hwpt_spapr_tce = defineStruct({
  name: "iommu_hwpt_spapr_tce",
  size: 8 + SPAPR_MAX_WINDOWS * SPAPR_WINDOW_DESC_SIZE,
  fields: [
    fld("num_windows", 0, 4, "in"),
    fld("__reserved", 4, 4, "in", { kind: "reserved" }),
    ...[0, 1].flatMap((i) => {
      const o = 8 + i * SPAPR_WINDOW_DESC_SIZE;
      const p = `windows[${i}].`;
      return [
        fld(`${p}start_addr`, o, 8, "in", { fmt: "hex" }),
        fld(`${p}window_size`, o + 8, 8, "in", { fmt: "hex" }),
        fld(`${p}page_shift`, o + 16, 4, "in"),
        fld(`${p}levels`, o + 20, 4, "in"),
        fld(`${p}flags`, o + 24, 4, "in", { kind: "flags", flags: {} }),
        fld(`${p}__reserved`, o + 28, 4, "in", { kind: "reserved" }),
      ];
    }),
  ],
});

/** One window as a driver (or a test) describes it. */
export interface SpaprWindowSpec {
  startAddr: bigint;
  windowSize: bigint;
  pageShift: number;
  levels: number;
}
