import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseBridgeArgs } from "../../src/bridge/session.js";
import { cli } from "../cli/helpers.js";
import { C_PRELUDE, compileC } from "./helpers.js";

describe("iommufd-sim exec / serve on the command line", () => {
  it("help exec and help serve document the options and exit 0", async () => {
    for (const topic of ["exec", "serve"]) {
      const r = await cli(["help", topic]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: iommufd-sim ${topic}`));
    }
    const e = await cli(["exec", "--help"]);
    expect(e.code).toBe(0);
    for (const opt of [
      "--iommu",
      "--kernel",
      "--kconfig",
      "--param",
      "--pci",
      "--seed",
      "--noiommu-revision",
      "--trace",
      "--report",
    ]) {
      expect(e.stdout).toContain(opt);
    }
    expect((await cli(["help"])).stdout).toContain("exec [machine options] -- PROGRAM");
  });

  it("rejects bad options with exit 2 and a reason", async () => {
    expect((await cli(["exec"])).stderr).toContain("no program to run");
    const cases: [string[], string][] = [
      [["exec", "--iommu", "arm", "--", "true"], 'unknown IOMMU "arm"'],
      [["exec", "--kconfig", "IOMMUFD_TEST", "--", "true"], "--kconfig takes NAME=y|n"],
      [
        ["exec", "--pci", "0000:00:04.0=gpu", "--", "true"],
        'unknown device kind "gpu" (memcpy, memcpy-pf, ioat)',
      ],
      [["exec", "--frob", "--", "true"], "unknown option --frob"],
      [["serve"], "--socket PATH is required"],
    ];
    for (const [argv, msg] of cases) {
      const r = await cli(argv);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr).toContain(msg);
    }
  });

  it("--pci takes every device kind the machine has: the memcpy device and the IOAT channel", () => {
    const r = parseBridgeArgs(["--pci", "0000:00:04.0=ioat", "--pci", "0000:00:05.0=memcpy", "--", "true"]);
    if (typeof r === "string") throw new Error(r);
    expect(r.opts.machine.pci).toEqual([
      { bdf: "0000:00:04.0", kind: "ioat" },
      { bdf: "0000:00:05.0", kind: "memcpy" },
    ]);
  });

  it("parses the machine options into Machine options", () => {
    const r = parseBridgeArgs([
      "--iommu=mock",
      "--kernel",
      "6.12",
      "--kconfig",
      "IOMMUFD_TEST=y",
      "--param",
      "vfio.enable_unsafe_noiommu_mode=1",
      "--pci",
      "0000:00:05.0=memcpy",
      "--seed",
      "9",
      "--noiommu-revision",
      "v7",
      "--report",
      "--",
      "prog",
      "--iommu",
    ]);
    if (typeof r === "string") throw new Error(r);
    expect(r.opts.machine).toMatchObject({
      iommu: "mock",
      kernel: "6.12",
      kconfig: { IOMMUFD_TEST: true },
      params: { "vfio.enable_unsafe_noiommu_mode": "1" },
      pci: [{ bdf: "0000:00:05.0", kind: "memcpy" }],
      seed: 9,
      noiommuRevision: "v7",
    });
    expect(r.opts.report).toBe(true);
    expect(r.rest).toEqual(["prog", "--iommu"]);
  });

  it("exits with the program's status, 128 + N for a signal, 127 when it cannot run; writes the trace", async () => {
    const bin = compileC(`${C_PRELUDE}
#include <signal.h>
int main(int argc, char **argv) {
  int fd = open("/dev/iommu", O_RDWR);
  if (argc > 1) raise(SIGTERM);
  return fd >= 0 ? 42 : 1;
}
`);
    const dir = mkdtempSync(join(tmpdir(), "exec-cli-"));
    const trace = join(dir, "t.txt");
    const r = await cli(["exec", "--trace", trace, "--", bin]);
    expect(r.code).toBe(42);
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(trace, "utf8")).toContain('open("/dev/iommu", O_RDWR) = 3');
    expect((await cli(["exec", "--", bin, "kill"])).code).toBe(128 + 15);
    const missing = await cli(["exec", "--", join(dir, "no-such-program")]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain("cannot run");
  });
});
