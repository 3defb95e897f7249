import { describe, expect, it } from "vitest";
import * as I from "../../src/uapi/iommufd.js";
import { iommu_hwpt_alloc } from "../../src/uapi/iommufd.js";
import {
  DEFAULT_NOIOMMU_REVISION,
  FLAG_SINCE,
  GET_PA_REVISIONS,
  isKernelProfile,
  isNoiommuRevision,
  profileHas,
  profilesSince,
  structForProfile,
} from "../../src/uapi/profiles.js";
import type { StructDef } from "../../src/uapi/struct.js";
import * as V from "../../src/uapi/vfio.js";

describe("kernel profiles", () => {
  it("version comparison", () => {
    expect(profileHas("6.12", "6.12")).toBe(true);
    expect(profileHas("6.12", "6.11")).toBe(true);
    expect(profileHas("6.12", "6.13")).toBe(false);
    expect(profileHas("6.12", "6.2")).toBe(true);
    expect(profileHas("latest", "6.17")).toBe(true);
    expect(profileHas("latest", "noiommu")).toBe(true);
    expect(profileHas("6.12", "noiommu")).toBe(false);
    expect([...profilesSince("6.13")]).toEqual(["latest"]);
  });
  it("type guards", () => {
    expect(isKernelProfile("6.12")).toBe(true);
    expect(isKernelProfile("6.6")).toBe(false);
    expect(isNoiommuRevision("v9")).toBe(true);
    expect(isNoiommuRevision("v5")).toBe(false);
  });
  it("GET_PA revisions (DESIGN.md)", () => {
    expect(DEFAULT_NOIOMMU_REVISION).toBe("v9");
    expect(GET_PA_REVISIONS.v4).toMatchObject({ requestName: "IOMMU_IOAS_GET_PA", lengthIsInput: false });
    expect(GET_PA_REVISIONS.v7).toMatchObject({ lengthIsInput: true, zeroLength: "no-limit" });
    expect(GET_PA_REVISIONS.v9).toMatchObject({ lengthIsInput: true, zeroLength: "EINVAL" });
  });
  it("structForProfile drops newer flags and caches", () => {
    const s = structForProfile(iommu_hwpt_alloc, "6.12");
    expect(s).not.toBe(iommu_hwpt_alloc);
    expect(structForProfile(iommu_hwpt_alloc, "6.12")).toBe(s);
    expect(structForProfile(iommu_hwpt_alloc, "latest")).toBe(iommu_hwpt_alloc);
    expect(s.fields.find((f) => f.name === "flags")!.flags).not.toHaveProperty("PASID");
  });
  it("FLAG_SINCE entries name real flags", () => {
    const defs = ([...Object.values(I), ...Object.values(V)] as unknown[]).filter(
      (v: unknown): v is StructDef => typeof v === "object" && v !== null && "fields" in v && "size" in v,
    );
    expect(FLAG_SINCE.length).toBeGreaterThan(0);
    for (const f of FLAG_SINCE) {
      const def = defs.find((d) => d.name === f.struct);
      expect(def, f.struct).toBeDefined();
      const field = def!.fields.find((x) => x.name === f.field);
      expect(field?.flags, `${f.struct}.${f.field}`).toHaveProperty(f.flag);
    }
  });
});

// The 6.12 iommufd uapi (a generated copy of include/uapi/linux/iommufd.h whose
// command enum ends at FAULT_QUEUE_ALLOC) has only NONE and INTEL_VTD hw_info types.
describe("6.12 GET_HW_INFO on AMD", () => {
  it("reports IOMMU_HW_INFO_TYPE_NONE and no data; latest reports the AMD EFR registers", async () => {
    const { Machine } = await import("../../src/kernel/machine.js");
    const U = await import("../../src/uapi/index.js");
    for (const kernel of ["6.12", "latest"] as const) {
      const m = new Machine({ iommu: "amd", kernel });
      m.bindDriver("0000:00:04.0", "vfio-pci");
      const p = m.spawn();
      const fd = p.open("/dev/iommu");
      const dev = p.open("/dev/vfio/devices/vfio0");
      const bind = new Uint8Array(24);
      const bv = new DataView(bind.buffer);
      bv.setUint32(0, 24, true);
      bv.setInt32(8, fd, true);
      expect(p.ioctl(dev, U.VFIO_DEVICE_BIND_IOMMUFD, bind)).toBe(0);
      const devid = bv.getUint32(12, true);
      const data = p.mmap(0n, 4096n, 3, 0x22);
      const hi = new Uint8Array(40);
      const hv = new DataView(hi.buffer);
      hv.setUint32(0, 40, true);
      hv.setUint32(8, devid, true);
      hv.setUint32(12, 64, true);
      hv.setBigUint64(16, data, true);
      expect(p.ioctl(fd, U.IOMMU_GET_HW_INFO, hi)).toBe(0);
      expect(hv.getUint32(24, true)).toBe(
        kernel === "6.12" ? U.IOMMU_HW_INFO_TYPE_NONE : U.IOMMU_HW_INFO_TYPE_AMD,
      );
      expect(hv.getUint32(12, true)).toBe(kernel === "6.12" ? 0 : 16);
    }
  });
});
