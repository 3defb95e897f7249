import { expect, it } from "vitest";
import { seededHugetlbMap } from "../../src/bench/hugetlb-cases.js";

// The seeded case must measure what it claims: scattered boot-pool folios,
// so every IOPTE is a 2 MiB leaf (a linear run would become 1 GiB leaves
// and hide the per-page cost). Timings are never asserted.
it("the seeded hugetlb bench case maps one 2 MiB leaf per page, cold and warm", () => {
  const r = seededHugetlbMap(1n << 30n);
  expect(r.leaves).toBe(512);
  expect(r.cold).toBeGreaterThan(0);
  expect(r.warm).toBeGreaterThan(0);
});
