import { describe, expect, it } from "vitest";
import * as I from "../../src/uapi/iommufd.js";
import {
  IOMMUFD_IOCTLS,
  iommufdIoctlByName,
  iommufdIoctlByNr,
  iommufdIoctlByRequest,
  iommufdIoctls,
  iommufdRoute,
  iommufdTableSize,
} from "../../src/uapi/iommufd.js";
import { IOMMUFD_CMD_SINCE, KERNEL_PROFILES } from "../../src/uapi/profiles.js";
import { checkStructDef, offsetOf, type StructDef } from "../../src/uapi/struct.js";

// uapi.md §1.1, row by row: name, nr, request hex, request decimal.
const TABLE_1_1: [string, number, number, number][] = [
  ["IOMMU_DESTROY", 0x80, 0x3b80, 15232],
  ["IOMMU_IOAS_ALLOC", 0x81, 0x3b81, 15233],
  ["IOMMU_IOAS_ALLOW_IOVAS", 0x82, 0x3b82, 15234],
  ["IOMMU_IOAS_COPY", 0x83, 0x3b83, 15235],
  ["IOMMU_IOAS_IOVA_RANGES", 0x84, 0x3b84, 15236],
  ["IOMMU_IOAS_MAP", 0x85, 0x3b85, 15237],
  ["IOMMU_IOAS_UNMAP", 0x86, 0x3b86, 15238],
  ["IOMMU_OPTION", 0x87, 0x3b87, 15239],
  ["IOMMU_VFIO_IOAS", 0x88, 0x3b88, 15240],
  ["IOMMU_HWPT_ALLOC", 0x89, 0x3b89, 15241],
  ["IOMMU_GET_HW_INFO", 0x8a, 0x3b8a, 15242],
  ["IOMMU_HWPT_SET_DIRTY_TRACKING", 0x8b, 0x3b8b, 15243],
  ["IOMMU_HWPT_GET_DIRTY_BITMAP", 0x8c, 0x3b8c, 15244],
  ["IOMMU_HWPT_INVALIDATE", 0x8d, 0x3b8d, 15245],
  ["IOMMU_FAULT_QUEUE_ALLOC", 0x8e, 0x3b8e, 15246],
  ["IOMMU_IOAS_MAP_FILE", 0x8f, 0x3b8f, 15247],
  ["IOMMU_VIOMMU_ALLOC", 0x90, 0x3b90, 15248],
  ["IOMMU_VDEVICE_ALLOC", 0x91, 0x3b91, 15249],
  ["IOMMU_IOAS_CHANGE_PROCESS", 0x92, 0x3b92, 15250],
  ["IOMMU_VEVENTQ_ALLOC", 0x93, 0x3b93, 15251],
  ["IOMMU_HW_QUEUE_ALLOC", 0x94, 0x3b94, 15252],
  ["IOMMU_IOAS_GET_PA", 0x95, 0x3b95, 15253],
  ["IOMMU_IOAS_NOIOMMU_GET_PA", 0x95, 0x3b95, 15253],
  ["IOMMU_TEST_CMD", 0xa0, 0x3ba0, 15264],
];

// uapi.md §2.1: kernel struct size and min_size.
const TABLE_2_1: [string, number, number][] = [
  ["IOMMU_DESTROY", 8, 8],
  ["IOMMU_FAULT_QUEUE_ALLOC", 16, 16],
  ["IOMMU_GET_HW_INFO", 40, 32],
  ["IOMMU_HW_QUEUE_ALLOC", 40, 40],
  ["IOMMU_HWPT_ALLOC", 48, 24],
  ["IOMMU_HWPT_GET_DIRTY_BITMAP", 48, 48],
  ["IOMMU_HWPT_INVALIDATE", 32, 32],
  ["IOMMU_HWPT_SET_DIRTY_TRACKING", 16, 16],
  ["IOMMU_IOAS_ALLOC", 12, 12],
  ["IOMMU_IOAS_ALLOW_IOVAS", 24, 24],
  ["IOMMU_IOAS_CHANGE_PROCESS", 8, 8],
  ["IOMMU_IOAS_COPY", 40, 40],
  ["IOMMU_IOAS_IOVA_RANGES", 32, 32],
  ["IOMMU_IOAS_MAP", 40, 40],
  ["IOMMU_IOAS_MAP_FILE", 40, 40],
  ["IOMMU_IOAS_UNMAP", 24, 24],
  ["IOMMU_OPTION", 24, 24],
  ["IOMMU_VDEVICE_ALLOC", 24, 24],
  ["IOMMU_VEVENTQ_ALLOC", 32, 28],
  ["IOMMU_VFIO_IOAS", 12, 12],
  ["IOMMU_VIOMMU_ALLOC", 40, 24],
  // Not in the sheet's verified rows: the series' own IOCTL_OP uses out_phys.
  ["IOMMU_IOAS_NOIOMMU_GET_PA", 40, 40],
];

describe("iommufd request numbers (uapi.md §1.1)", () => {
  for (const [name, nr, hex, dec] of TABLE_1_1) {
    it(`${name} = 0x${hex.toString(16)}`, () => {
      const value = (I as unknown as Record<string, number>)[name];
      expect(value).toBe(hex);
      expect(value).toBe(dec);
      expect(value & 0xff).toBe(nr);
    });
  }

  it("GET_PA has both names on one request", () => {
    expect(I.IOMMU_IOAS_GET_PA).toBe(I.IOMMU_IOAS_NOIOMMU_GET_PA);
    expect(I.IOMMUFD_CMD_IOAS_GET_PA).toBe(0x95);
    expect(iommufdIoctlByName("IOMMU_IOAS_GET_PA")?.name).toBe("IOMMU_IOAS_NOIOMMU_GET_PA");
  });

  it("the table row of every command carries the matching request", () => {
    for (const d of IOMMUFD_IOCTLS) {
      expect((I as unknown as Record<string, number>)[d.name]).toBe(d.request);
      expect(d.request).toBe(0x3b00 | d.nr);
    }
  });
});

describe("iommufd struct sizes and min_size (uapi.md §2.1)", () => {
  for (const [name, size, min] of TABLE_2_1) {
    it(`${name}: sizeof ${size}, min_size ${min}`, () => {
      const d = iommufdIoctlByName(name)!;
      expect(d.struct.size).toBe(size);
      expect(d.minSize).toBe(min);
    });
  }

  it("every command is in the min-size table", () => {
    expect(IOMMUFD_IOCTLS.map((d) => d.name).sort()).toEqual(TABLE_2_1.map((r) => r[0]).sort());
  });
});

describe("struct tables are sound C layouts", () => {
  const defs = (Object.values(I) as unknown[]).filter(
    (v: unknown): v is StructDef => typeof v === "object" && v !== null && "fields" in v && "size" in v,
  );
  it("found the struct tables", () => {
    expect(defs.length).toBeGreaterThan(30);
  });
  for (const def of defs) {
    it(def.name, () => expect(checkStructDef(def)).toEqual([]));
  }
  it("every profile's struct variant is sound", () => {
    for (const p of KERNEL_PROFILES)
      for (const d of iommufdIoctls(p)) expect(checkStructDef(d.struct)).toEqual([]);
  });
});

describe("field offsets (uapi.md §3)", () => {
  it("iommu_ioas_map", () => {
    expect(
      (["size", "flags", "ioas_id", "__reserved", "user_va", "length", "iova"] as const).map((f) =>
        offsetOf(I.iommu_ioas_map, f),
      ),
    ).toEqual([0, 4, 8, 12, 16, 24, 32]);
  });
  it("iommu_hwpt_alloc", () => {
    expect(offsetOf(I.iommu_hwpt_alloc, "data_uptr")).toBe(32);
    expect(offsetOf(I.iommu_hwpt_alloc, "fault_id")).toBe(40);
    expect(offsetOf(I.iommu_hwpt_alloc, "__reserved2")).toBe(44);
  });
  it("iommu_hw_info union and byte fields", () => {
    expect(offsetOf(I.iommu_hw_info, "in_data_type")).toBe(24);
    expect(offsetOf(I.iommu_hw_info, "out_data_type")).toBe(24);
    expect(offsetOf(I.iommu_hw_info, "out_max_pasid_log2")).toBe(28);
    expect(offsetOf(I.iommu_hw_info, "__reserved")).toBe(29);
    expect(offsetOf(I.iommu_hw_info, "out_capabilities")).toBe(32);
  });
  it("iommu_option", () => {
    expect(
      (["op", "__reserved", "object_id", "val64"] as const).map((f) => offsetOf(I.iommu_option, f)),
    ).toEqual([8, 10, 12, 16]);
  });
  it("GET_PA layout shared by v4/v7/v9", () => {
    expect(
      (["size", "flags", "ioas_id", "__reserved", "iova", "length", "out_phys"] as const).map((f) =>
        offsetOf(I.iommu_ioas_noiommu_get_pa, f),
      ),
    ).toEqual([0, 4, 8, 12, 16, 24, 32]);
    expect(I.iommu_ioas_get_pa).toBe(I.iommu_ioas_noiommu_get_pa);
  });
  it("sub-struct sizes", () => {
    expect(I.iommu_iova_range.size).toBe(16);
    expect(I.iommu_hwpt_vtd_s1.size).toBe(24);
    expect(I.iommu_hwpt_arm_smmuv3.size).toBe(16);
    expect(I.iommu_hw_info_vtd.size).toBe(24);
    expect(I.iommu_hw_info_arm_smmuv3.size).toBe(40);
    expect(I.iommu_hw_info_tegra241_cmdqv.size).toBe(8);
    expect(I.iommu_hw_info_amd.size).toBe(16);
    expect(I.iommu_hwpt_vtd_s1_invalidate.size).toBe(24);
    expect(I.iommu_hwpt_pgfault.size).toBe(40);
    expect(I.iommu_hwpt_page_response.size).toBe(8);
    expect(I.iommufd_vevent_header.size).toBe(8);
  });
});

describe("flag and enum constants", () => {
  it("map flags", () => {
    expect([I.IOMMU_IOAS_MAP_FIXED_IOVA, I.IOMMU_IOAS_MAP_WRITEABLE, I.IOMMU_IOAS_MAP_READABLE]).toEqual([
      1, 2, 4,
    ]);
  });
  it("hwpt alloc flags", () => {
    expect([
      I.IOMMU_HWPT_ALLOC_NEST_PARENT,
      I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
      I.IOMMU_HWPT_FAULT_ID_VALID,
      I.IOMMU_HWPT_ALLOC_PASID,
    ]).toEqual([1, 2, 4, 8]);
  });
  it("options and ops", () => {
    expect([I.IOMMU_OPTION_RLIMIT_MODE, I.IOMMU_OPTION_HUGE_PAGES]).toEqual([0, 1]);
    expect([I.IOMMU_OPTION_OP_SET, I.IOMMU_OPTION_OP_GET]).toEqual([0, 1]);
    expect([I.IOMMU_VFIO_IOAS_GET, I.IOMMU_VFIO_IOAS_SET, I.IOMMU_VFIO_IOAS_CLEAR]).toEqual([0, 1, 2]);
  });
  it("hw info types and caps", () => {
    expect(I.IOMMU_HW_INFO_TYPE_NONE).toBe(0);
    expect(I.IOMMU_HW_INFO_TYPE_DEFAULT).toBe(0);
    expect(I.IOMMU_HW_INFO_TYPE_INTEL_VTD).toBe(1);
    expect(I.IOMMU_HW_INFO_TYPE_ARM_SMMUV3).toBe(2);
    expect(I.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV).toBe(3);
    expect(I.IOMMU_HW_INFO_FLAG_INPUT_TYPE).toBe(1);
    expect([
      I.IOMMU_HW_CAP_DIRTY_TRACKING,
      I.IOMMU_HW_CAP_PCI_PASID_EXEC,
      I.IOMMU_HW_CAP_PCI_PASID_PRIV,
    ]).toEqual([1, 2, 4]);
  });
  it("hwpt data and invalidate types", () => {
    expect([I.IOMMU_HWPT_DATA_NONE, I.IOMMU_HWPT_DATA_VTD_S1, I.IOMMU_HWPT_DATA_ARM_SMMUV3]).toEqual([
      0, 1, 2,
    ]);
    expect([I.IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, I.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3]).toEqual([0, 1]);
    expect([I.IOMMU_VTD_S1_SRE, I.IOMMU_VTD_S1_EAFE, I.IOMMU_VTD_S1_WPE]).toEqual([1, 2, 4]);
  });
  it("dirty tracking", () => {
    expect(I.IOMMU_HWPT_DIRTY_TRACKING_ENABLE).toBe(1);
    expect(I.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR).toBe(1);
  });
});

describe("profiles", () => {
  it("IOAS_MAP_FILE is missing in 6.12", () => {
    expect(iommufdIoctlByNr(0x8f, "6.12")).toBeUndefined();
    expect(iommufdIoctlByNr(0x8f, "latest")?.name).toBe("IOMMU_IOAS_MAP_FILE");
  });
  it("6.12 has the commands up to FAULT_QUEUE_ALLOC and nothing later", () => {
    expect(iommufdIoctls("6.12").map((d) => d.nr)).toEqual([
      0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e,
    ]);
    for (const nr of [0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95])
      expect(iommufdIoctlByNr(nr, "6.12")).toBeUndefined();
  });
  it("latest has every command including GET_PA", () => {
    expect(iommufdIoctls("latest")).toHaveLength(22);
    expect(iommufdIoctlByNr(0x95, "latest")?.name).toBe("IOMMU_IOAS_NOIOMMU_GET_PA");
  });
  it("each row's since agrees with IOMMUFD_CMD_SINCE", () => {
    for (const d of IOMMUFD_IOCTLS) expect(d.since).toBe(IOMMUFD_CMD_SINCE[d.name]);
    expect(Object.keys(IOMMUFD_CMD_SINCE).sort()).toEqual(IOMMUFD_IOCTLS.map((d) => d.name).sort());
  });
  it("profiles sets", () => {
    expect([...iommufdIoctlByName("IOMMU_IOAS_MAP")!.profiles].sort()).toEqual(["6.12", "latest"]);
    expect([...iommufdIoctlByName("IOMMU_IOAS_MAP_FILE")!.profiles]).toEqual(["latest"]);
  });
  it("6.12 does not know HWPT_ALLOC_PASID or HW_INFO_FLAG_INPUT_TYPE", () => {
    const hwpt = iommufdIoctlByName("IOMMU_HWPT_ALLOC", "6.12")!.struct;
    expect(Object.keys(hwpt.fields.find((f) => f.name === "flags")!.flags!)).toEqual([
      "NEST_PARENT",
      "DIRTY_TRACKING",
      "FAULT_ID_VALID",
    ]);
    const info = iommufdIoctlByName("IOMMU_GET_HW_INFO", "6.12")!;
    expect(info.struct.fields.find((f) => f.name === "flags")!.flags).toEqual({});
    expect(info.minSize).toBe(32);
    expect(offsetOf(info.struct, "__reserved")).toBe(28);
    // latest keeps them
    const latest = iommufdIoctlByName("IOMMU_HWPT_ALLOC", "latest")!.struct;
    expect(latest.fields.find((f) => f.name === "flags")!.flags!.PASID).toBe(8n);
  });
});

describe("request lookup and routing (main.c iommufd_fops_ioctl)", () => {
  it("byRequest requires the exact request, not just the nr", () => {
    expect(iommufdIoctlByRequest(0x3b85)?.name).toBe("IOMMU_IOAS_MAP");
    expect(iommufdIoctlByRequest(0xc0283b85)).toBeUndefined();
  });
  it("table sizes", () => {
    expect(iommufdTableSize("latest")).toBe(0x16);
    expect(iommufdTableSize("6.12")).toBe(0x0f);
    expect(iommufdTableSize("latest", true)).toBe(0x21);
    // Built without IOMMUFD_NOIOMMU: the table ends at HW_QUEUE_ALLOC, GET_PA goes to compat (or is a hole).
    expect(iommufdTableSize("latest", false, false)).toBe(0x15);
    expect(iommufdTableSize("6.12", false, false)).toBe(0x0f);
    expect(iommufdRoute(0x3b95, "latest", false, false)).toEqual({ kind: "compat" });
    expect(iommufdRoute(0x3b95, "latest", true, false)).toEqual({ kind: "enotty" });
  });
  it("routes", () => {
    expect(iommufdRoute(0x3b64)).toEqual({ kind: "compat" }); // VFIO_GET_API_VERSION
    expect(iommufdRoute(0x3b96)).toEqual({ kind: "compat" }); // past the table
    expect(iommufdRoute(0x3b8f, "6.12")).toEqual({ kind: "compat" }); // past 6.12's table
    expect(iommufdRoute(0xc0283b85)).toEqual({ kind: "enotty" }); // right nr, wrong dir/size
    expect(iommufdRoute(0x3b95, "latest", true)).toMatchObject({ kind: "ioctl" });
    expect(iommufdRoute(0x3b9f, "latest", true)).toEqual({ kind: "enotty" }); // hole in a selftest table
    expect(iommufdRoute(0x3ba0, "latest", true)).toEqual({ kind: "test" });
    expect(iommufdRoute(0x3ba0, "latest", false)).toEqual({ kind: "compat" });
    const r = iommufdRoute(0x3b85, "6.12");
    expect(r.kind === "ioctl" && r.def.name).toBe("IOMMU_IOAS_MAP");
  });
});
