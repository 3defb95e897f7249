import { describe, expect, it } from "vitest";
import { checkStructDef, decode, offsetOf, type StructDef } from "../../src/uapi/struct.js";
import * as V from "../../src/uapi/vfio.js";
import {
  decodeCapChain,
  encodeCapChain,
  isVfioRequest,
  VFIO_IOCTLS,
  vfioFeatureFlagsCheck,
  vfioIoctlByName,
  vfioIoctlFor,
  vfioIoctlsByRequest,
} from "../../src/uapi/vfio.js";

const R = V as unknown as Record<string, number>;

// uapi.md §1.2, row by row: BASE+n, request hex, request dec, and the commands
// on the container, group and device fds.
const TABLE_1_2: [number, number, number, string[], string[], string[]][] = [
  [0, 0x3b64, 15204, ["VFIO_GET_API_VERSION"], [], []],
  [1, 0x3b65, 15205, ["VFIO_CHECK_EXTENSION"], [], []],
  [2, 0x3b66, 15206, ["VFIO_SET_IOMMU"], [], []],
  [3, 0x3b67, 15207, [], ["VFIO_GROUP_GET_STATUS"], []],
  [4, 0x3b68, 15208, [], ["VFIO_GROUP_SET_CONTAINER"], []],
  [5, 0x3b69, 15209, [], ["VFIO_GROUP_UNSET_CONTAINER"], []],
  [6, 0x3b6a, 15210, [], ["VFIO_GROUP_GET_DEVICE_FD"], []],
  [7, 0x3b6b, 15211, [], [], ["VFIO_DEVICE_GET_INFO"]],
  [8, 0x3b6c, 15212, [], [], ["VFIO_DEVICE_GET_REGION_INFO"]],
  [9, 0x3b6d, 15213, [], [], ["VFIO_DEVICE_GET_IRQ_INFO"]],
  [10, 0x3b6e, 15214, [], [], ["VFIO_DEVICE_SET_IRQS"]],
  [11, 0x3b6f, 15215, [], [], ["VFIO_DEVICE_RESET"]],
  [
    12,
    0x3b70,
    15216,
    ["VFIO_IOMMU_GET_INFO", "VFIO_IOMMU_SPAPR_TCE_GET_INFO"],
    [],
    ["VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"],
  ],
  [13, 0x3b71, 15217, ["VFIO_IOMMU_MAP_DMA"], [], ["VFIO_DEVICE_PCI_HOT_RESET"]],
  [14, 0x3b72, 15218, ["VFIO_IOMMU_UNMAP_DMA"], [], ["VFIO_DEVICE_QUERY_GFX_PLANE"]],
  [15, 0x3b73, 15219, ["VFIO_IOMMU_ENABLE"], [], ["VFIO_DEVICE_GET_GFX_DMABUF"]],
  [16, 0x3b74, 15220, ["VFIO_IOMMU_DISABLE"], [], ["VFIO_DEVICE_IOEVENTFD"]],
  [
    17,
    0x3b75,
    15221,
    ["VFIO_IOMMU_DIRTY_PAGES", "VFIO_IOMMU_SPAPR_REGISTER_MEMORY"],
    [],
    ["VFIO_DEVICE_FEATURE"],
  ],
  [18, 0x3b76, 15222, ["VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY"], [], ["VFIO_DEVICE_BIND_IOMMUFD"]],
  [19, 0x3b77, 15223, ["VFIO_IOMMU_SPAPR_TCE_CREATE"], [], ["VFIO_DEVICE_ATTACH_IOMMUFD_PT"]],
  [20, 0x3b78, 15224, ["VFIO_IOMMU_SPAPR_TCE_REMOVE"], [], ["VFIO_DEVICE_DETACH_IOMMUFD_PT"]],
  [21, 0x3b79, 15225, ["VFIO_EEH_PE_OP"], [], []],
];

describe("VFIO request numbers (uapi.md §1.2)", () => {
  for (const [n, hex, dec, container, group, device] of TABLE_1_2) {
    it(`VFIO_BASE+${n} = 0x${hex.toString(16)}`, () => {
      expect(hex).toBe(dec);
      for (const name of [...container, ...group, ...device]) expect(R[name], name).toBe(hex);
      const byFd = (fd: V.VfioFdKind) =>
        vfioIoctlsByRequest(hex)
          .filter((d) => d.fd === fd)
          .map((d) => d.name)
          .sort();
      expect(byFd("container")).toEqual([...container].sort());
      expect(byFd("group")).toEqual(group);
      expect(byFd("device")).toEqual(device);
    });
  }

  it("VFIO_MIG_GET_PRECOPY_INFO is BASE+21 on the migration data fd", () => {
    expect(V.VFIO_MIG_GET_PRECOPY_INFO).toBe(0x3b79);
    expect(vfioIoctlFor(0x3b79, "migration")?.name).toBe("VFIO_MIG_GET_PRECOPY_INFO");
  });

  it("colliding names share values", () => {
    expect(V.VFIO_DEVICE_BIND_IOMMUFD).toBe(V.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY);
    expect(V.VFIO_DEVICE_ATTACH_IOMMUFD_PT).toBe(V.VFIO_IOMMU_SPAPR_TCE_CREATE);
    expect(V.VFIO_DEVICE_DETACH_IOMMUFD_PT).toBe(V.VFIO_IOMMU_SPAPR_TCE_REMOVE);
    expect(V.VFIO_DEVICE_FEATURE).toBe(V.VFIO_IOMMU_DIRTY_PAGES);
    expect(V.VFIO_IOMMU_GET_INFO).toBe(V.VFIO_IOMMU_SPAPR_TCE_GET_INFO);
  });

  it("decoding needs the fd kind (and the container backend)", () => {
    expect(vfioIoctlFor(0x3b76, "device")?.name).toBe("VFIO_DEVICE_BIND_IOMMUFD");
    expect(vfioIoctlFor(0x3b76, "container", "spapr")?.name).toBe("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY");
    expect(vfioIoctlFor(0x3b76, "container", "type1")).toBeUndefined();
    expect(vfioIoctlFor(0x3b75, "container", "type1")?.name).toBe("VFIO_IOMMU_DIRTY_PAGES");
    expect(vfioIoctlFor(0x3b75, "container", "spapr")?.name).toBe("VFIO_IOMMU_SPAPR_REGISTER_MEMORY");
    expect(vfioIoctlFor(0x3b70, "container")?.name).toBe("VFIO_IOMMU_GET_INFO");
    expect(vfioIoctlFor(0x3b70, "container", "spapr")?.name).toBe("VFIO_IOMMU_SPAPR_TCE_GET_INFO");
    expect(vfioIoctlFor(0x3b71, "container", "spapr")?.name).toBe("VFIO_IOMMU_MAP_DMA");
    expect(vfioIoctlFor(0x3b64, "group")).toBeUndefined();
    expect(vfioIoctlFor(0x3b64, "container")?.arg).toBe("none");
    expect(vfioIoctlFor(0x3b65, "container")?.arg).toBe("value");
    expect(vfioIoctlFor(0x3b68, "group")?.arg).toBe("s32ptr");
    expect(vfioIoctlFor(0x3b6a, "group")?.arg).toBe("string");
  });

  it("isVfioRequest", () => {
    expect(isVfioRequest(0x3b64)).toBe(true);
    expect(isVfioRequest(0x3b79)).toBe(true);
    expect(isVfioRequest(0x3b7a)).toBe(false);
    expect(isVfioRequest(0x3b85)).toBe(false);
    expect(isVfioRequest(0x40043b64)).toBe(false);
  });
});

describe("VFIO extension constants (uapi.md §1.3)", () => {
  it("values", () => {
    expect([
      V.VFIO_TYPE1_IOMMU,
      V.VFIO_SPAPR_TCE_IOMMU,
      V.VFIO_TYPE1v2_IOMMU,
      V.VFIO_DMA_CC_IOMMU,
      V.VFIO_EEH,
      V.__VFIO_RESERVED_TYPE1_NESTING_IOMMU,
      V.VFIO_SPAPR_TCE_v2_IOMMU,
      V.VFIO_NOIOMMU_IOMMU,
      V.VFIO_UNMAP_ALL,
      V.VFIO_UPDATE_VADDR,
    ]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(V.VFIO_API_VERSION).toBe(0);
    expect(V.VFIO_EXTENSION_NAMES[8]).toBe("VFIO_NOIOMMU_IOMMU");
  });
});

describe("VFIO minsz (uapi.md §4)", () => {
  const MINSZ: [string, number, number][] = [
    ["VFIO_GROUP_GET_STATUS", 8, 8],
    ["VFIO_DEVICE_GET_INFO", 24, 16],
    ["VFIO_DEVICE_GET_REGION_INFO", 32, 32],
    ["VFIO_DEVICE_GET_IRQ_INFO", 16, 16],
    ["VFIO_DEVICE_SET_IRQS", 20, 20],
    ["VFIO_DEVICE_FEATURE", 8, 8],
    ["VFIO_DEVICE_BIND_IOMMUFD", 24, 16],
    ["VFIO_DEVICE_ATTACH_IOMMUFD_PT", 16, 12],
    ["VFIO_DEVICE_DETACH_IOMMUFD_PT", 12, 8],
    ["VFIO_DEVICE_IOEVENTFD", 32, 28],
    ["VFIO_IOMMU_GET_INFO", 24, 16],
    ["VFIO_IOMMU_MAP_DMA", 32, 32],
    ["VFIO_IOMMU_UNMAP_DMA", 24, 24],
  ];
  for (const [name, size, minsz] of MINSZ) {
    it(`${name}: sizeof ${size}, minsz ${minsz}`, () => {
      const d = vfioIoctlByName(name)!;
      expect(d.struct?.size).toBe(size);
      expect(d.minsz).toBe(minsz);
    });
  }
  it("SPAPR struct sizes (uapi.md §4.7)", () => {
    expect(V.vfio_iommu_spapr_tce_info.size).toBe(32);
    expect(V.vfio_iommu_spapr_register_memory.size).toBe(24);
    expect(V.vfio_iommu_spapr_tce_create.size).toBe(40);
    expect(V.vfio_iommu_spapr_tce_remove.size).toBe(16);
    expect(V.vfio_eeh_pe_op.size).toBe(40);
    expect(offsetOf(V.vfio_eeh_pe_op, "err.type")).toBe(16);
    expect(offsetOf(V.vfio_eeh_pe_op, "err.mask")).toBe(32);
    expect(offsetOf(V.vfio_iommu_spapr_tce_create, "window_size")).toBe(16);
    expect(offsetOf(V.vfio_iommu_spapr_tce_create, "start_addr")).toBe(32);
    expect(offsetOf(V.vfio_iommu_spapr_tce_info, "ddw.levels")).toBe(28);
  });
  it("every struct table is a sound C layout", () => {
    const defs = (Object.values(V) as unknown[]).filter(
      (v): v is StructDef => typeof v === "object" && v !== null && "fields" in v && "size" in v,
    );
    expect(defs.length).toBeGreaterThan(40);
    for (const def of defs) expect(checkStructDef(def), def.name).toEqual([]);
  });
  it("every struct command has a minsz inside its struct", () => {
    for (const d of VFIO_IOCTLS) {
      if (d.arg !== "struct") continue;
      expect(d.minsz, d.name).toBeGreaterThanOrEqual(8);
      expect(d.minsz!, d.name).toBeLessThanOrEqual(d.struct!.size);
    }
  });
});

describe("VFIO flags and indexes", () => {
  it("device flags", () => {
    expect(V.VFIO_DEVICE_FLAGS_RESET).toBe(1);
    expect(V.VFIO_DEVICE_FLAGS_PCI).toBe(2);
    expect(V.VFIO_DEVICE_FLAGS_CAPS).toBe(0x80);
    expect(V.VFIO_DEVICE_FLAGS_CDX).toBe(0x100);
    expect([V.VFIO_GROUP_FLAGS_VIABLE, V.VFIO_GROUP_FLAGS_CONTAINER_SET]).toEqual([1, 2]);
  });
  it("IRQ set flags and masks", () => {
    expect(V.VFIO_IRQ_SET_DATA_TYPE_MASK).toBe(0x7);
    expect(V.VFIO_IRQ_SET_ACTION_TYPE_MASK).toBe(0x38);
    expect(V.VFIO_IRQ_SET_ACTION_TRIGGER).toBe(0x20);
  });
  it("PCI region and IRQ indexes", () => {
    expect(V.VFIO_PCI_CONFIG_REGION_INDEX).toBe(7);
    expect(V.VFIO_PCI_VGA_REGION_INDEX).toBe(8);
    expect(V.VFIO_PCI_NUM_REGIONS).toBe(9);
    expect(V.VFIO_PCI_MSIX_IRQ_INDEX).toBe(2);
    expect(V.VFIO_PCI_NUM_IRQS).toBe(5);
  });
  it("region offset encoding is index << 40", () => {
    expect(V.VFIO_PCI_INDEX_TO_OFFSET(7)).toBe(0x70000000000n);
    expect(V.VFIO_PCI_OFFSET_TO_INDEX(0x70000000123n)).toBe(7);
    expect(V.VFIO_PCI_OFFSET_MASK).toBe(0xffffffffffn);
  });
  it("caps, features, dma map", () => {
    expect([
      V.VFIO_REGION_INFO_CAP_SPARSE_MMAP,
      V.VFIO_REGION_INFO_CAP_TYPE,
      V.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
    ]).toEqual([1, 2, 3]);
    expect([
      V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
      V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
      V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
    ]).toEqual([1, 2, 3]);
    expect(V.VFIO_DEVICE_FEATURE_GET).toBe(0x10000);
    expect(V.VFIO_DEVICE_FEATURE_DMA_BUF).toBe(11);
    expect(V.VFIO_DMA_UNMAP_FLAG_ALL).toBe(2);
    expect(V.VFIO_REGION_TYPE_PCI_VENDOR_TYPE).toBe(0x80000000);
  });
  it("feature flag checks", () => {
    expect(vfioFeatureFlagsCheck(V.VFIO_DEVICE_FEATURE_GET | 1)).toEqual({ ok: true });
    expect(vfioFeatureFlagsCheck(V.VFIO_DEVICE_FEATURE_GET | V.VFIO_DEVICE_FEATURE_SET)).toMatchObject({
      ok: false,
      errno: 22,
    });
    expect(
      vfioFeatureFlagsCheck(
        V.VFIO_DEVICE_FEATURE_GET | V.VFIO_DEVICE_FEATURE_SET | V.VFIO_DEVICE_FEATURE_PROBE,
      ),
    ).toEqual({ ok: true });
    expect(vfioFeatureFlagsCheck(1 << 19)).toMatchObject({ ok: false, errno: 22 });
    expect(vfioFeatureFlagsCheck(0x80000000)).toMatchObject({ ok: false, errno: 22 });
  });
});

describe("capability chains", () => {
  it("type1 GET_INFO layout through iommufd compat: DMA_AVAIL then one IOVA range", () => {
    const avail = new Uint8Array(4);
    new DataView(avail.buffer).setUint32(0, 0xffffffff, true);
    const iova = new Uint8Array(8 + 16);
    const dv = new DataView(iova.buffer);
    dv.setUint32(0, 1, true);
    dv.setBigUint64(8, 0n, true);
    dv.setBigUint64(16, 0xffffffffffffffffn, true);
    const chain = encodeCapChain(24, [
      { id: V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, payload: avail },
      { id: V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1, payload: iova },
    ]);
    // required argsz = 24 + 16 + 16 + 16*n (uapi.md §4.6)
    expect(24 + chain.bytes.length).toBe(24 + 16 + 16 + 16);
    expect(chain.firstOffset).toBe(24);
    const info = new Uint8Array(24 + chain.bytes.length);
    info.set(chain.bytes, 24);
    const walked = decodeCapChain(info, 24);
    expect(walked.error).toBeUndefined();
    expect(walked.caps.map((c) => [c.id, c.version, c.offset, c.next])).toEqual([
      [3, 1, 24, 40],
      [1, 1, 40, 0],
    ]);
    const hdr = decode(V.vfio_iommu_type1_info_cap_iova_range, info.subarray(40));
    expect(hdr.nr_iovas).toBe(1n);
  });
  it("empty chains and broken chains", () => {
    expect(encodeCapChain(32, [])).toEqual({ bytes: new Uint8Array(0), firstOffset: 0 });
    expect(decodeCapChain(new Uint8Array(32), 0)).toEqual({ caps: [] });
    const loop = new Uint8Array(16);
    new DataView(loop.buffer).setUint32(12, 8, true);
    expect(decodeCapChain(loop, 8).error).toMatch(/loops/);
    expect(decodeCapChain(new Uint8Array(16), 12).error).toMatch(/past/);
  });
});

describe("profiles", () => {
  it("6.12 does not know BIND_FLAG_TOKEN", () => {
    const d = vfioIoctlByName("VFIO_DEVICE_BIND_IOMMUFD", "6.12")!;
    expect(d.struct!.fields.find((f) => f.name === "flags")!.flags).toEqual({});
    const latest = vfioIoctlByName("VFIO_DEVICE_BIND_IOMMUFD", "latest")!;
    expect(latest.struct!.fields.find((f) => f.name === "flags")!.flags).toEqual({ TOKEN: 1n });
  });
});
