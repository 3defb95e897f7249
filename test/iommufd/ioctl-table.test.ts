import { describe, expect, it } from "vitest";
import { ioctlTable } from "../../src/iommufd/main.js";
import { Machine } from "../../src/kernel/machine.js";
import { ENOTTY } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/iommufd.js";
import { encode } from "../../src/uapi/struct.js";

// The kernel's ioctl table is the uapi rows plus a handler each, routed by the
// one iommufdRoute(): what the route says a kernel has is what it serves.
describe("iommufd ioctl table", () => {
  it("serves every command of the profile, with the uapi row's struct and minimum size", () => {
    for (const profile of ["latest", "6.12"] as const) {
      const m = new Machine({ iommu: "amd", kernel: profile });
      const t = ioctlTable(m.ctx);
      expect([...t.keys()]).toEqual(U.iommufdIoctls(profile).map((d) => d.nr));
      for (const d of U.iommufdIoctls(profile)) {
        expect(t.get(d.nr)?.def).toBe(d);
      }
    }
  });

  it("a selftest kernel adds IOMMU_TEST_CMD with min size offsetofend(last) = 68", () => {
    const m = new Machine({ iommu: "mock", kconfig: { IOMMUFD_TEST: true } });
    const row = ioctlTable(m.ctx).get(U.IOMMUFD_CMD_TEST);
    expect(row?.def.request).toBe(U.IOMMU_TEST_CMD);
    expect(row?.def.minSize).toBe(68);
  });

  it("a kernel without IOMMUFD_NOIOMMU has no GET_PA row and refuses the request (ENOTTY)", () => {
    const m = new Machine({ iommu: "amd", kconfig: { VFIO_NOIOMMU: false } });
    expect(m.kconfig.IOMMUFD_NOIOMMU).toBe(false);
    expect(ioctlTable(m.ctx).has(0x95)).toBe(false);
    expect(U.iommufdRoute(U.IOMMU_IOAS_NOIOMMU_GET_PA, "latest", false, false)).toEqual({ kind: "compat" });
    const p = m.spawn();
    const fd = Number(p.open("/dev/iommu"));
    const arg = encode(U.iommu_ioas_noiommu_get_pa, { size: 40 });
    expect(p.ioctl(fd, U.IOMMU_IOAS_NOIOMMU_GET_PA, arg)).toBe(-ENOTTY);
    // (the first call faulted in the page the harness copies the struct to)
    const before = m.debug.counters();
    expect(p.ioctl(fd, U.IOMMU_IOAS_NOIOMMU_GET_PA, arg)).toBe(-ENOTTY);
    expect(m.debug.counters()).toEqual(before);
  });
});
