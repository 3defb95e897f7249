import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { E2BIG, EINVAL } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import {
  iommu_hw_info,
  iommu_hw_info_arm_smmuv3,
  iommu_ioas_map,
  iommu_ioas_map_file,
  iommu_ioas_unmap,
  iommu_option,
  iommufdIoctlByName,
} from "../../src/uapi/iommufd.js";
import {
  copyBackSize,
  copyStructFromUser,
  decode,
  encode,
  fieldSlots,
  formatFlags,
  formatStruct,
  iommufdCopyIn,
  knownFlagMask,
  readField,
  type StructDef,
  unknownFlags,
  vfioArgszCheck,
  vfioCopyBackSize,
  vfioCopyIn,
  writeField,
} from "../../src/uapi/struct.js";
import * as V from "../../src/uapi/vfio.js";
import {
  vfio_device_bind_iommufd,
  vfio_iommu_type1_dma_map,
  vfio_pci_dependent_device,
} from "../../src/uapi/vfio.js";

const u = (bytes: number) => fc.bigInt({ min: 0n, max: (1n << BigInt(bytes * 8)) - 1n });

/** Arbitrary values for every non-alias slot of a struct. */
function arbValues(def: StructDef) {
  const rec: Record<string, fc.Arbitrary<bigint>> = {};
  for (const s of fieldSlots(def)) {
    if (s.field.alias) continue;
    rec[s.key] = s.signed
      ? fc.bigInt({ min: -(1n << BigInt(s.size * 8 - 1)), max: (1n << BigInt(s.size * 8 - 1)) - 1n })
      : u(s.size);
  }
  return fc.record(rec);
}

describe("encode/decode", () => {
  for (const def of [
    iommu_ioas_map,
    iommu_ioas_map_file,
    iommu_option,
    iommu_hw_info_arm_smmuv3,
    vfio_device_bind_iommufd,
  ] as StructDef[]) {
    it(`round-trips ${def.name}`, () => {
      fc.assert(
        fc.property(arbValues(def), (vals) => {
          const bytes = encode(def, vals);
          expect(bytes.length).toBe(def.size);
          const back = decode(def, bytes);
          for (const [k, v] of Object.entries(vals)) expect(back[k]).toBe(v);
          // and bytes -> values -> bytes
          expect(encode(def, back)).toEqual(bytes);
        }),
      );
    });
  }

  it("round-trips every struct table of iommufd.ts and vfio.ts", () => {
    const defs = ([...Object.values(I), ...Object.values(V)] as unknown[]).filter(
      (v: unknown): v is StructDef => typeof v === "object" && v !== null && "fields" in v && "size" in v,
    );
    for (const def of defs) {
      fc.assert(
        fc.property(arbValues(def), (vals) => {
          const back = decode(def, encode(def, vals));
          for (const [k, v] of Object.entries(vals)) expect(back[k], `${def.name}.${k}`).toBe(v);
        }),
        { numRuns: 20 },
      );
    }
  });

  it("is little-endian at the documented offsets", () => {
    const b = encode(iommu_ioas_map, {
      size: 40,
      flags: 7,
      ioas_id: 2,
      user_va: 0x7f0000200000n,
      iova: 0x1122334455667788n,
    });
    expect([...b.subarray(0, 12)]).toEqual([40, 0, 0, 0, 7, 0, 0, 0, 2, 0, 0, 0]);
    expect([...b.subarray(32, 40)]).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    expect([...b.subarray(16, 24)]).toEqual([0, 0, 0x20, 0, 0, 0x7f, 0, 0]);
  });

  it("reads fields past the buffer as zero, partially covered ones too", () => {
    const full = encode(iommu_ioas_map, { size: 40, user_va: 0xffffffffffffffffn, iova: 5n });
    const v = decode(iommu_ioas_map, full.subarray(0, 20));
    expect(v.size).toBe(40n);
    expect(v.user_va).toBe(0xffffffffn);
    expect(v.length).toBe(0n);
    expect(v.iova).toBe(0n);
    expect(decode(iommu_ioas_map, new Uint8Array(0)).flags).toBe(0n);
  });

  it("respects a Uint8Array view's byteOffset", () => {
    const backing = new Uint8Array(64);
    backing.set(encode(iommu_ioas_unmap, { size: 24, ioas_id: 9, length: 0x1000 }), 8);
    const v = decode(iommu_ioas_unmap, backing.subarray(8, 32));
    expect(v).toEqual({ size: 24n, ioas_id: 9n, iova: 0n, length: 0x1000n });
  });

  it("encodes into a short size by truncation", () => {
    const b = encode(iommu_ioas_map, { size: 20, user_va: 0x1122334455667788n }, 20);
    expect(b.length).toBe(20);
    expect([...b.subarray(16, 20)]).toEqual([0x88, 0x77, 0x66, 0x55]);
  });

  it("accepts negative values as two's complement and signed fields decode negative", () => {
    const b = encode(vfio_device_bind_iommufd, { argsz: 24, iommufd: -1, flags: -1 });
    const v = decode(vfio_device_bind_iommufd, b);
    expect(v.iommufd).toBe(-1n);
    expect(v.flags).toBe(0xffffffffn);
  });

  it("rejects unknown keys and values that do not fit", () => {
    // @ts-expect-error: a misspelt or unknown field does not compile (and throws for untyped callers)
    expect(() => encode(iommu_ioas_map, { nope: 1 })).toThrow(TypeError);
    expect(() => encode(iommu_ioas_map, { flags: 1n << 32n })).toThrow(RangeError);
    expect(() => encode(iommu_ioas_map, { flags: -(1n << 31n) - 1n })).toThrow(RangeError);
    expect(() => encode(iommu_ioas_map, { flags: 1.5 })).toThrow(RangeError);
  });

  it("arrays expand to name[i] keys", () => {
    const b = encode(iommu_hw_info_arm_smmuv3, { "idr[0]": 1, "idr[5]": 0xdeadbeef, aidr: 3 });
    expect(readField(iommu_hw_info_arm_smmuv3, b, "idr[5]")).toBe(0xdeadbeefn);
    expect(readField(iommu_hw_info_arm_smmuv3, b, "idr[0]")).toBe(1n);
    expect(new DataView(b.buffer).getUint32(28, true)).toBe(0xdeadbeef);
  });

  it("union aliases read the same storage", () => {
    const b = encode(iommu_hw_info, { in_data_type: 2 });
    const v = decode(iommu_hw_info, b);
    expect(v.out_data_type).toBe(2n);
    const d = decode(vfio_pci_dependent_device, encode(vfio_pci_dependent_device, { group_id: 0xffffffff }));
    expect(d.devid).toBe(-1n);
  });

  it("readField/writeField", () => {
    const b = encode(iommu_ioas_map, { size: 40 });
    writeField(iommu_ioas_map, b, "iova", 0x200000n);
    writeField(iommu_ioas_map, b, "ioas_id", 3);
    expect(readField(iommu_ioas_map, b, "iova")).toBe(0x200000n);
    expect(readField(iommu_ioas_map, b, "ioas_id")).toBe(3n);
    // @ts-expect-error: not a field of iommu_ioas_map
    expect(() => readField(iommu_ioas_map, b, "bogus")).toThrow(TypeError);
  });
});

describe("flags", () => {
  it("unknownFlags keeps bits the table does not name", () => {
    expect(unknownFlags(iommu_ioas_map, "flags", 7)).toBe(0n);
    expect(unknownFlags(iommu_ioas_map, "flags", 0x1f)).toBe(0x18n);
    expect(unknownFlags(iommu_ioas_map, "flags", -1)).toBe(0xfffffff8n);
    expect(knownFlagMask(iommu_ioas_map, "flags")).toBe(7n);
    const alloc = iommufdIoctlByName("IOMMU_IOAS_ALLOC")!.struct;
    expect(unknownFlags(alloc, "flags", 1)).toBe(1n);
  });
  it("formatFlags", () => {
    const f = { A: 1n, B: 2n, C: 4n };
    expect(formatFlags(f, 0n)).toBe("0");
    expect(formatFlags(f, 5n)).toBe("A|C");
    expect(formatFlags(f, 0x105n)).toBe("A|C|0x100");
    expect(formatFlags(undefined, 0x30n)).toBe("0x30");
  });
});

describe("formatStruct", () => {
  it("prints IOAS_MAP like strace", () => {
    const v = decode(
      iommu_ioas_map,
      encode(iommu_ioas_map, {
        size: 40,
        flags: 7,
        ioas_id: 2,
        user_va: 0x7f0000200000n,
        length: 0x200000n,
        iova: 0x200000n,
      }),
    );
    expect(formatStruct(iommu_ioas_map, v)).toBe(
      "{size=40, flags=FIXED_IOVA|WRITEABLE|READABLE, ioas_id=2, user_va=0x7f0000200000, length=0x200000, iova=0x200000}",
    );
  });
  it("shows non-zero reserved fields and leftover flag bits", () => {
    expect(formatStruct(iommu_ioas_map, { size: 40n, flags: 0x12n, __reserved: 1n })).toBe(
      "{size=40, flags=WRITEABLE|0x10, ioas_id=0, __reserved=0x1, user_va=0x0, length=0x0, iova=0x0}",
    );
  });
  it("prints enums by name, fds signed, and can filter by direction", () => {
    expect(formatStruct(iommu_option, { size: 24n, option_id: 1n, op: 1n, object_id: 3n, val64: 1n })).toBe(
      "{size=24, option_id=HUGE_PAGES, op=GET, object_id=3, val64=1}",
    );
    expect(
      formatStruct(iommu_ioas_map_file, { size: 40n, flags: 6n, ioas_id: 1n, fd: -1n }, { only: "in" }),
    ).toBe("{size=40, flags=WRITEABLE|READABLE, ioas_id=1, fd=-1, start=0x0, length=0x0, iova=0x0}");
    expect(formatStruct(iommu_ioas_map, { iova: 0x1000n }, { only: "out" })).toBe("{iova=0x1000}");
  });
  it("cuts at the user's size and prints arrays", () => {
    expect(formatStruct(iommu_ioas_unmap, { size: 16n, ioas_id: 1n, iova: 0n }, { userSize: 16 })).toBe(
      "{size=16, ioas_id=1, iova=0x0}",
    );
    expect(formatStruct(iommu_hw_info_arm_smmuv3, { "idr[1]": 0x10n })).toBe(
      "{flags=0, idr=[0x0, 0x10, 0x0, 0x0, 0x0, 0x0], iidr=0x0, aidr=0x0}",
    );
  });
  it("hides union aliases unless asked", () => {
    const s = formatStruct(iommu_hw_info, { size: 40n, dev_id: 1n, in_data_type: 1n });
    expect(s).toBe(
      "{size=40, flags=0, dev_id=1, data_len=0, data_uptr=0x0, in_data_type=INTEL_VTD, out_max_pasid_log2=0, out_capabilities=0}",
    );
    expect(formatStruct(iommu_hw_info, { data_len: 24n, out_data_type: 1n }, { only: "out" })).toBe(
      "{data_len=24, out_data_type=INTEL_VTD, out_max_pasid_log2=0, out_capabilities=0}",
    );
    expect(
      formatStruct(iommu_hw_info, { in_data_type: 1n, out_data_type: 1n }, { showAliases: true }),
    ).toContain("in_data_type=INTEL_VTD, out_data_type=INTEL_VTD");
  });
});

describe("iommufdCopyIn (copy_struct_from_user + min_size)", () => {
  const map = iommufdIoctlByName("IOMMU_IOAS_MAP")!;
  const alloc = iommufdIoctlByName("IOMMU_HWPT_ALLOC")!;

  it("EINVAL below min_size", () => {
    const r = iommufdCopyIn(map.struct, map.minSize, new Uint8Array(39));
    expect(r).toMatchObject({ ok: false, errno: EINVAL });
    expect(EINVAL).toBe(22);
    const r2 = iommufdCopyIn(alloc.struct, alloc.minSize, new Uint8Array(23));
    expect(r2.ok ? 0 : r2.errno).toBe(22);
  });

  it("zero-fills a struct shorter than the kernel's (but at least min_size)", () => {
    const user = encode(alloc.struct, { size: 24, flags: 1, dev_id: 5, pt_id: 6 }, 24);
    const r = iommufdCopyIn(alloc.struct, alloc.minSize, user);
    if (!r.ok) throw new Error(r.reason);
    expect(r.kbuf.length).toBe(48);
    const v = decode(alloc.struct, r.kbuf);
    expect(v.pt_id).toBe(6n);
    expect(v.fault_id).toBe(0n);
    expect(v.data_uptr).toBe(0n);
  });

  it("accepts a longer struct with a zero tail", () => {
    const user = new Uint8Array(64);
    user.set(encode(map.struct, { size: 64, flags: 7, iova: 0x1000n }));
    const r = iommufdCopyIn(map.struct, map.minSize, user);
    if (!r.ok) throw new Error(r.reason);
    expect(r.kbuf.length).toBe(40);
    expect(decode(map.struct, r.kbuf).iova).toBe(0x1000n);
  });

  it("E2BIG for any non-zero byte past the kernel struct", () => {
    fc.assert(
      fc.property(fc.integer({ min: 40, max: 127 }), fc.integer({ min: 1, max: 255 }), (pos, byte) => {
        const user = new Uint8Array(128);
        user[pos] = byte;
        const r = iommufdCopyIn(map.struct, map.minSize, user);
        expect(r).toMatchObject({ ok: false, errno: E2BIG });
      }),
    );
    expect(E2BIG).toBe(7);
  });

  it("the kernel buffer is a copy", () => {
    const user = encode(map.struct, { size: 40 });
    const r = iommufdCopyIn(map.struct, map.minSize, user);
    if (!r.ok) throw new Error(r.reason);
    r.kbuf[0] = 99;
    expect(user[0]).toBe(40);
  });

  it("copyStructFromUser without a minimum (BIND_IOMMUFD's rule)", () => {
    expect(copyStructFromUser(24, new Uint8Array(16))).toMatchObject({ ok: true });
    const tail = new Uint8Array(32);
    tail[31] = 1;
    expect(copyStructFromUser(24, tail)).toMatchObject({ ok: false, errno: 7 });
  });

  it("copyBackSize is min(user, kernel)", () => {
    expect(copyBackSize(64, 40)).toBe(40);
    expect(copyBackSize(24, 48)).toBe(24);
    fc.assert(
      fc.property(fc.nat(1 << 20), fc.nat(4096), (a, b) => {
        expect(copyBackSize(a, b)).toBe(Math.min(a, b));
      }),
    );
  });
});

describe("VFIO argsz convention", () => {
  it("vfioArgszCheck", () => {
    expect(vfioArgszCheck(32, 32)).toEqual({ ok: true });
    expect(vfioArgszCheck(1000, 32)).toEqual({ ok: true });
    expect(vfioArgszCheck(31, 32)).toMatchObject({ ok: false, errno: 22 });
    expect(vfioArgszCheck(0n, 8)).toMatchObject({ ok: false, errno: 22 });
  });
  it("vfioCopyIn copies minsz bytes and ignores the rest", () => {
    const user = new Uint8Array(40);
    user.set(
      encode(vfio_iommu_type1_dma_map, { argsz: 40, flags: 3, vaddr: 0x1000n, iova: 0x2000n, size: 0x3000n }),
    );
    user[36] = 0xff; // past the struct: ignored, no E2BIG in VFIO
    const r = vfioCopyIn(vfio_iommu_type1_dma_map, 32, user);
    if (!r.ok) throw new Error(r.reason);
    expect(r.argsz).toBe(40);
    expect(decode(vfio_iommu_type1_dma_map, r.kbuf).size).toBe(0x3000n);
  });
  it("vfioCopyIn: argsz below minsz is EINVAL", () => {
    const user = encode(vfio_iommu_type1_dma_map, { argsz: 16 });
    expect(vfioCopyIn(vfio_iommu_type1_dma_map, 32, user)).toMatchObject({ ok: false, errno: 22 });
    expect(vfioCopyIn(vfio_iommu_type1_dma_map, 32, new Uint8Array(0))).toMatchObject({
      ok: false,
      errno: 22,
    });
  });
  it("INFO copy-back is min(argsz, sizeof)", () => {
    expect(vfioCopyBackSize(16, 24)).toBe(16);
    expect(vfioCopyBackSize(100, 24)).toBe(24);
  });
});
