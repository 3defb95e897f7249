import { expect, it } from "vitest";
import { foreignSetup } from "../../src/bench/foreign-cases.js";

// The bridge setup bench case must do what it claims: IOAS_MAP pins every
// page of the process's range and the teardown lets every one go (the case
// itself throws otherwise). Timings are never asserted.
it("the bridge setup bench case pins every page of the range and releases them all", () => {
  const r = foreignSetup(4 << 20);
  expect(r.pages).toBe(1024);
  expect(r.mapMs).toBeGreaterThan(0);
  expect(r.teardownMs).toBeGreaterThan(0);
});
