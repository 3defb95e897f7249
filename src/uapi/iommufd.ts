// /dev/iommu user API: include/uapi/linux/iommufd.h (torvalds/linux b4d90dbc,
// 6.17+ era), plus the proposed noiommu GET_PA command (uapi.md §5-6) and a
// few constants from later mainline headers (marked where they appear).
//
// Each command is one row: request number, struct table, the last mandatory
// field (min_size = offsetofend of it, as drivers/iommu/iommufd/main.c's
// IOCTL_OP table), the profiles that have it, and what the handler copies back.

import { _IO, _IOC_NR } from "./ioc.js";
import {
  KERNEL_PROFILES,
  type KernelProfile,
  profileHas,
  profilesSince,
  type Since,
  structForProfile,
} from "./profiles.js";
import { defineStruct, type FieldName, fld, offsetOfEnd, type StructDef } from "./struct.js";

export const IOMMUFD_TYPE = 0x3b; // ';'

// --- command numbers -------------------------------------------------------

export const IOMMUFD_CMD_BASE = 0x80;
export const IOMMUFD_CMD_DESTROY = 0x80;
export const IOMMUFD_CMD_IOAS_ALLOC = 0x81;
export const IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82;
export const IOMMUFD_CMD_IOAS_COPY = 0x83;
export const IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
export const IOMMUFD_CMD_IOAS_MAP = 0x85;
export const IOMMUFD_CMD_IOAS_UNMAP = 0x86;
export const IOMMUFD_CMD_OPTION = 0x87;
export const IOMMUFD_CMD_VFIO_IOAS = 0x88;
export const IOMMUFD_CMD_HWPT_ALLOC = 0x89;
export const IOMMUFD_CMD_GET_HW_INFO = 0x8a;
export const IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b;
export const IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c;
export const IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d;
export const IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e;
export const IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f;
export const IOMMUFD_CMD_VIOMMU_ALLOC = 0x90;
export const IOMMUFD_CMD_VDEVICE_ALLOC = 0x91;
export const IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92;
export const IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93;
export const IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94;
/** Proposed noiommu series only (v5+ name); not mainline. */
export const IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA = 0x95;
/** The pre-v5 name of the same command number. */
export const IOMMUFD_CMD_IOAS_GET_PA = 0x95;
/** Selftest kernels only (CONFIG_IOMMUFD_TEST): IOMMUFD_CMD_BASE + 32. */
export const IOMMUFD_CMD_TEST = 0xa0;

// --- request numbers -------------------------------------------------------

export const IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY);
export const IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC);
export const IOMMU_IOAS_ALLOW_IOVAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
export const IOMMU_IOAS_COPY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY);
export const IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES);
export const IOMMU_IOAS_MAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP);
export const IOMMU_IOAS_UNMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP);
export const IOMMU_OPTION = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION);
export const IOMMU_VFIO_IOAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS);
export const IOMMU_HWPT_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC);
export const IOMMU_GET_HW_INFO = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO);
export const IOMMU_HWPT_SET_DIRTY_TRACKING = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING);
export const IOMMU_HWPT_GET_DIRTY_BITMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP);
export const IOMMU_HWPT_INVALIDATE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE);
export const IOMMU_FAULT_QUEUE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC);
export const IOMMU_IOAS_MAP_FILE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE);
export const IOMMU_VIOMMU_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VIOMMU_ALLOC);
export const IOMMU_VDEVICE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VDEVICE_ALLOC);
export const IOMMU_IOAS_CHANGE_PROCESS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_CHANGE_PROCESS);
export const IOMMU_VEVENTQ_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VEVENTQ_ALLOC);
export const IOMMU_HW_QUEUE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HW_QUEUE_ALLOC);
export const IOMMU_IOAS_NOIOMMU_GET_PA = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA);
/** Same request as IOMMU_IOAS_NOIOMMU_GET_PA (the seed revision's name). */
export const IOMMU_IOAS_GET_PA = IOMMU_IOAS_NOIOMMU_GET_PA;
export const IOMMU_TEST_CMD = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_TEST);

// --- flags and enums -------------------------------------------------------

// enum iommufd_ioas_map_flags (MAP, MAP_FILE, COPY)
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

// enum iommufd_option / iommufd_option_ops
export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

// enum iommufd_vfio_ioas_op
export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

// enum iommufd_hwpt_alloc_flags
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

// enum iommu_hwpt_vtd_s1_flags (u64 flags of iommu_hwpt_vtd_s1)
export const IOMMU_VTD_S1_SRE = 1 << 0;
export const IOMMU_VTD_S1_EAFE = 1 << 1;
export const IOMMU_VTD_S1_WPE = 1 << 2;

// enum iommu_hwpt_data_type
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;
export const IOMMU_HWPT_DATA_ARM_SMMUV3 = 2;
/** Later than b4d90dbc: seen in a Rust binding of a newer mainline header. */
export const IOMMU_HWPT_DATA_AMD_GUEST = 3;

// enum iommu_hw_info_vtd_flags / arm_smmuv3 flags
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0;
/** Later than b4d90dbc (Rust binding of a newer header). */
export const IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI = 1 << 0;

// enum iommu_hw_info_type
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3;
/** Later than b4d90dbc: AMD hw_info (efr, efr2), in later mainline headers and bindings. */
export const IOMMU_HW_INFO_TYPE_AMD = 4;

// enum iommufd_hw_capabilities (u64 out_capabilities)
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;
/** Later than b4d90dbc (Rust binding of a newer header). */
export const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3;

// enum iommufd_hw_info_flags
export const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;

// dirty tracking
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

// enum iommu_hwpt_invalidate_data_type
export const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;
export const IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0;

// page faults
export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
export const IOMMU_PGFAULT_PERM_READ = 1 << 0;
export const IOMMU_PGFAULT_PERM_WRITE = 1 << 1;
export const IOMMU_PGFAULT_PERM_EXEC = 1 << 2;
export const IOMMU_PGFAULT_PERM_PRIV = 1 << 3;
export const IOMMUFD_PAGE_RESP_SUCCESS = 0;
export const IOMMUFD_PAGE_RESP_INVALID = 1;

// enum iommu_viommu_type
export const IOMMU_VIOMMU_TYPE_DEFAULT = 0;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2;

// vEVENTQ
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
export const IOMMU_VEVENTQ_TYPE_DEFAULT = 0;
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;

// enum iommu_hw_queue_type
export const IOMMU_HW_QUEUE_TYPE_DEFAULT = 0;
export const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1;

// --- flag/enum tables for the struct defs (short names, as printed) --------

const MAP_FLAGS = { FIXED_IOVA: 1n, WRITEABLE: 2n, READABLE: 4n };
const HWPT_ALLOC_FLAGS = { NEST_PARENT: 1n, DIRTY_TRACKING: 2n, FAULT_ID_VALID: 4n, PASID: 8n };
const HW_INFO_FLAGS = { INPUT_TYPE: 1n };
const HW_CAPS = { DIRTY_TRACKING: 1n, PCI_PASID_EXEC: 2n, PCI_PASID_PRIV: 4n, PCI_ATS_NOT_SUPPORTED: 8n };
const HW_INFO_TYPES = { NONE: 0n, INTEL_VTD: 1n, ARM_SMMUV3: 2n, TEGRA241_CMDQV: 3n, AMD: 4n };
const HWPT_DATA_TYPES = { NONE: 0n, VTD_S1: 1n, ARM_SMMUV3: 2n, AMD_GUEST: 3n };
const INVALIDATE_DATA_TYPES = { VTD_S1: 0n, VIOMMU_ARM_SMMUV3: 1n };
const OPTION_IDS = { RLIMIT_MODE: 0n, HUGE_PAGES: 1n };
const OPTION_OPS = { SET: 0n, GET: 1n };
const VFIO_IOAS_OPS = { GET: 0n, SET: 1n, CLEAR: 2n };
const VIOMMU_TYPES = { DEFAULT: 0n, ARM_SMMUV3: 1n, TEGRA241_CMDQV: 2n };
const VEVENTQ_TYPES = { DEFAULT: 0n, ARM_SMMUV3: 1n, TEGRA241_CMDQV: 2n };
const HW_QUEUE_TYPES = { DEFAULT: 0n, TEGRA241_CMDQV: 1n };
const NO_FLAGS = {};

const size = fld("size", 0, 4, "in");

// --- command structs --------------------------------------------------------

export const iommu_destroy = defineStruct({
  name: "iommu_destroy",
  size: 8,
  fields: [size, fld("id", 4, 4, "in", { kind: "id" })],
});

export const iommu_ioas_alloc = defineStruct({
  name: "iommu_ioas_alloc",
  size: 12,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("out_ioas_id", 8, 4, "out", { kind: "id" }),
  ],
});

export const iommu_iova_range = defineStruct({
  name: "iommu_iova_range",
  size: 16,
  fields: [fld("start", 0, 8, "inout", { fmt: "hex" }), fld("last", 8, 8, "inout", { fmt: "hex" })],
});

export const iommu_ioas_iova_ranges = defineStruct({
  name: "iommu_ioas_iova_ranges",
  size: 32,
  fields: [
    size,
    fld("ioas_id", 4, 4, "in", { kind: "id" }),
    fld("num_iovas", 8, 4, "inout"),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("allowed_iovas", 16, 8, "in", { kind: "ptr" }),
    fld("out_iova_alignment", 24, 8, "out", { fmt: "hex" }),
  ],
});

export const iommu_ioas_allow_iovas = defineStruct({
  name: "iommu_ioas_allow_iovas",
  size: 24,
  fields: [
    size,
    fld("ioas_id", 4, 4, "in", { kind: "id" }),
    // The header calls it in/out; the handler never writes it back (uapi.md §3.5).
    fld("num_iovas", 8, 4, "in"),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("allowed_iovas", 16, 8, "in", { kind: "ptr" }),
  ],
});

export const iommu_ioas_map = defineStruct({
  name: "iommu_ioas_map",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: MAP_FLAGS }),
    fld("ioas_id", 8, 4, "in", { kind: "id" }),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("user_va", 16, 8, "in", { kind: "ptr" }),
    fld("length", 24, 8, "in", { fmt: "hex" }),
    fld("iova", 32, 8, "inout", { fmt: "hex" }),
  ],
});

export const iommu_ioas_map_file = defineStruct({
  name: "iommu_ioas_map_file",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: MAP_FLAGS }),
    fld("ioas_id", 8, 4, "in", { kind: "id" }),
    fld("fd", 12, 4, "in", { kind: "fd" }),
    fld("start", 16, 8, "in", { fmt: "hex" }),
    fld("length", 24, 8, "in", { fmt: "hex" }),
    fld("iova", 32, 8, "inout", { fmt: "hex" }),
  ],
});

export const iommu_ioas_copy = defineStruct({
  name: "iommu_ioas_copy",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: MAP_FLAGS }),
    fld("dst_ioas_id", 8, 4, "in", { kind: "id" }),
    fld("src_ioas_id", 12, 4, "in", { kind: "id" }),
    fld("length", 16, 8, "in", { fmt: "hex" }),
    fld("dst_iova", 24, 8, "inout", { fmt: "hex" }),
    fld("src_iova", 32, 8, "in", { fmt: "hex" }),
  ],
});

export const iommu_ioas_unmap = defineStruct({
  name: "iommu_ioas_unmap",
  size: 24,
  fields: [
    size,
    fld("ioas_id", 4, 4, "in", { kind: "id" }),
    fld("iova", 8, 8, "in", { fmt: "hex" }),
    fld("length", 16, 8, "inout", { fmt: "hex" }),
  ],
});

export const iommu_option = defineStruct({
  name: "iommu_option",
  size: 24,
  fields: [
    size,
    fld("option_id", 4, 4, "in", { kind: "enum", enumNames: OPTION_IDS }),
    fld("op", 8, 2, "in", { kind: "enum", enumNames: OPTION_OPS }),
    fld("__reserved", 10, 2, "in", { kind: "reserved" }),
    fld("object_id", 12, 4, "in", { kind: "id" }),
    fld("val64", 16, 8, "inout"),
  ],
});

export const iommu_vfio_ioas = defineStruct({
  name: "iommu_vfio_ioas",
  size: 12,
  fields: [
    size,
    fld("ioas_id", 4, 4, "inout", { kind: "id" }),
    fld("op", 8, 2, "in", { kind: "enum", enumNames: VFIO_IOAS_OPS }),
    fld("__reserved", 10, 2, "in", { kind: "reserved" }),
  ],
});

export const iommu_hwpt_alloc = defineStruct({
  name: "iommu_hwpt_alloc",
  size: 48,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: HWPT_ALLOC_FLAGS }),
    fld("dev_id", 8, 4, "in", { kind: "id" }),
    fld("pt_id", 12, 4, "in", { kind: "id" }),
    fld("out_hwpt_id", 16, 4, "out", { kind: "id" }),
    fld("__reserved", 20, 4, "in", { kind: "reserved" }),
    fld("data_type", 24, 4, "in", { kind: "enum", enumNames: HWPT_DATA_TYPES }),
    fld("data_len", 28, 4, "in"),
    fld("data_uptr", 32, 8, "in", { kind: "ptr" }),
    fld("fault_id", 40, 4, "in", { kind: "id" }),
    fld("__reserved2", 44, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_hw_info = defineStruct({
  name: "iommu_hw_info",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: HW_INFO_FLAGS }),
    fld("dev_id", 8, 4, "in", { kind: "id" }),
    fld("data_len", 12, 4, "inout"),
    fld("data_uptr", 16, 8, "in", { kind: "ptr" }),
    // union { in_data_type; out_data_type; }
    fld("in_data_type", 24, 4, "in", { kind: "enum", enumNames: HW_INFO_TYPES }),
    fld("out_data_type", 24, 4, "out", { kind: "enum", enumNames: HW_INFO_TYPES, alias: true }),
    fld("out_max_pasid_log2", 28, 1, "out"),
    fld("__reserved", 29, 1, "in", { kind: "reserved", count: 3 }),
    fld("out_capabilities", 32, 8, "out", { kind: "flags", flags: HW_CAPS }),
  ],
});

/**
 * iommu_hw_info as 6.12 had it: no in_data_type union, no PASID width; a u32
 * __reserved at 28 (must be 0). min_size is still offsetofend(__reserved) = 32.
 * Confirmed against a generated copy of the uapi header whose command enum
 * ends at FAULT_QUEUE_ALLOC 0x8e (hw_info types NONE and INTEL_VTD only,
 * capabilities DIRTY_TRACKING only); see docs/kernel-accuracy.md.
 */
export const iommu_hw_info_v6_12 = defineStruct({
  name: "iommu_hw_info",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("dev_id", 8, 4, "in", { kind: "id" }),
    fld("data_len", 12, 4, "inout"),
    fld("data_uptr", 16, 8, "in", { kind: "ptr" }),
    fld("out_data_type", 24, 4, "out", { kind: "enum", enumNames: HW_INFO_TYPES }),
    fld("__reserved", 28, 4, "in", { kind: "reserved" }),
    fld("out_capabilities", 32, 8, "out", { kind: "flags", flags: { DIRTY_TRACKING: 1n } }),
  ],
});

export const iommu_hwpt_set_dirty_tracking = defineStruct({
  name: "iommu_hwpt_set_dirty_tracking",
  size: 16,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { ENABLE: 1n } }),
    fld("hwpt_id", 8, 4, "in", { kind: "id" }),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_hwpt_get_dirty_bitmap = defineStruct({
  name: "iommu_hwpt_get_dirty_bitmap",
  size: 48,
  fields: [
    size,
    fld("hwpt_id", 4, 4, "in", { kind: "id" }),
    fld("flags", 8, 4, "in", { kind: "flags", flags: { NO_CLEAR: 1n } }),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("iova", 16, 8, "in", { fmt: "hex" }),
    fld("length", 24, 8, "in", { fmt: "hex" }),
    fld("page_size", 32, 8, "in", { fmt: "hex" }),
    fld("data", 40, 8, "in", { kind: "ptr" }),
  ],
});

export const iommu_hwpt_invalidate = defineStruct({
  name: "iommu_hwpt_invalidate",
  size: 32,
  fields: [
    size,
    fld("hwpt_id", 4, 4, "in", { kind: "id" }),
    fld("data_uptr", 8, 8, "in", { kind: "ptr" }),
    fld("data_type", 16, 4, "in", { kind: "enum", enumNames: INVALIDATE_DATA_TYPES }),
    fld("entry_len", 20, 4, "in"),
    fld("entry_num", 24, 4, "inout"),
    fld("__reserved", 28, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_fault_alloc = defineStruct({
  name: "iommu_fault_alloc",
  size: 16,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("out_fault_id", 8, 4, "out", { kind: "id" }),
    fld("out_fault_fd", 12, 4, "out", { kind: "fd" }),
  ],
});

export const iommu_viommu_alloc = defineStruct({
  name: "iommu_viommu_alloc",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("type", 8, 4, "in", { kind: "enum", enumNames: VIOMMU_TYPES }),
    fld("dev_id", 12, 4, "in", { kind: "id" }),
    fld("hwpt_id", 16, 4, "in", { kind: "id" }),
    fld("out_viommu_id", 20, 4, "out", { kind: "id" }),
    fld("data_len", 24, 4, "in"),
    fld("__reserved", 28, 4, "in", { kind: "reserved" }),
    fld("data_uptr", 32, 8, "in", { kind: "ptr" }),
  ],
});

export const iommu_vdevice_alloc = defineStruct({
  name: "iommu_vdevice_alloc",
  size: 24,
  fields: [
    size,
    fld("viommu_id", 4, 4, "in", { kind: "id" }),
    fld("dev_id", 8, 4, "in", { kind: "id" }),
    fld("out_vdevice_id", 12, 4, "out", { kind: "id" }),
    fld("virt_id", 16, 8, "in", { fmt: "hex" }),
  ],
});

export const iommu_ioas_change_process = defineStruct({
  name: "iommu_ioas_change_process",
  size: 8,
  fields: [size, fld("__reserved", 4, 4, "in", { kind: "reserved" })],
});

export const iommu_veventq_alloc = defineStruct({
  name: "iommu_veventq_alloc",
  size: 32,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("viommu_id", 8, 4, "in", { kind: "id" }),
    fld("type", 12, 4, "in", { kind: "enum", enumNames: VEVENTQ_TYPES }),
    fld("veventq_depth", 16, 4, "in"),
    fld("out_veventq_id", 20, 4, "out", { kind: "id" }),
    fld("out_veventq_fd", 24, 4, "out", { kind: "fd" }),
    fld("__reserved", 28, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_hw_queue_alloc = defineStruct({
  name: "iommu_hw_queue_alloc",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("viommu_id", 8, 4, "in", { kind: "id" }),
    fld("type", 12, 4, "in", { kind: "enum", enumNames: HW_QUEUE_TYPES }),
    fld("index", 16, 4, "in"),
    fld("out_hw_queue_id", 20, 4, "out", { kind: "id" }),
    fld("nesting_parent_iova", 24, 8, "in", { fmt: "hex" }),
    fld("length", 32, 8, "in", { fmt: "hex" }),
  ],
});

/**
 * struct iommu_ioas_noiommu_get_pa (variant B of uapi.md §6; v4 called it
 * iommu_ioas_get_pa with the same offsets). Field names fit every revision:
 * `length` is output only in v4, in/out from v7 (0 = no limit in v7, EINVAL
 * from v9). flags has no defined bits; __reserved must be 0.
 */
export const iommu_ioas_noiommu_get_pa = defineStruct({
  name: "iommu_ioas_noiommu_get_pa",
  size: 40,
  fields: [
    size,
    fld("flags", 4, 4, "in", { kind: "flags", flags: NO_FLAGS }),
    fld("ioas_id", 8, 4, "in", { kind: "id" }),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("iova", 16, 8, "in", { fmt: "hex" }),
    fld("length", 24, 8, "inout", { fmt: "hex" }),
    fld("out_phys", 32, 8, "out", { fmt: "hex" }),
  ],
});
/** The seed revision's name for the same layout. */
export const iommu_ioas_get_pa = iommu_ioas_noiommu_get_pa;

// --- driver data and event structs ---------------------------------------

export const iommu_hwpt_vtd_s1 = defineStruct({
  name: "iommu_hwpt_vtd_s1",
  size: 24,
  fields: [
    fld("flags", 0, 8, "in", { kind: "flags", flags: { SRE: 1n, EAFE: 2n, WPE: 4n } }),
    fld("pgtbl_addr", 8, 8, "in", { fmt: "hex" }),
    fld("addr_width", 16, 4, "in"),
    fld("__reserved", 20, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_hwpt_arm_smmuv3 = defineStruct({
  name: "iommu_hwpt_arm_smmuv3",
  size: 16,
  fields: [fld("ste", 0, 8, "in", { fmt: "hex", count: 2 })],
});

/** Later than b4d90dbc (Rust binding of a newer header): AMD guest DTE, 4 x le64. */
export const iommu_hwpt_amd_guest = defineStruct({
  name: "iommu_hwpt_amd_guest",
  size: 32,
  fields: [fld("dte", 0, 8, "in", { fmt: "hex", count: 4 })],
});

export const iommu_hw_info_vtd = defineStruct({
  name: "iommu_hw_info_vtd",
  size: 24,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: { ERRATA_772415_SPR17: 1n } }),
    fld("__reserved", 4, 4, "out", { kind: "reserved" }),
    fld("cap_reg", 8, 8, "out", { fmt: "hex" }),
    fld("ecap_reg", 16, 8, "out", { fmt: "hex" }),
  ],
});

export const iommu_hw_info_arm_smmuv3 = defineStruct({
  name: "iommu_hw_info_arm_smmuv3",
  size: 40,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: { ERRATA_REPEAT_TLBI_CFGI: 1n } }),
    fld("__reserved", 4, 4, "out", { kind: "reserved" }),
    fld("idr", 8, 4, "out", { fmt: "hex", count: 6 }),
    fld("iidr", 32, 4, "out", { fmt: "hex" }),
    fld("aidr", 36, 4, "out", { fmt: "hex" }),
  ],
});

export const iommu_hw_info_tegra241_cmdqv = defineStruct({
  name: "iommu_hw_info_tegra241_cmdqv",
  size: 8,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: NO_FLAGS }),
    fld("version", 4, 1, "out"),
    fld("log2vcmdqs", 5, 1, "out"),
    fld("log2vsids", 6, 1, "out"),
    fld("__reserved", 7, 1, "out", { kind: "reserved" }),
  ],
});

/**
 * AMD hw_info (IOMMU_HW_INFO_TYPE_AMD): the EFR and EFR2 registers. Later than
 * b4d90dbc (mainline AMD iommufd.c and bindings). A proposed patch appends a
 * u64 control_register (24 bytes); not modelled.
 */
export const iommu_hw_info_amd = defineStruct({
  name: "iommu_hw_info_amd",
  size: 16,
  fields: [fld("efr", 0, 8, "out", { fmt: "hex" }), fld("efr2", 8, 8, "out", { fmt: "hex" })],
});

export const iommu_hwpt_vtd_s1_invalidate = defineStruct({
  name: "iommu_hwpt_vtd_s1_invalidate",
  size: 24,
  fields: [
    fld("addr", 0, 8, "in", { fmt: "hex" }),
    fld("npages", 8, 8, "in", { fmt: "hex" }),
    fld("flags", 16, 4, "in", { kind: "flags", flags: { LEAF: 1n } }),
    fld("__reserved", 20, 4, "in", { kind: "reserved" }),
  ],
});

export const iommu_viommu_arm_smmuv3_invalidate = defineStruct({
  name: "iommu_viommu_arm_smmuv3_invalidate",
  size: 16,
  fields: [fld("cmd", 0, 8, "in", { fmt: "hex", count: 2 })],
});

export const iommu_hwpt_pgfault = defineStruct({
  name: "iommu_hwpt_pgfault",
  size: 40,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: { PASID_VALID: 1n, LAST_PAGE: 2n } }),
    fld("dev_id", 4, 4, "out", { kind: "id" }),
    fld("pasid", 8, 4, "out"),
    fld("grpid", 12, 4, "out"),
    fld("perm", 16, 4, "out", { kind: "flags", flags: { READ: 1n, WRITE: 2n, EXEC: 4n, PRIV: 8n } }),
    fld("__reserved", 20, 4, "out", { kind: "reserved" }),
    fld("addr", 24, 8, "out", { fmt: "hex" }),
    fld("length", 32, 4, "out", { fmt: "hex" }),
    fld("cookie", 36, 4, "out"),
  ],
});

export const iommu_hwpt_page_response = defineStruct({
  name: "iommu_hwpt_page_response",
  size: 8,
  fields: [
    fld("cookie", 0, 4, "in"),
    fld("code", 4, 4, "in", { kind: "enum", enumNames: { SUCCESS: 0n, INVALID: 1n } }),
  ],
});

export const iommu_viommu_tegra241_cmdqv = defineStruct({
  name: "iommu_viommu_tegra241_cmdqv",
  size: 16,
  fields: [
    fld("out_vintf_mmap_offset", 0, 8, "out", { fmt: "hex" }),
    fld("out_vintf_mmap_length", 8, 8, "out", { fmt: "hex" }),
  ],
});

export const iommufd_vevent_header = defineStruct({
  name: "iommufd_vevent_header",
  size: 8,
  fields: [
    fld("flags", 0, 4, "out", { kind: "flags", flags: { LOST_EVENTS: 1n } }),
    fld("sequence", 4, 4, "out"),
  ],
});

export const iommu_vevent_arm_smmuv3 = defineStruct({
  name: "iommu_vevent_arm_smmuv3",
  size: 32,
  fields: [fld("evt", 0, 8, "out", { fmt: "hex", count: 4 })],
});

export const iommu_vevent_tegra241_cmdqv = defineStruct({
  name: "iommu_vevent_tegra241_cmdqv",
  size: 16,
  fields: [fld("lvcmdq_err_map", 0, 8, "out", { fmt: "hex", count: 2 })],
});

// --- the command table ----------------------------------------------------

export interface IoctlDef<D extends StructDef = StructDef> {
  /** Request macro name, e.g. "IOMMU_IOAS_MAP". */
  name: string;
  /** Other macro names for the same request. */
  aliases?: readonly string[];
  nr: number;
  request: number;
  struct: D;
  /** The IOCTL_OP "last" field: the end of the mandatory part. */
  lastField: FieldName<D>;
  /** offsetofend(struct, lastField): user size below this is EINVAL. */
  minSize: number;
  since: Since;
  profiles: ReadonlySet<KernelProfile>;
}

/** One command as the header and the IOCTL_OP table describe it; `last` must be a field of `struct`. */
interface Row<N extends string = string, D extends StructDef = StructDef> {
  name: N;
  aliases?: readonly string[];
  nr: number;
  struct: D;
  last: FieldName<D>;
  since: Since;
}

function row<const N extends string, D extends StructDef>(r: Row<N, D>): Row<N, D> {
  return r;
}

// `since` must agree with IOMMUFD_CMD_SINCE (a test checks it).
const ROWS = [
  row({ name: "IOMMU_DESTROY", nr: 0x80, struct: iommu_destroy, last: "id", since: "6.2" }),
  row({
    name: "IOMMU_IOAS_ALLOC",
    nr: 0x81,
    struct: iommu_ioas_alloc,
    last: "out_ioas_id",
    since: "6.2",
  }),
  row({
    name: "IOMMU_IOAS_ALLOW_IOVAS",
    nr: 0x82,
    struct: iommu_ioas_allow_iovas,
    last: "allowed_iovas",
    since: "6.2",
  }),
  row({
    name: "IOMMU_IOAS_COPY",
    nr: 0x83,
    struct: iommu_ioas_copy,
    last: "src_iova",
    since: "6.2",
  }),
  row({
    name: "IOMMU_IOAS_IOVA_RANGES",
    nr: 0x84,
    struct: iommu_ioas_iova_ranges,
    last: "out_iova_alignment",
    since: "6.2",
  }),
  row({ name: "IOMMU_IOAS_MAP", nr: 0x85, struct: iommu_ioas_map, last: "iova", since: "6.2" }),
  row({
    name: "IOMMU_IOAS_UNMAP",
    nr: 0x86,
    struct: iommu_ioas_unmap,
    last: "length",
    since: "6.2",
  }),
  row({
    name: "IOMMU_OPTION",
    nr: 0x87,
    struct: iommu_option,
    last: "val64",
    since: "6.2",
  }),
  row({
    name: "IOMMU_VFIO_IOAS",
    nr: 0x88,
    struct: iommu_vfio_ioas,
    last: "__reserved",
    since: "6.2",
  }),
  row({
    name: "IOMMU_HWPT_ALLOC",
    nr: 0x89,
    struct: iommu_hwpt_alloc,
    last: "__reserved",
    since: "6.6",
  }),
  row({
    name: "IOMMU_GET_HW_INFO",
    nr: 0x8a,
    struct: iommu_hw_info,
    last: "__reserved",
    since: "6.6",
  }),
  row({
    name: "IOMMU_HWPT_SET_DIRTY_TRACKING",
    nr: 0x8b,
    struct: iommu_hwpt_set_dirty_tracking,
    last: "__reserved",
    since: "6.7",
  }),
  row({
    name: "IOMMU_HWPT_GET_DIRTY_BITMAP",
    nr: 0x8c,
    struct: iommu_hwpt_get_dirty_bitmap,
    last: "data",
    since: "6.7",
  }),
  row({
    name: "IOMMU_HWPT_INVALIDATE",
    nr: 0x8d,
    struct: iommu_hwpt_invalidate,
    last: "__reserved",
    since: "6.8",
  }),
  row({
    name: "IOMMU_FAULT_QUEUE_ALLOC",
    nr: 0x8e,
    struct: iommu_fault_alloc,
    last: "out_fault_fd",
    since: "6.11",
  }),
  row({
    name: "IOMMU_IOAS_MAP_FILE",
    nr: 0x8f,
    struct: iommu_ioas_map_file,
    last: "iova",
    since: "6.13",
  }),
  row({
    name: "IOMMU_VIOMMU_ALLOC",
    nr: 0x90,
    struct: iommu_viommu_alloc,
    last: "out_viommu_id",
    since: "6.13",
  }),
  row({
    name: "IOMMU_VDEVICE_ALLOC",
    nr: 0x91,
    struct: iommu_vdevice_alloc,
    last: "virt_id",
    since: "6.13",
  }),
  row({
    name: "IOMMU_IOAS_CHANGE_PROCESS",
    nr: 0x92,
    struct: iommu_ioas_change_process,
    last: "__reserved",
    since: "6.14",
  }),
  row({
    name: "IOMMU_VEVENTQ_ALLOC",
    nr: 0x93,
    struct: iommu_veventq_alloc,
    last: "out_veventq_fd",
    since: "6.15",
  }),
  row({
    name: "IOMMU_HW_QUEUE_ALLOC",
    nr: 0x94,
    struct: iommu_hw_queue_alloc,
    last: "length",
    since: "6.17",
  }),
  row({
    // min_size = offsetofend(out_phys) = 40, as the series' own IOCTL_OP row
    // (downstream main.c carrying the late revision).
    name: "IOMMU_IOAS_NOIOMMU_GET_PA",
    aliases: ["IOMMU_IOAS_GET_PA"],
    nr: 0x95,
    struct: iommu_ioas_noiommu_get_pa,
    last: "out_phys",
    since: "noiommu",
  }),
] as const;

/** A row of the command table (each keeps its name and struct as types). */
export type IommufdRow = (typeof ROWS)[number];
/** Every iommufd command name (request macro) of the newest profile. */
export type IommufdCmdName = IommufdRow["name"];
/** The struct table of a command, by name. */
export type IommufdCmdStruct<N extends IommufdCmdName> = Extract<IommufdRow, { name: N }>["struct"];

function toDef(r: Row, struct: StructDef): IoctlDef {
  const def: IoctlDef = {
    name: r.name,
    nr: r.nr,
    request: _IO(IOMMUFD_TYPE, r.nr),
    struct,
    lastField: r.last,
    minSize: offsetOfEnd(struct, r.last),
    since: r.since,
    profiles: profilesSince(r.since),
  };
  if (r.aliases) def.aliases = r.aliases;
  return def;
}

/** Every iommufd command of the newest profile, in nr order. */
export const IOMMUFD_IOCTLS: readonly IoctlDef[] = ROWS.map((r) => toDef(r, r.struct));

/** Per-profile struct overrides where the layout itself changed. */
const LAYOUT_OVERRIDES: Partial<Record<KernelProfile, Record<string, StructDef>>> = {
  "6.12": { IOMMU_GET_HW_INFO: iommu_hw_info_v6_12 },
};

const PROFILE_TABLES = new Map<KernelProfile, Map<number, IoctlDef>>();
for (const p of KERNEL_PROFILES) {
  const table = new Map<number, IoctlDef>();
  for (const r of ROWS) {
    if (!profileHas(p, r.since)) continue;
    const base = LAYOUT_OVERRIDES[p]?.[r.name] ?? r.struct;
    table.set(r.nr, toDef(r, structForProfile(base, p)));
  }
  PROFILE_TABLES.set(p, table);
}

/** The command a profile has at this nr (0x80..), or undefined (ENOTTY territory). */
export function iommufdIoctlByNr(nr: number, profile: KernelProfile = "latest"): IoctlDef | undefined {
  return PROFILE_TABLES.get(profile)?.get(nr);
}

/** The command whose full request number is exactly `request`, or undefined. */
export function iommufdIoctlByRequest(
  request: number,
  profile: KernelProfile = "latest",
): IoctlDef | undefined {
  const def = iommufdIoctlByNr(_IOC_NR(request), profile);
  return def && def.request === request >>> 0 ? def : undefined;
}

/** By macro name (aliases included), or undefined when the profile lacks it. */
export function iommufdIoctlByName(name: string, profile: KernelProfile = "latest"): IoctlDef | undefined {
  for (const def of PROFILE_TABLES.get(profile)?.values() ?? []) {
    if (def.name === name || def.aliases?.includes(name)) return def;
  }
  return undefined;
}

/** All commands of a profile, in nr order. */
export function iommufdIoctls(profile: KernelProfile = "latest"): IoctlDef[] {
  return [...(PROFILE_TABLES.get(profile)?.values() ?? [])].sort((a, b) => a.nr - b.nr);
}

/**
 * ARRAY_SIZE(iommufd_ioctl_ops): the table is indexed by nr - 0x80 and sized
 * by its highest entry (IOMMU_TEST_CMD at 0xa0 on selftest kernels). A
 * kernel built without IOMMUFD_NOIOMMU has no GET_PA row.
 */
export function iommufdTableSize(
  profile: KernelProfile = "latest",
  selftest = false,
  noiommu = true,
): number {
  if (selftest) return IOMMUFD_CMD_TEST - IOMMUFD_CMD_BASE + 1;
  return TABLE_SIZES.get(profile)?.[noiommu ? 0 : 1] ?? 0;
}

/** Per profile: [size with the noiommu row, size without it]; computed once, read on every ioctl. */
const TABLE_SIZES = new Map<KernelProfile, readonly [number, number]>();
for (const [p, table] of PROFILE_TABLES) {
  let withRow = IOMMUFD_CMD_BASE - 1;
  let withoutRow = IOMMUFD_CMD_BASE - 1;
  for (const d of table.values()) {
    withRow = Math.max(withRow, d.nr);
    if (d.since !== "noiommu") withoutRow = Math.max(withoutRow, d.nr);
  }
  TABLE_SIZES.set(p, [withRow - IOMMUFD_CMD_BASE + 1, withoutRow - IOMMUFD_CMD_BASE + 1]);
}

export type IommufdRoute =
  /** nr below 0x80 or past the table: the VFIO-compat handler decides (ENOTTY for unknown). */
  | { kind: "compat" }
  /** A slot that is empty or whose request differs in dir/size bits: ENOIOCTLCMD → ENOTTY. */
  | { kind: "enotty" }
  /** IOMMU_TEST_CMD on a selftest kernel. */
  | { kind: "test" }
  | { kind: "ioctl"; def: IoctlDef };

/**
 * Step 1 and 3 of iommufd_fops_ioctl: where a request on an iommufd fd goes.
 * The one place the route is decided (the kernel's dispatch uses it too).
 */
export function iommufdRoute(
  request: number,
  profile: KernelProfile = "latest",
  selftest = false,
  noiommu = true,
): IommufdRoute {
  const req = request >>> 0;
  const nr = _IOC_NR(req);
  if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= iommufdTableSize(profile, selftest, noiommu)) {
    return ROUTE_COMPAT;
  }
  if (selftest && nr === IOMMUFD_CMD_TEST) return req === IOMMU_TEST_CMD ? ROUTE_TEST : ROUTE_ENOTTY;
  const def = iommufdIoctlByNr(nr, profile);
  if (!def || def.request !== req || (!noiommu && def.since === "noiommu")) return ROUTE_ENOTTY;
  return IOCTL_ROUTES.get(def)!;
}

// (routes are made once: this runs on every ioctl on an iommufd)
const ROUTE_COMPAT: IommufdRoute = Object.freeze({ kind: "compat" });
const ROUTE_ENOTTY: IommufdRoute = Object.freeze({ kind: "enotty" });
const ROUTE_TEST: IommufdRoute = Object.freeze({ kind: "test" });
const IOCTL_ROUTES = new Map<IoctlDef, IommufdRoute>();
for (const table of PROFILE_TABLES.values()) {
  for (const def of table.values()) IOCTL_ROUTES.set(def, Object.freeze({ kind: "ioctl", def }));
}
