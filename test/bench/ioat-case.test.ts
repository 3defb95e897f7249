import { expect, it } from "vitest";
import { ioatStorm } from "../../src/bench/ioat-cases.js";

// The IOAT bench case must do what it claims: every descriptor of the storm
// completes through the IOMMU. Timings are never asserted.
it("the IOAT storm bench case completes every copy", () => {
  const r = ioatStorm(200);
  expect(r.copies).toBe(200);
  expect(r.nsPerCopy).toBeGreaterThan(0);
});
