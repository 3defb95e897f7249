import { describe, expect, it } from "vitest";
import {
  iommu_hw_info,
  iommu_hw_info_arm_smmuv3,
  iommu_ioas_map,
  iommu_option,
  iommufdIoctlByName,
} from "../../src/uapi/iommufd.js";
import {
  decode,
  encode,
  type FieldKey,
  type FieldName,
  offsetOfEnd,
  type StructView,
  structView,
} from "../../src/uapi/struct.js";
import { vfio_device_bind_iommufd } from "../../src/uapi/vfio.js";

// The struct tables keep their field names as types. This file is covered by
// `npm run typecheck`: each @ts-expect-error below fails the build if the
// line after it ever compiles (i.e. if a misspelt field stopped being an error).

describe("field names are types", () => {
  it("decode returns a record with exactly the struct's keys", () => {
    const v = decode(iommu_ioas_map, encode(iommu_ioas_map, { size: 40, ioas_id: 3, iova: 0x1000n }));
    expect(v.ioas_id).toBe(3n);
    expect(v.iova).toBe(0x1000n);
    // @ts-expect-error: iommu_ioas_map has no field ioasid
    expect(v.ioasid).toBeUndefined();
  });

  it("encode refuses unknown fields at compile time and at run time", () => {
    // @ts-expect-error: misspelt field
    expect(() => encode(iommu_ioas_map, { ioas_idd: 1 })).toThrow(TypeError);
    // array elements are keys too
    const b = encode(iommu_hw_info_arm_smmuv3, { "idr[2]": 7 });
    expect(decode(iommu_hw_info_arm_smmuv3, b)["idr[2]"]).toBe(7n);
  });

  it("offsetofend and the ioctl table's last field take only real field names", () => {
    expect(offsetOfEnd(iommu_option, "val64")).toBe(24);
    // @ts-expect-error: not a field of iommu_option
    expect(() => offsetOfEnd(iommu_option, "value64")).toThrow(TypeError);
    expect(iommufdIoctlByName("IOMMU_OPTION")?.lastField).toBe("val64");
  });

  it("FieldName and FieldKey are literal unions", () => {
    const names: FieldName<typeof iommu_option>[] = [
      "size",
      "option_id",
      "op",
      "__reserved",
      "object_id",
      "val64",
    ];
    // @ts-expect-error: "idr" alone is not a slot key of an array field
    const k: FieldKey<typeof iommu_hw_info_arm_smmuv3> = "idr";
    expect(names).toHaveLength(6);
    expect(k).toBe("idr");
  });
});

describe("structView", () => {
  it("reads 8-byte fields as bigint and smaller ones as number, writing through to the buffer", () => {
    const bytes = encode(iommu_ioas_map, { size: 40, flags: 6, ioas_id: 2, user_va: 0x7f00n, length: 4096n });
    const v: StructView<typeof iommu_ioas_map> = structView(iommu_ioas_map, bytes);
    expect(v.size).toBe(40);
    expect(v.flags).toBe(6);
    expect(v.user_va).toBe(0x7f00n);
    v.iova = 0x200000n;
    v.ioas_id = 9;
    expect(decode(iommu_ioas_map, bytes)).toMatchObject({ iova: 0x200000n, ioas_id: 9n });
    // @ts-expect-error: a 64-bit field takes a bigint
    v.iova = 1;
    // @ts-expect-error: misspelt field
    v.ioas = 1;
  });

  it("signed fields, unions and arrays", () => {
    const b = encode(vfio_device_bind_iommufd, { argsz: 24, iommufd: -1 });
    expect(structView(vfio_device_bind_iommufd, b).iommufd).toBe(-1);
    const h = structView(iommu_hw_info, new Uint8Array(iommu_hw_info.size));
    h.in_data_type = 2;
    expect(h.out_data_type).toBe(2);
    const s = structView(iommu_hw_info_arm_smmuv3, new Uint8Array(iommu_hw_info_arm_smmuv3.size));
    s.idr = [1, 2, 3, 4, 5, 0xffffffff];
    expect(s.idr).toEqual([1, 2, 3, 4, 5, 0xffffffff]);
    expect(() => {
      s.idr = [1];
    }).toThrow(RangeError);
  });

  it("writes that do not fit throw RangeError and leave the buffer alone", () => {
    const bytes = new Uint8Array(iommu_option.size);
    const v = structView(iommu_option, bytes);
    expect(() => {
      v.op = 0x10000;
    }).toThrow(RangeError);
    expect(() => {
      v.object_id = 1.5;
    }).toThrow(RangeError);
    expect(() => {
      v.val64 = 1n << 64n;
    }).toThrow(RangeError);
    expect(bytes.every((x) => x === 0)).toBe(true);
    v.op = -1;
    expect(v.op).toBe(0xffff);
  });

  it("refuses a buffer shorter than the struct", () => {
    expect(() => structView(iommu_option, new Uint8Array(8))).toThrow(RangeError);
  });
});
