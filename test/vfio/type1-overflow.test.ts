// vfio_dma_mapping_test's `overflow` case (7.2): MAP_DMA and UNMAP_DMA of a range whose end
// wraps past 2^64 are EOVERFLOW in every mode; 6.12's type1 still answered EINVAL.
import { expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { EINVAL, EOVERFLOW, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU } from "../../src/uapi/index.js";
import { BDF, buffer, dmaMap, dmaUnmap, openGroup } from "../e2e/driver.js";

const LAST_PAGE = 0xfffffffffffff000n;

for (const [kernel, want] of [
  ["latest", EOVERFLOW],
  ["6.12", EINVAL],
] as const) {
  for (const type of [VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU]) {
    it(`type${type === VFIO_TYPE1_IOMMU ? "1" : "1v2"} on ${kernel}: a range wrapping past 2^64 is ${want === EOVERFLOW ? "EOVERFLOW" : "EINVAL"} for map and unmap, and changes nothing`, () => {
      const m = new Machine({ kernel });
      m.bindDriver(BDF, "vfio-pci");
      const p = m.spawn();
      const o = openGroup(p, 0, BDF, type);
      const va = buffer(p, 2 * 4096);
      const before = m.debug.counters();
      expect(dmaMap(o, va, 2 * 4096, LAST_PAGE)).toBe(-want);
      expect(p.lastError()?.reason).toMatch(/wraps/);
      expect(dmaUnmap(o, LAST_PAGE, 2 * 4096).ret).toBe(-want);
      expect(m.debug.counters()).toEqual(before);
      // a zero size stays EINVAL, and a plain mapping still works
      expect(dmaMap(o, va, 0, LAST_PAGE)).toBe(-EINVAL);
      expect(dmaMap(o, va, 4096, 0x100000n)).toBe(0);
      expect(dmaUnmap(o, 0x100000n, 4096).ret).toBe(0);
    });
  }
}
