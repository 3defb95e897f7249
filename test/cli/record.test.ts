import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import type { CliIo } from "../../src/cli/out.js";

/** The CLI in-process: files written by record/--record stay in `written` and can be read back. */
async function run(argv: string[], written: Map<string, string> = new Map()) {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: (s) => {
      stdout += s;
    },
    stderr: (s) => {
      stderr += s;
    },
    env: {},
    readFile: (p) => written.get(p) ?? readFileSync(p, "utf8"),
    writeFile: (p, t) => {
      written.set(p, t);
    },
  };
  const code = await main(argv, io);
  return { code, stdout, stderr, written };
}

describe("iommufd-sim record", () => {
  it("re-records a scenario; the recording runs green and traces the same calls line by line", async () => {
    const r = await run(["record", "examples/iommufd-map-eexist.yaml"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("ioctl: IOMMU_IOAS_MAP");
    expect(r.stdout).toContain("expect: { errno: EEXIST }");
    const files = new Map([["rec.yaml", r.stdout]]);
    expect((await run(["run", "rec.yaml"], files)).code).toBe(0);
    const a = await run(["trace", "--pid", "examples/iommufd-map-eexist.yaml"]);
    const b = await run(["trace", "--pid", "rec.yaml"], files);
    expect(b.stdout.split("\n")).toEqual(a.stdout.split("\n"));
  });

  it("-o writes the file and prints nothing", async () => {
    const r = await run(["record", "examples/vfio-type1-unmap-v1-v2.yaml", "-o", "out.yaml"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.written.get("out.yaml")).toMatch(/^# Recorded by iommufd-sim/);
    expect((await run(["run", "out.yaml"], r.written)).code).toBe(0);
  });

  it("a run that fails an expectation is still recorded, with exit code 1", async () => {
    const bad =
      "machine: { iommu: amd }\nsteps:\n  - open: /dev/iommu\n    as: fd\n  - close: $fd\n    expect: { errno: EBADF }\n";
    const files = new Map([["bad.yaml", bad]]);
    const r = await run(["record", "bad.yaml", "-o", "rec.yaml"], files);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("expected EBADF");
    expect(r.written.get("rec.yaml")).toContain("close: $iommufd");
  });

  it("-o without a file is a usage error", async () => {
    expect((await run(["record", "examples/iommufd-map-eexist.yaml", "-o"])).code).toBe(2);
  });
});

describe("iommufd-sim demo --record", () => {
  for (const mode of ["iommu", "noiommu", "vfio-group", "ppc64"]) {
    it(`demo ${mode} --record out.yaml replays with the demo's trace`, async () => {
      const r = await run(["demo", mode, "--record", "out.yaml"]);
      expect(r.code).toBe(0);
      const rec = r.written.get("out.yaml");
      expect(rec).toBeDefined();
      expect((await run(["run", "out.yaml"], r.written)).code).toBe(0);
      const a = await run(["trace", "--pid", `examples/demo-${mode}.yaml`]);
      const b = await run(["trace", "--pid", "out.yaml"], r.written);
      expect(b.stdout.split("\n")).toEqual(a.stdout.split("\n"));
    });
  }
});
