import { describe, expect, it } from "vitest";
import { runCampaign } from "../../src/fuzz/campaign.js";

describe("model-based fuzzing of syscall sequences (CI-sized)", () => {
  for (const seed of [20260101, 7]) {
    it(`seed ${seed}: no violation, and the deep paths are reached`, () => {
      const r = runCampaign({ seed, runs: 250 });
      if (r.failure) {
        throw new Error(
          `${r.failure.message}\n${r.failure.commands}\nreplay: npm run fuzz -- --seed ${r.seed} --replay ${r.failure.path}`,
        );
      }
      expect(r.violations).toBe(0);
      console.log(`fuzz seed ${seed}: ${r.sequences} sequences, ${r.steps} steps`, JSON.stringify(r.seen));
      // The run must exercise DMA through a mapped IOVA, pinned maps, replace and exit with bound devices.
      for (const k of ["dma ok", "dma fault", "map pinned", "replace", "exit with a bound device", "unmap"]) {
        expect(r.seen[k] ?? 0, k).toBeGreaterThan(0);
      }
    }, 60_000);
  }

  it("replays a recorded failure token deterministically", () => {
    const a = runCampaign({ seed: 5, runs: 5 });
    const b = runCampaign({ seed: 5, runs: 5 });
    expect(b.steps).toBe(a.steps);
    expect(b.seen).toEqual(a.seen);
  });
});
