// The noiommu example scenarios pass through the CLI.
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cli } from "../cli/helpers.js";

const dir = new URL("../../examples/", import.meta.url);
const files = readdirSync(dir).filter((f) => /^(noiommu-|demo-noiommu)/.test(f) && f.endsWith(".yaml"));

describe("examples/noiommu-*.yaml", () => {
  it("there are several", () => expect(files.length).toBeGreaterThanOrEqual(3));
  it.each(files)("%s passes", async (f) => {
    const r = await cli(["run", new URL(f, dir).pathname]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  });
});
