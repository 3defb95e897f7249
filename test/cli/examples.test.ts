import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cli } from "./helpers.js";

/**
 * Examples whose subsystem has not landed yet, with the reason. They run
 * the moment their entry is removed; `skip list is current` below fails
 * when an entry already passes, so the list cannot go stale silently.
 */
const NOT_LANDED_YET: Record<string, string> = {};

const dir = new URL("../../examples/", import.meta.url);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("examples/*.yaml through the CLI entry point", () => {
  it("has an example per demo", () => {
    for (const mode of ["noiommu", "iommu", "ppc64", "vfio-group"])
      expect(files).toContain(`demo-${mode}.yaml`);
  });

  for (const f of files) {
    const path = new URL(f, dir).pathname;
    if (Object.hasOwn(NOT_LANDED_YET, f)) {
      it(`${f} is well-formed (runs once: ${NOT_LANDED_YET[f]})`, async () => {
        const r = await cli(["run", path, "--quiet"]);
        expect(r.code, r.stderr).not.toBe(3);
      });
      continue;
    }
    it(`${f} passes`, async () => {
      const r = await cli(["run", path]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^PASS /);
    });
  }

  const skipped = Object.keys(NOT_LANDED_YET);
  // With nothing skipped there is nothing to check: say so rather than pass a loop over nothing.
  it.skipIf(skipped.length === 0)(
    `skip list is current: every skipped example exists and still fails${skipped.length === 0 ? " (the list is empty)" : ""}`,
    async () => {
      for (const f of skipped) {
        expect(files, `${f} is in the skip list but not in examples/`).toContain(f);
        const r = await cli(["run", new URL(f, dir).pathname, "--quiet"]);
        expect(r.code, `${f} passes now: remove it from NOT_LANDED_YET`).not.toBe(0);
      }
    },
  );
});
