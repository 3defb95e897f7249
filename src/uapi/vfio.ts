// VFIO user API: include/uapi/linux/vfio.h (torvalds/linux 02256acf).
//
// Every VFIO command is _IO(';', 100 + n). Several numbers mean different
// commands depending on which fd receives them (uapi.md §1.2,
// vfio-noiommu-ppc64.md §3.6):
//
//   BASE+12  container: VFIO_IOMMU_GET_INFO (type1) / VFIO_IOMMU_SPAPR_TCE_GET_INFO
//            device:    VFIO_DEVICE_GET_PCI_HOT_RESET_INFO
//   BASE+13..16  container: MAP_DMA, UNMAP_DMA, ENABLE, DISABLE
//            device:    PCI_HOT_RESET, QUERY_GFX_PLANE, GET_GFX_DMABUF, IOEVENTFD
//   BASE+17  container: VFIO_IOMMU_DIRTY_PAGES (type1) / VFIO_IOMMU_SPAPR_REGISTER_MEMORY
//            device:    VFIO_DEVICE_FEATURE
//   BASE+18  container: VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY; device: VFIO_DEVICE_BIND_IOMMUFD
//   BASE+19  container: VFIO_IOMMU_SPAPR_TCE_CREATE;        device: VFIO_DEVICE_ATTACH_IOMMUFD_PT
//   BASE+20  container: VFIO_IOMMU_SPAPR_TCE_REMOVE;        device: VFIO_DEVICE_DETACH_IOMMUFD_PT
//   BASE+21  container: VFIO_EEH_PE_OP;   migration data fd: VFIO_MIG_GET_PRECOPY_INFO
//
// The constants below therefore share values (VFIO_DEVICE_BIND_IOMMUFD ===
// VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, ...). Never decode a VFIO request
// without the fd kind: use vfioIoctlFor(request, fdKind, backend).

import { EINVAL } from "./errno.js";
import { _IO, _IOC_NR } from "./ioc.js";
import { type KernelProfile, structForProfile } from "./profiles.js";
import { defineStruct, type FieldName, fld, offsetOfEnd, type StructDef } from "./struct.js";

export const VFIO_TYPE = 0x3b; // ';'
export const VFIO_BASE = 100;
export const VFIO_API_VERSION = 0;

// --- extensions (CHECK_EXTENSION / SET_IOMMU argument) ---------------------

export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const __VFIO_RESERVED_TYPE1_NESTING_IOMMU = 6;
/** The pre-rename name of extension 6 (now reserved). */
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

export const VFIO_EXTENSION_NAMES: Readonly<Record<number, string>> = {
  1: "VFIO_TYPE1_IOMMU",
  2: "VFIO_SPAPR_TCE_IOMMU",
  3: "VFIO_TYPE1v2_IOMMU",
  4: "VFIO_DMA_CC_IOMMU",
  5: "VFIO_EEH",
  6: "__VFIO_RESERVED_TYPE1_NESTING_IOMMU",
  7: "VFIO_SPAPR_TCE_v2_IOMMU",
  8: "VFIO_NOIOMMU_IOMMU",
  9: "VFIO_UNMAP_ALL",
  10: "VFIO_UPDATE_VADDR",
};

// --- request numbers -------------------------------------------------------

const vio = (n: number): number => _IO(VFIO_TYPE, VFIO_BASE + n);

// container fd (/dev/vfio/vfio, or an iommufd through its compat handler)
export const VFIO_GET_API_VERSION = vio(0);
export const VFIO_CHECK_EXTENSION = vio(1);
export const VFIO_SET_IOMMU = vio(2);
// group fd (/dev/vfio/N)
export const VFIO_GROUP_GET_STATUS = vio(3);
export const VFIO_GROUP_SET_CONTAINER = vio(4);
export const VFIO_GROUP_UNSET_CONTAINER = vio(5);
export const VFIO_GROUP_GET_DEVICE_FD = vio(6);
// device fd
export const VFIO_DEVICE_GET_INFO = vio(7);
export const VFIO_DEVICE_GET_REGION_INFO = vio(8);
export const VFIO_DEVICE_GET_IRQ_INFO = vio(9);
export const VFIO_DEVICE_SET_IRQS = vio(10);
export const VFIO_DEVICE_RESET = vio(11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = vio(12);
export const VFIO_DEVICE_PCI_HOT_RESET = vio(13);
export const VFIO_DEVICE_QUERY_GFX_PLANE = vio(14);
export const VFIO_DEVICE_GET_GFX_DMABUF = vio(15);
export const VFIO_DEVICE_IOEVENTFD = vio(16);
export const VFIO_DEVICE_FEATURE = vio(17);
export const VFIO_DEVICE_BIND_IOMMUFD = vio(18);
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = vio(19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = vio(20);
// migration data fd
export const VFIO_MIG_GET_PRECOPY_INFO = vio(21);
// container fd, after SET_IOMMU (same numbers as device commands above)
export const VFIO_IOMMU_GET_INFO = vio(12);
export const VFIO_IOMMU_MAP_DMA = vio(13);
export const VFIO_IOMMU_UNMAP_DMA = vio(14);
export const VFIO_IOMMU_ENABLE = vio(15);
export const VFIO_IOMMU_DISABLE = vio(16);
export const VFIO_IOMMU_DIRTY_PAGES = vio(17);
export const VFIO_IOMMU_SPAPR_TCE_GET_INFO = vio(12);
export const VFIO_IOMMU_SPAPR_REGISTER_MEMORY = vio(17);
export const VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = vio(18);
export const VFIO_IOMMU_SPAPR_TCE_CREATE = vio(19);
export const VFIO_IOMMU_SPAPR_TCE_REMOVE = vio(20);
export const VFIO_EEH_PE_OP = vio(21);

// --- flags and enums -------------------------------------------------------

export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;
export const VFIO_DEVICE_FLAGS_CDX = 1 << 8;

export const VFIO_DEVICE_API_PCI_STRING = "vfio-pci";
export const VFIO_DEVICE_API_PLATFORM_STRING = "vfio-platform";
export const VFIO_DEVICE_API_AMBA_STRING = "vfio-amba";
export const VFIO_DEVICE_API_CCW_STRING = "vfio-ccw";
export const VFIO_DEVICE_API_AP_STRING = "vfio-ap";

export const VFIO_DEVICE_INFO_CAP_ZPCI_BASE = 1;
export const VFIO_DEVICE_INFO_CAP_ZPCI_GROUP = 2;
export const VFIO_DEVICE_INFO_CAP_ZPCI_UTIL = 3;
export const VFIO_DEVICE_INFO_CAP_ZPCI_PFIP = 4;
export const VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5;
export const VFIO_PCI_ATOMIC_COMP32 = 1 << 0;
export const VFIO_PCI_ATOMIC_COMP64 = 1 << 1;
export const VFIO_PCI_ATOMIC_COMP128 = 1 << 2;

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;
/** Deprecated; no longer provided. */
export const VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4;
/** Deprecated; no longer provided. */
export const VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5;

export const VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 0x80000000; // 1 << 31, unsigned
export const VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xffff;
export const VFIO_REGION_TYPE_GFX = 1;
export const VFIO_REGION_TYPE_CCW = 2;
export const VFIO_REGION_TYPE_MIGRATION_DEPRECATED = 3;
export const VFIO_REGION_SUBTYPE_INTEL_IGD_OPREGION = 1;
export const VFIO_REGION_SUBTYPE_INTEL_IGD_HOST_CFG = 2;
export const VFIO_REGION_SUBTYPE_INTEL_IGD_LPC_CFG = 3;
export const VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM = 1;
export const VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD = 1;
export const VFIO_REGION_SUBTYPE_GFX_EDID = 1;
export const VFIO_REGION_SUBTYPE_CCW_ASYNC_CMD = 1;
export const VFIO_REGION_SUBTYPE_CCW_SCHIB = 2;
export const VFIO_REGION_SUBTYPE_CCW_CRW = 3;
export const VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = 1;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK =
  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

// vfio-pci fixed region and IRQ indexes (fixed user ABI)
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

export const VFIO_CCW_CONFIG_REGION_INDEX = 0;
export const VFIO_CCW_NUM_REGIONS = 1;
export const VFIO_CCW_IO_IRQ_INDEX = 0;
export const VFIO_CCW_CRW_IRQ_INDEX = 1;
export const VFIO_CCW_REQ_IRQ_INDEX = 2;
export const VFIO_CCW_NUM_IRQS = 3;
export const VFIO_AP_REQ_IRQ_INDEX = 0;
export const VFIO_AP_CFG_CHG_IRQ_INDEX = 1;
export const VFIO_AP_NUM_IRQS = 2;

/**
 * vfio-pci's region offset encoding on the device fd (kernel-internal, not
 * uapi, but what GET_REGION_INFO reports): offset = index << 40.
 */
export const VFIO_PCI_OFFSET_SHIFT = 40;
export const VFIO_PCI_OFFSET_MASK = (1n << 40n) - 1n;
export function VFIO_PCI_INDEX_TO_OFFSET(index: number): bigint {
  return BigInt(index) << BigInt(VFIO_PCI_OFFSET_SHIFT);
}
export function VFIO_PCI_OFFSET_TO_INDEX(offset: bigint): number {
  return Number(offset >> BigInt(VFIO_PCI_OFFSET_SHIFT));
}

export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
export const VFIO_PCI_DEVID_OWNED = 0;
export const VFIO_PCI_DEVID_NOT_OWNED = -1;

export const VFIO_GFX_PLANE_TYPE_PROBE = 1 << 0;
export const VFIO_GFX_PLANE_TYPE_DMABUF = 1 << 1;
export const VFIO_GFX_PLANE_TYPE_REGION = 1 << 2;
export const VFIO_DEVICE_GFX_LINK_STATE_UP = 1;
export const VFIO_DEVICE_GFX_LINK_STATE_DOWN = 2;

export const VFIO_DEVICE_IOEVENTFD_8 = 1 << 0;
export const VFIO_DEVICE_IOEVENTFD_16 = 1 << 1;
export const VFIO_DEVICE_IOEVENTFD_32 = 1 << 2;
export const VFIO_DEVICE_IOEVENTFD_64 = 1 << 3;
export const VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xf;

export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

export const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
export const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;
export const VFIO_DEVICE_FEATURE_BUS_MASTER = 10;
export const VFIO_DEVICE_FEATURE_DMA_BUF = 11;

export const VFIO_MIGRATION_STOP_COPY = 1 << 0;
export const VFIO_MIGRATION_P2P = 1 << 1;
export const VFIO_MIGRATION_PRE_COPY = 1 << 2;

export const VFIO_DEVICE_STATE_ERROR = 0;
export const VFIO_DEVICE_STATE_STOP = 1;
export const VFIO_DEVICE_STATE_RUNNING = 2;
export const VFIO_DEVICE_STATE_STOP_COPY = 3;
export const VFIO_DEVICE_STATE_RESUMING = 4;
export const VFIO_DEVICE_STATE_RUNNING_P2P = 5;
export const VFIO_DEVICE_STATE_PRE_COPY = 6;
export const VFIO_DEVICE_STATE_PRE_COPY_P2P = 7;
export const VFIO_DEVICE_STATE_NR = 8;

export const VFIO_DEVICE_FEATURE_CLEAR_MASTER = 0;
export const VFIO_DEVICE_FEATURE_SET_MASTER = 1;

export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;

export const VFIO_IOMMU_SPAPR_INFO_DDW = 1 << 0;

export const VFIO_EEH_PE_DISABLE = 0;
export const VFIO_EEH_PE_ENABLE = 1;
export const VFIO_EEH_PE_UNFREEZE_IO = 2;
export const VFIO_EEH_PE_UNFREEZE_DMA = 3;
export const VFIO_EEH_PE_GET_STATE = 4;
export const VFIO_EEH_PE_STATE_NORMAL = 0;
export const VFIO_EEH_PE_STATE_RESET = 1;
export const VFIO_EEH_PE_STATE_STOPPED = 2;
export const VFIO_EEH_PE_STATE_STOPPED_DMA = 4;
export const VFIO_EEH_PE_STATE_UNAVAIL = 5;
export const VFIO_EEH_PE_RESET_DEACTIVATE = 5;
export const VFIO_EEH_PE_RESET_HOT = 6;
export const VFIO_EEH_PE_RESET_FUNDAMENTAL = 7;
export const VFIO_EEH_PE_CONFIGURE = 8;
export const VFIO_EEH_PE_INJECT_ERR = 9;

// --- struct tables ---------------------------------------------------------

const argszIn = fld("argsz", 0, 4, "in");
const argszInOut = fld("argsz", 0, 4, "inout");

export const vfio_info_cap_header = defineStruct({
  name: "vfio_info_cap_header",
  size: 8,
  fields: [fld("id", 0, 2, "out"), fld("version", 2, 2, "out"), fld("next", 4, 4, "out")],
});

const capHeader = [fld("id", 0, 2, "out"), fld("version", 2, 2, "out"), fld("next", 4, 4, "out")];

export const vfio_group_status = defineStruct({
  name: "vfio_group_status",
  size: 8,
  fields: [argszIn, fld("flags", 4, 4, "out", { kind: "flags", flags: { VIABLE: 1n, CONTAINER_SET: 2n } })],
});

export const vfio_device_info = defineStruct({
  name: "vfio_device_info",
  size: 24,
  fields: [
    argszInOut,
    fld("flags", 4, 4, "out", {
      kind: "flags",
      flags: {
        RESET: 1n,
        PCI: 2n,
        PLATFORM: 4n,
        AMBA: 8n,
        CCW: 0x10n,
        AP: 0x20n,
        FSL_MC: 0x40n,
        CAPS: 0x80n,
        CDX: 0x100n,
      },
    }),
    fld("num_regions", 8, 4, "out"),
    fld("num_irqs", 12, 4, "out"),
    fld("cap_offset", 16, 4, "out"),
    fld("pad", 20, 4, "out", { kind: "reserved" }),
  ],
});

export const vfio_device_info_cap_pci_atomic_comp = defineStruct({
  name: "vfio_device_info_cap_pci_atomic_comp",
  size: 16,
  fields: [
    ...capHeader,
    fld("flags", 8, 4, "out", { kind: "flags", flags: { COMP32: 1n, COMP64: 2n, COMP128: 4n } }),
    fld("reserved", 12, 4, "out", { kind: "reserved" }),
  ],
});

export const vfio_region_info = defineStruct({
  name: "vfio_region_info",
  size: 32,
  fields: [
    argszInOut,
    fld("flags", 4, 4, "out", { kind: "flags", flags: { READ: 1n, WRITE: 2n, MMAP: 4n, CAPS: 8n } }),
    fld("index", 8, 4, "in"),
    fld("cap_offset", 12, 4, "out"),
    fld("size", 16, 8, "out", { fmt: "hex" }),
    fld("offset", 24, 8, "out", { fmt: "hex" }),
  ],
});

export const vfio_region_sparse_mmap_area = defineStruct({
  name: "vfio_region_sparse_mmap_area",
  size: 16,
  fields: [fld("offset", 0, 8, "out", { fmt: "hex" }), fld("size", 8, 8, "out", { fmt: "hex" })],
});

/** Header part; `areas[]` (vfio_region_sparse_mmap_area) follow at 16. */
export const vfio_region_info_cap_sparse_mmap = defineStruct({
  name: "vfio_region_info_cap_sparse_mmap",
  size: 16,
  fields: [...capHeader, fld("nr_areas", 8, 4, "out"), fld("reserved", 12, 4, "out", { kind: "reserved" })],
});

export const vfio_region_info_cap_type = defineStruct({
  name: "vfio_region_info_cap_type",
  size: 16,
  fields: [...capHeader, fld("type", 8, 4, "out", { fmt: "hex" }), fld("subtype", 12, 4, "out")],
});

export const vfio_region_gfx_edid = defineStruct({
  name: "vfio_region_gfx_edid",
  size: 24,
  fields: [
    fld("edid_offset", 0, 4, "out", { fmt: "hex" }),
    fld("edid_max_size", 4, 4, "out"),
    fld("edid_size", 8, 4, "inout"),
    fld("max_xres", 12, 4, "out"),
    fld("max_yres", 16, 4, "out"),
    fld("link_state", 20, 4, "inout", { kind: "enum", enumNames: { UP: 1n, DOWN: 2n } }),
  ],
});

export const vfio_irq_info = defineStruct({
  name: "vfio_irq_info",
  size: 16,
  fields: [
    argszIn,
    fld("flags", 4, 4, "out", {
      kind: "flags",
      flags: { EVENTFD: 1n, MASKABLE: 2n, AUTOMASKED: 4n, NORESIZE: 8n },
    }),
    fld("index", 8, 4, "in"),
    fld("count", 12, 4, "out"),
  ],
});

/** Header part; data[] (u8 bools or s32 eventfds) follows at 20. */
export const vfio_irq_set = defineStruct({
  name: "vfio_irq_set",
  size: 20,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", {
      kind: "flags",
      flags: {
        DATA_NONE: 1n,
        DATA_BOOL: 2n,
        DATA_EVENTFD: 4n,
        ACTION_MASK: 8n,
        ACTION_UNMASK: 0x10n,
        ACTION_TRIGGER: 0x20n,
      },
    }),
    fld("index", 8, 4, "in"),
    fld("start", 12, 4, "in"),
    fld("count", 16, 4, "in"),
  ],
});

export const vfio_pci_dependent_device = defineStruct({
  name: "vfio_pci_dependent_device",
  size: 8,
  fields: [
    fld("group_id", 0, 4, "out"),
    fld("devid", 0, 4, "out", { signed: true, alias: true }),
    fld("segment", 4, 2, "out", { fmt: "hex" }),
    fld("bus", 6, 1, "out", { fmt: "hex" }),
    fld("devfn", 7, 1, "out", { fmt: "hex" }),
  ],
});

/** Header part; devices[] (vfio_pci_dependent_device) follow at 12. */
export const vfio_pci_hot_reset_info = defineStruct({
  name: "vfio_pci_hot_reset_info",
  size: 12,
  fields: [
    argszInOut,
    fld("flags", 4, 4, "out", { kind: "flags", flags: { DEV_ID: 1n, DEV_ID_OWNED: 2n } }),
    fld("count", 8, 4, "inout"),
  ],
});

/** Header part; group_fds[] (s32) follow at 12. */
export const vfio_pci_hot_reset = defineStruct({
  name: "vfio_pci_hot_reset",
  size: 12,
  fields: [argszIn, fld("flags", 4, 4, "in", { kind: "flags", flags: {} }), fld("count", 8, 4, "in")],
});

export const vfio_device_gfx_plane_info = defineStruct({
  name: "vfio_device_gfx_plane_info",
  size: 64,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { PROBE: 1n, DMABUF: 2n, REGION: 4n } }),
    fld("drm_plane_type", 8, 4, "in"),
    fld("drm_format", 12, 4, "out", { fmt: "hex" }),
    fld("drm_format_mod", 16, 8, "out", { fmt: "hex" }),
    fld("width", 24, 4, "out"),
    fld("height", 28, 4, "out"),
    fld("stride", 32, 4, "out"),
    fld("size", 36, 4, "out"),
    fld("x_pos", 40, 4, "out"),
    fld("y_pos", 44, 4, "out"),
    fld("x_hot", 48, 4, "out"),
    fld("y_hot", 52, 4, "out"),
    fld("region_index", 56, 4, "out"),
    fld("dmabuf_id", 56, 4, "out", { alias: true }),
    fld("reserved", 60, 4, "out", { kind: "reserved" }),
  ],
});

export const vfio_device_ioeventfd = defineStruct({
  name: "vfio_device_ioeventfd",
  size: 32,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { "8": 1n, "16": 2n, "32": 4n, "64": 8n } }),
    fld("offset", 8, 8, "in", { fmt: "hex" }),
    fld("data", 16, 8, "in", { fmt: "hex" }),
    fld("fd", 24, 4, "in", { kind: "fd" }),
    fld("reserved", 28, 4, "in", { kind: "reserved" }),
  ],
});

/**
 * Header part; the feature payload follows at 8. The low 16 flag bits are the
 * feature index (VFIO_DEVICE_FEATURE_MASK), printed as leftover hex.
 */
export const vfio_device_feature = defineStruct({
  name: "vfio_device_feature",
  size: 8,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { GET: 0x10000n, SET: 0x20000n, PROBE: 0x40000n } }),
  ],
});

export const vfio_device_bind_iommufd = defineStruct({
  name: "vfio_device_bind_iommufd",
  size: 24,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { TOKEN: 1n } }),
    fld("iommufd", 8, 4, "in", { kind: "fd" }),
    fld("out_devid", 12, 4, "out", { kind: "id" }),
    fld("token_uuid_ptr", 16, 8, "in", { kind: "ptr" }),
  ],
});

export const vfio_device_attach_iommufd_pt = defineStruct({
  name: "vfio_device_attach_iommufd_pt",
  size: 16,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { PASID: 1n } }),
    fld("pt_id", 8, 4, "inout", { kind: "id" }),
    fld("pasid", 12, 4, "in"),
  ],
});

export const vfio_device_detach_iommufd_pt = defineStruct({
  name: "vfio_device_detach_iommufd_pt",
  size: 12,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { PASID: 1n } }),
    fld("pasid", 8, 4, "in"),
  ],
});

// Feature payloads (after the 8-byte vfio_device_feature header).

export const vfio_device_feature_migration = defineStruct({
  name: "vfio_device_feature_migration",
  size: 8,
  fields: [fld("flags", 0, 8, "out", { kind: "flags", flags: { STOP_COPY: 1n, P2P: 2n, PRE_COPY: 4n } })],
});

const MIG_STATES = {
  ERROR: 0n,
  STOP: 1n,
  RUNNING: 2n,
  STOP_COPY: 3n,
  RESUMING: 4n,
  RUNNING_P2P: 5n,
  PRE_COPY: 6n,
  PRE_COPY_P2P: 7n,
};

export const vfio_device_feature_mig_state = defineStruct({
  name: "vfio_device_feature_mig_state",
  size: 8,
  fields: [
    fld("device_state", 0, 4, "inout", { kind: "enum", enumNames: MIG_STATES }),
    fld("data_fd", 4, 4, "out", { kind: "fd" }),
  ],
});

export const vfio_device_low_power_entry_with_wakeup = defineStruct({
  name: "vfio_device_low_power_entry_with_wakeup",
  size: 8,
  fields: [
    fld("wakeup_eventfd", 0, 4, "in", { kind: "fd" }),
    fld("reserved", 4, 4, "in", { kind: "reserved" }),
  ],
});

export const vfio_device_feature_dma_logging_control = defineStruct({
  name: "vfio_device_feature_dma_logging_control",
  size: 24,
  fields: [
    fld("page_size", 0, 8, "inout", { fmt: "hex" }),
    fld("num_ranges", 8, 4, "in"),
    fld("__reserved", 12, 4, "in", { kind: "reserved" }),
    fld("ranges", 16, 8, "in", { kind: "ptr" }),
  ],
});

export const vfio_device_feature_dma_logging_range = defineStruct({
  name: "vfio_device_feature_dma_logging_range",
  size: 16,
  fields: [fld("iova", 0, 8, "in", { fmt: "hex" }), fld("length", 8, 8, "in", { fmt: "hex" })],
});

export const vfio_device_feature_dma_logging_report = defineStruct({
  name: "vfio_device_feature_dma_logging_report",
  size: 32,
  fields: [
    fld("iova", 0, 8, "in", { fmt: "hex" }),
    fld("length", 8, 8, "in", { fmt: "hex" }),
    fld("page_size", 16, 8, "in", { fmt: "hex" }),
    fld("bitmap", 24, 8, "in", { kind: "ptr" }),
  ],
});

export const vfio_device_feature_mig_data_size = defineStruct({
  name: "vfio_device_feature_mig_data_size",
  size: 8,
  fields: [fld("stop_copy_length", 0, 8, "out", { fmt: "hex" })],
});

export const vfio_device_feature_bus_master = defineStruct({
  name: "vfio_device_feature_bus_master",
  size: 4,
  fields: [fld("op", 0, 4, "in", { kind: "enum", enumNames: { CLEAR_MASTER: 0n, SET_MASTER: 1n } })],
});

export const vfio_region_dma_range = defineStruct({
  name: "vfio_region_dma_range",
  size: 16,
  fields: [fld("offset", 0, 8, "in", { fmt: "hex" }), fld("length", 8, 8, "in", { fmt: "hex" })],
});

/** Header part; dma_ranges[] (vfio_region_dma_range) follow at 16. */
export const vfio_device_feature_dma_buf = defineStruct({
  name: "vfio_device_feature_dma_buf",
  size: 16,
  fields: [
    fld("region_index", 0, 4, "in"),
    fld("open_flags", 4, 4, "in", { fmt: "hex" }),
    fld("flags", 8, 4, "in", { kind: "flags", flags: {} }),
    fld("nr_ranges", 12, 4, "in"),
  ],
});

export const vfio_precopy_info = defineStruct({
  name: "vfio_precopy_info",
  size: 24,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: {} }),
    fld("initial_bytes", 8, 8, "out"),
    fld("dirty_bytes", 16, 8, "out"),
  ],
});

// Type1 container API.

export const vfio_iommu_type1_info = defineStruct({
  name: "vfio_iommu_type1_info",
  size: 24,
  fields: [
    argszInOut,
    fld("flags", 4, 4, "out", { kind: "flags", flags: { PGSIZES: 1n, CAPS: 2n } }),
    fld("iova_pgsizes", 8, 8, "out", { fmt: "hex" }),
    fld("cap_offset", 16, 4, "out"),
    fld("pad", 20, 4, "out", { kind: "reserved" }),
  ],
});

export const vfio_iova_range = defineStruct({
  name: "vfio_iova_range",
  size: 16,
  fields: [fld("start", 0, 8, "out", { fmt: "hex" }), fld("end", 8, 8, "out", { fmt: "hex" })],
});

/** Header part; iova_ranges[] (vfio_iova_range, inclusive end) follow at 16. */
export const vfio_iommu_type1_info_cap_iova_range = defineStruct({
  name: "vfio_iommu_type1_info_cap_iova_range",
  size: 16,
  fields: [...capHeader, fld("nr_iovas", 8, 4, "out"), fld("reserved", 12, 4, "out", { kind: "reserved" })],
});

export const vfio_iommu_type1_info_cap_migration = defineStruct({
  name: "vfio_iommu_type1_info_cap_migration",
  size: 32,
  fields: [
    ...capHeader,
    fld("flags", 8, 4, "out", { kind: "flags", flags: {} }),
    fld("pgsize_bitmap", 16, 8, "out", { fmt: "hex" }),
    fld("max_dirty_bitmap_size", 24, 8, "out"),
  ],
});

/** sizeof is 12; in a chain it occupies 16 (iommufd compat rounds caps up to 8). */
export const vfio_iommu_type1_info_dma_avail = defineStruct({
  name: "vfio_iommu_type1_info_dma_avail",
  size: 12,
  fields: [...capHeader, fld("avail", 8, 4, "out")],
});

export const vfio_iommu_type1_dma_map = defineStruct({
  name: "vfio_iommu_type1_dma_map",
  size: 32,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { READ: 1n, WRITE: 2n, VADDR: 4n } }),
    fld("vaddr", 8, 8, "in", { kind: "ptr" }),
    fld("iova", 16, 8, "in", { fmt: "hex" }),
    fld("size", 24, 8, "in", { fmt: "hex" }),
  ],
});

export const vfio_bitmap = defineStruct({
  name: "vfio_bitmap",
  size: 24,
  fields: [
    fld("pgsize", 0, 8, "in", { fmt: "hex" }),
    fld("size", 8, 8, "in", { fmt: "hex" }),
    fld("data", 16, 8, "in", { kind: "ptr" }),
  ],
});

/** Header part; a vfio_bitmap follows at 24 with GET_DIRTY_BITMAP. */
export const vfio_iommu_type1_dma_unmap = defineStruct({
  name: "vfio_iommu_type1_dma_unmap",
  size: 24,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { GET_DIRTY_BITMAP: 1n, ALL: 2n, VADDR: 4n } }),
    fld("iova", 8, 8, "in", { fmt: "hex" }),
    fld("size", 16, 8, "inout", { fmt: "hex" }),
  ],
});

/** Header part; data[] (vfio_iommu_type1_dirty_bitmap_get for GET_BITMAP) follows at 8. */
export const vfio_iommu_type1_dirty_bitmap = defineStruct({
  name: "vfio_iommu_type1_dirty_bitmap",
  size: 8,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: { START: 1n, STOP: 2n, GET_BITMAP: 4n } }),
  ],
});

export const vfio_iommu_type1_dirty_bitmap_get = defineStruct({
  name: "vfio_iommu_type1_dirty_bitmap_get",
  size: 40,
  fields: [
    fld("iova", 0, 8, "in", { fmt: "hex" }),
    fld("size", 8, 8, "in", { fmt: "hex" }),
    fld("bitmap.pgsize", 16, 8, "in", { fmt: "hex" }),
    fld("bitmap.size", 24, 8, "in", { fmt: "hex" }),
    fld("bitmap.data", 32, 8, "in", { kind: "ptr" }),
  ],
});

// sPAPR TCE container API (plain __u64: these offsets are for 64-bit ABIs).

export const vfio_iommu_spapr_tce_ddw_info = defineStruct({
  name: "vfio_iommu_spapr_tce_ddw_info",
  size: 16,
  fields: [
    fld("pgsizes", 0, 8, "out", { fmt: "hex" }),
    fld("max_dynamic_windows_supported", 8, 4, "out"),
    fld("levels", 12, 4, "out"),
  ],
});

export const vfio_iommu_spapr_tce_info = defineStruct({
  name: "vfio_iommu_spapr_tce_info",
  size: 32,
  fields: [
    argszIn,
    fld("flags", 4, 4, "out", { kind: "flags", flags: { DDW: 1n } }),
    fld("dma32_window_start", 8, 4, "out", { fmt: "hex" }),
    fld("dma32_window_size", 12, 4, "out", { fmt: "hex" }),
    fld("ddw.pgsizes", 16, 8, "out", { fmt: "hex" }),
    fld("ddw.max_dynamic_windows_supported", 24, 4, "out"),
    fld("ddw.levels", 28, 4, "out"),
  ],
});

const EEH_OPS = {
  DISABLE: 0n,
  ENABLE: 1n,
  UNFREEZE_IO: 2n,
  UNFREEZE_DMA: 3n,
  GET_STATE: 4n,
  RESET_DEACTIVATE: 5n,
  RESET_HOT: 6n,
  RESET_FUNDAMENTAL: 7n,
  CONFIGURE: 8n,
  INJECT_ERR: 9n,
};

export const vfio_eeh_pe_op = defineStruct({
  name: "vfio_eeh_pe_op",
  size: 40,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: {} }),
    fld("op", 8, 4, "in", { kind: "enum", enumNames: EEH_OPS }),
    // 4 bytes of padding at 12: the union holds u64s and is 8-aligned.
    fld("err.type", 16, 4, "in"),
    fld("err.func", 20, 4, "in"),
    fld("err.addr", 24, 8, "in", { fmt: "hex" }),
    fld("err.mask", 32, 8, "in", { fmt: "hex" }),
  ],
});

export const vfio_iommu_spapr_register_memory = defineStruct({
  name: "vfio_iommu_spapr_register_memory",
  size: 24,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: {} }),
    fld("vaddr", 8, 8, "in", { kind: "ptr" }),
    fld("size", 16, 8, "in", { fmt: "hex" }),
  ],
});

export const vfio_iommu_spapr_tce_create = defineStruct({
  name: "vfio_iommu_spapr_tce_create",
  size: 40,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: {} }),
    fld("page_shift", 8, 4, "in"),
    fld("__resv1", 12, 4, "in", { kind: "reserved" }),
    fld("window_size", 16, 8, "in", { fmt: "hex" }),
    fld("levels", 24, 4, "in"),
    fld("__resv2", 28, 4, "in", { kind: "reserved" }),
    fld("start_addr", 32, 8, "out", { fmt: "hex" }),
  ],
});

export const vfio_iommu_spapr_tce_remove = defineStruct({
  name: "vfio_iommu_spapr_tce_remove",
  size: 16,
  fields: [
    argszIn,
    fld("flags", 4, 4, "in", { kind: "flags", flags: {} }),
    fld("start_addr", 8, 8, "in", { fmt: "hex" }),
  ],
});

// --- the command table -----------------------------------------------------

/** Which kind of fd a VFIO command is defined on. */
export type VfioFdKind = "container" | "group" | "device" | "migration";
/** For container commands: which IOMMU backend serves them. */
export type VfioBackend = "any" | "type1" | "spapr";

/**
 * How the ioctl argument is used.
 * - struct: pointer to `struct` (argsz first)
 * - value: the extension / IOMMU type by value (CHECK_EXTENSION, SET_IOMMU)
 * - none: no argument
 * - s32ptr: pointer to an __s32 fd (GROUP_SET_CONTAINER)
 * - string: pointer to a NUL-terminated device name, at most PAGE_SIZE (GROUP_GET_DEVICE_FD)
 * - u32ptr: pointer to a __u32 (GET_GFX_DMABUF's dmabuf_id)
 */
export type VfioArg = "struct" | "value" | "none" | "s32ptr" | "string" | "u32ptr";

export interface VfioIoctlDef {
  name: string;
  /** VFIO_BASE + n */
  nr: number;
  request: number;
  fd: VfioFdKind;
  backend?: VfioBackend;
  arg: VfioArg;
  struct?: StructDef;
  /** The handler's minsz end field. */
  lastField?: string;
  /** offsetofend(struct, lastField): argsz below this is EINVAL. */
  minsz?: number;
  /** Where the minsz comes from, when it is not verified in kernel source. */
  note?: string;
}

interface VRow<D extends StructDef = StructDef> {
  name: string;
  n: number;
  fd: VfioFdKind;
  backend?: VfioBackend;
  arg: VfioArg;
  struct?: D;
  /** Must be a field of `struct` (checked by the compiler through `vrow`). */
  last?: FieldName<D>;
  note?: string;
}

function vrow<D extends StructDef>(r: VRow<D>): VRow {
  return r;
}

const MINSZ_FROM_MEMORY = "minsz UNVERIFIED (driver source not read; from kernel history as we know it)";

const VROWS: VRow[] = [
  vrow({ name: "VFIO_GET_API_VERSION", n: 0, fd: "container", arg: "none" }),
  vrow({ name: "VFIO_CHECK_EXTENSION", n: 1, fd: "container", arg: "value" }),
  vrow({ name: "VFIO_SET_IOMMU", n: 2, fd: "container", arg: "value" }),
  vrow({
    name: "VFIO_GROUP_GET_STATUS",
    n: 3,
    fd: "group",
    arg: "struct",
    struct: vfio_group_status,
    last: "flags",
  }),
  vrow({ name: "VFIO_GROUP_SET_CONTAINER", n: 4, fd: "group", arg: "s32ptr" }),
  vrow({ name: "VFIO_GROUP_UNSET_CONTAINER", n: 5, fd: "group", arg: "none" }),
  vrow({ name: "VFIO_GROUP_GET_DEVICE_FD", n: 6, fd: "group", arg: "string" }),
  vrow({
    name: "VFIO_DEVICE_GET_INFO",
    n: 7,
    fd: "device",
    arg: "struct",
    struct: vfio_device_info,
    last: "num_irqs",
  }),
  vrow({
    name: "VFIO_DEVICE_GET_REGION_INFO",
    n: 8,
    fd: "device",
    arg: "struct",
    struct: vfio_region_info,
    last: "offset",
  }),
  vrow({
    name: "VFIO_DEVICE_GET_IRQ_INFO",
    n: 9,
    fd: "device",
    arg: "struct",
    struct: vfio_irq_info,
    last: "count",
  }),
  vrow({
    name: "VFIO_DEVICE_SET_IRQS",
    n: 10,
    fd: "device",
    arg: "struct",
    struct: vfio_irq_set,
    last: "count",
  }),
  vrow({ name: "VFIO_DEVICE_RESET", n: 11, fd: "device", arg: "none" }),
  vrow({
    name: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    n: 12,
    fd: "device",
    arg: "struct",
    struct: vfio_pci_hot_reset_info,
    last: "count",
    // minsz 12 confirmed in vfio_pci_core.c.
  }),
  vrow({
    name: "VFIO_DEVICE_PCI_HOT_RESET",
    n: 13,
    fd: "device",
    arg: "struct",
    struct: vfio_pci_hot_reset,
    last: "count",
    // minsz 12 confirmed in vfio_pci_core.c.
  }),
  vrow({
    name: "VFIO_DEVICE_QUERY_GFX_PLANE",
    n: 14,
    fd: "device",
    arg: "struct",
    struct: vfio_device_gfx_plane_info,
    last: "dmabuf_id",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({ name: "VFIO_DEVICE_GET_GFX_DMABUF", n: 15, fd: "device", arg: "u32ptr" }),
  vrow({
    name: "VFIO_DEVICE_IOEVENTFD",
    n: 16,
    fd: "device",
    arg: "struct",
    struct: vfio_device_ioeventfd,
    last: "fd",
  }),
  vrow({
    name: "VFIO_DEVICE_FEATURE",
    n: 17,
    fd: "device",
    arg: "struct",
    struct: vfio_device_feature,
    last: "flags",
  }),
  vrow({
    name: "VFIO_DEVICE_BIND_IOMMUFD",
    n: 18,
    fd: "device",
    arg: "struct",
    struct: vfio_device_bind_iommufd,
    last: "out_devid",
  }),
  vrow({
    name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    n: 19,
    fd: "device",
    arg: "struct",
    struct: vfio_device_attach_iommufd_pt,
    last: "pt_id",
  }),
  vrow({
    name: "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    n: 20,
    fd: "device",
    arg: "struct",
    struct: vfio_device_detach_iommufd_pt,
    last: "flags",
  }),
  vrow({
    name: "VFIO_MIG_GET_PRECOPY_INFO",
    n: 21,
    fd: "migration",
    arg: "struct",
    struct: vfio_precopy_info,
    last: "dirty_bytes",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_IOMMU_GET_INFO",
    n: 12,
    fd: "container",
    backend: "type1",
    arg: "struct",
    struct: vfio_iommu_type1_info,
    last: "iova_pgsizes",
  }),
  vrow({
    name: "VFIO_IOMMU_MAP_DMA",
    n: 13,
    fd: "container",
    backend: "any",
    arg: "struct",
    struct: vfio_iommu_type1_dma_map,
    last: "size",
  }),
  vrow({
    name: "VFIO_IOMMU_UNMAP_DMA",
    n: 14,
    fd: "container",
    backend: "any",
    arg: "struct",
    struct: vfio_iommu_type1_dma_unmap,
    last: "size",
  }),
  vrow({ name: "VFIO_IOMMU_ENABLE", n: 15, fd: "container", backend: "spapr", arg: "none" }),
  vrow({ name: "VFIO_IOMMU_DISABLE", n: 16, fd: "container", backend: "spapr", arg: "none" }),
  vrow({
    name: "VFIO_IOMMU_DIRTY_PAGES",
    n: 17,
    fd: "container",
    backend: "type1",
    arg: "struct",
    struct: vfio_iommu_type1_dirty_bitmap,
    last: "flags",
  }),
  vrow({
    name: "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
    n: 12,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_iommu_spapr_tce_info,
    last: "dma32_window_size",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
    n: 17,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_iommu_spapr_register_memory,
    last: "size",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
    n: 18,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_iommu_spapr_register_memory,
    last: "size",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_IOMMU_SPAPR_TCE_CREATE",
    n: 19,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_iommu_spapr_tce_create,
    last: "start_addr",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_IOMMU_SPAPR_TCE_REMOVE",
    n: 20,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_iommu_spapr_tce_remove,
    last: "start_addr",
    note: MINSZ_FROM_MEMORY,
  }),
  vrow({
    name: "VFIO_EEH_PE_OP",
    n: 21,
    fd: "container",
    backend: "spapr",
    arg: "struct",
    struct: vfio_eeh_pe_op,
    last: "op",
    note: MINSZ_FROM_MEMORY,
  }),
];

function vdef(r: VRow, struct: StructDef | undefined): VfioIoctlDef {
  const d: VfioIoctlDef = { name: r.name, nr: VFIO_BASE + r.n, request: vio(r.n), fd: r.fd, arg: r.arg };
  if (r.backend) d.backend = r.backend;
  if (struct) d.struct = struct;
  if (struct && r.last) {
    d.lastField = r.last;
    d.minsz = offsetOfEnd(struct, r.last);
  }
  if (r.note) d.note = r.note;
  return d;
}

/** Every VFIO command (newest profile). Several share a request; see the header comment. */
export const VFIO_IOCTLS: readonly VfioIoctlDef[] = VROWS.map((r) => vdef(r, r.struct));

const byProfile = new Map<KernelProfile, VfioIoctlDef[]>();
function vfioTable(profile: KernelProfile): VfioIoctlDef[] {
  let t = byProfile.get(profile);
  if (!t) {
    t = VROWS.map((r) => vdef(r, r.struct && structForProfile(r.struct, profile)));
    byProfile.set(profile, t);
  }
  return t;
}

/** All commands sharing this request number (1 or 2 or 3 of them). */
export function vfioIoctlsByRequest(request: number, profile: KernelProfile = "latest"): VfioIoctlDef[] {
  const req = request >>> 0;
  return vfioTable(profile).filter((d) => d.request === req);
}

/**
 * The command `request` means on this kind of fd. For a container, `backend`
 * picks between type1 and sPAPR meanings of a shared number (default type1).
 */
export function vfioIoctlFor(
  request: number,
  fd: VfioFdKind,
  backend: Exclude<VfioBackend, "any"> = "type1",
  profile: KernelProfile = "latest",
): VfioIoctlDef | undefined {
  return vfioIoctlsByRequest(request, profile).find(
    (d) => d.fd === fd && (fd !== "container" || !d.backend || d.backend === "any" || d.backend === backend),
  );
}

export function vfioIoctlByName(name: string, profile: KernelProfile = "latest"): VfioIoctlDef | undefined {
  return vfioTable(profile).find((d) => d.name === name);
}

/** True when `request` is a VFIO number (type ';', nr 100..121). */
export function isVfioRequest(request: number): boolean {
  const req = request >>> 0;
  const nr = _IOC_NR(req);
  return req === _IO(VFIO_TYPE, nr) && nr >= VFIO_BASE && nr <= VFIO_BASE + 21;
}

// --- capability chains (uapi.md §4.1) ----------------------------------------

export interface VfioCap {
  id: number;
  version: number;
  /** Bytes after the 8-byte header. */
  payload: Uint8Array;
}

/**
 * Lay out a capability chain to sit right after a fixed struct of
 * `fixedSize` bytes: each record is header + payload, padded to `align`
 * (8 as current kernels do); `next` is the offset of the following record from
 * the start of the info buffer, 0 for the last. Returns the chain bytes (to be
 * copied at offset fixedSize) and the offset of the first record.
 */
export function encodeCapChain(
  fixedSize: number,
  caps: readonly VfioCap[],
  align = 8,
): { bytes: Uint8Array; firstOffset: number } {
  const sizes = caps.map((c) => Math.ceil((8 + c.payload.length) / align) * align);
  const total = sizes.reduce((a, b) => a + b, 0);
  const bytes = new Uint8Array(total);
  const dv = new DataView(bytes.buffer);
  let at = 0;
  caps.forEach((c, i) => {
    const next = i + 1 < caps.length ? fixedSize + at + sizes[i] : 0;
    dv.setUint16(at, c.id, true);
    dv.setUint16(at + 2, c.version, true);
    dv.setUint32(at + 4, next, true);
    bytes.set(c.payload, at + 8);
    at += sizes[i];
  });
  return { bytes, firstOffset: caps.length ? fixedSize : 0 };
}

export interface DecodedCap {
  id: number;
  version: number;
  /** Offset of the header in the info buffer. */
  offset: number;
  next: number;
}

/**
 * Walk a chain in a whole info buffer starting at `capOffset` (0 = none).
 * Stops at next = 0; a record outside the buffer or a loop ends the walk
 * with `error` set.
 */
export function decodeCapChain(info: Uint8Array, capOffset: number): { caps: DecodedCap[]; error?: string } {
  const caps: DecodedCap[] = [];
  const seen = new Set<number>();
  const dv = new DataView(info.buffer, info.byteOffset, info.byteLength);
  let off = capOffset;
  while (off !== 0) {
    if (off + 8 > info.length)
      return { caps, error: `cap at ${off} runs past the ${info.length}-byte buffer` };
    if (seen.has(off)) return { caps, error: `cap chain loops at ${off}` };
    seen.add(off);
    const cap = { id: dv.getUint16(off, true), version: dv.getUint16(off + 2, true), offset: off, next: 0 };
    cap.next = dv.getUint32(off + 4, true);
    caps.push(cap);
    off = cap.next;
  }
  return { caps };
}

/** VFIO_DEVICE_FEATURE core checks (uapi.md §4.5): EINVAL or 0. */
export function vfioFeatureFlagsCheck(
  flags: number,
): { ok: true } | { ok: false; errno: number; reason: string } {
  const known =
    VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
  if ((flags >>> 0) & ~known)
    return { ok: false, errno: EINVAL, reason: "unknown VFIO_DEVICE_FEATURE flag bits" };
  const get = (flags & VFIO_DEVICE_FEATURE_GET) !== 0;
  const set = (flags & VFIO_DEVICE_FEATURE_SET) !== 0;
  if (get && set && !(flags & VFIO_DEVICE_FEATURE_PROBE)) {
    return { ok: false, errno: EINVAL, reason: "GET and SET together without PROBE" };
  }
  return { ok: true };
}
