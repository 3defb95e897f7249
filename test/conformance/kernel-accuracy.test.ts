// Behaviour pinned against drivers/iommu/iommufd/hw_pagetable.c (iommufd_hwpt_alloc).
import { describe, expect, it } from "vitest";
import * as U from "../../src/uapi/index.js";
import { call, ioasAlloc, mockDomain, ok, setup } from "./helpers.js";

describe("IOMMU_HWPT_ALLOC reserved fields", () => {
  it("__reserved must be 0 (EOPNOTSUPP); __reserved2 is not checked", () => {
    const e = setup();
    const ioas = ioasAlloc(e);
    const d = mockDomain(e, ioas);
    ok(e.p, d.rc);
    const bad = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: d.idev,
      pt_id: ioas,
      __reserved: 1,
    });
    expect(bad.rc).toBe(-U.EOPNOTSUPP);
    const r = call(e.p, e.fd, U.IOMMU_HWPT_ALLOC, U.iommu_hwpt_alloc, {
      dev_id: d.idev,
      pt_id: ioas,
      __reserved2: 0xdead,
    });
    ok(e.p, r.rc);
    expect(r.out.out_hwpt_id).toBeGreaterThan(0n);
  });
});
