// CI-sized model-based fuzzing on the machines with their own paths: the
// selftest mock (access objects), noiommu (GET_PA and DMA by physical
// address, each noiommu series revision by seed) and PPC64 sPAPR (iommufd
// windows and the legacy v1/v2 TCE container). See fuzz.test.ts.
import { describe, expect, it } from "vitest";
import { runCampaign } from "../../src/fuzz/campaign.js";
import { fuzzMachine } from "./fuzz-run.js";

fuzzMachine("mock", 11, 250, ["access pages", "dma ok", "dma ok container"]);
fuzzMachine("noiommu", 9, 250, ["get pa", "dma ok", "attach", "map pinned"]);
// Every step's invariants read back each TCE table (a 1 GiB window is 262144 entries): sPAPR
// sequences are the slowest, so fewer and shorter here; `npm run fuzz -- --machine spapr` goes further.
fuzzMachine("spapr", 13, 100, ["spapr register", "spapr map", "dma ok container", "dma ok"], 150);

describe("replay", () => {
  it("a campaign is deterministic in its seed and machine", () => {
    for (const machine of ["amd", "noiommu"] as const) {
      const a = runCampaign({ seed: 5, runs: 5, machine });
      const b = runCampaign({ seed: 5, runs: 5, machine });
      expect(b.steps).toBe(a.steps);
      expect(b.seen).toEqual(a.seen);
    }
  });
});
