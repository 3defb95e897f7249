import { describe, expect, it } from "vitest";
import { emptyRuns } from "../../src/mm/pfn-runs.js";
import { ENXIO } from "../../src/uapi/errno.js";
import { type MmIommuMem, mmIommuMappedDec, mmIommuMappedInc } from "../../src/vfio/spapr-prereg.js";

const region = (mapped: number): MmIommuMem => ({
  ua: 0x10000n,
  entries: 1,
  pageshift: 12,
  hpas: [7],
  folioShift: new Uint8Array([12]),
  runs: emptyRuns(),
  used: 1,
  mapped,
});

describe("mm_iommu_mapped_inc/dec (the TCEs pointing into a pre-registered region)", () => {
  it("counts TCEs above the registration's base count 1, never below it", () => {
    const mem = region(1);
    expect(mmIommuMappedInc(mem)).toBe(0);
    expect(mmIommuMappedInc(mem)).toBe(0);
    expect(mem.mapped).toBe(3);
    mmIommuMappedDec(mem);
    mmIommuMappedDec(mem);
    mmIommuMappedDec(mem);
    expect(mem.mapped).toBe(1);
  });

  it("a region being released (mapped 0) takes no new TCE: ENXIO, unchanged", () => {
    const mem = region(0);
    expect(mmIommuMappedInc(mem)).toBe(-ENXIO);
    expect(mem.mapped).toBe(0);
    mmIommuMappedDec(mem);
    expect(mem.mapped).toBe(0);
  });
});
