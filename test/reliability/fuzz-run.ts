import { describe, expect, it } from "vitest";
import { runCampaign } from "../../src/fuzz/campaign.js";
import type { MachineKind } from "../../src/fuzz/world.js";

/** One CI campaign: no violation, and the named deep paths were reached. */
export function fuzzMachine(
  machine: MachineKind,
  seed: number,
  runs: number,
  paths: string[],
  maxCommands?: number,
): void {
  describe(`model-based fuzzing on ${machine} (CI-sized)`, () => {
    it(`seed ${seed}: ${runs} sequences, no violation, the deep paths reached`, () => {
      const r = runCampaign({ seed, runs, machine, maxCommands });
      if (r.failure) {
        throw new Error(
          `${r.failure.message}\n${r.failure.commands}\nreplay: npm run fuzz -- --seed ${r.seed} --machine ${machine} --replay ${r.failure.path}`,
        );
      }
      expect(r.violations).toBe(0);
      console.log(`fuzz ${machine} seed ${seed}: ${r.sequences} sequences, ${r.steps} steps`);
      for (const k of paths) expect(r.seen[k] ?? 0, k).toBeGreaterThan(0);
    }, 120_000);
  });
}
