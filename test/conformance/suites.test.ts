import { describe, expect, it } from "vitest";
import { execArgs, PROGRAMS, programEnv, TREES } from "../../src/conformance/suites.js";

describe("conformance suites", () => {
  it("every tree lists its programs; the VFIO tree has the seven 7.2 programs", () => {
    expect(TREES).toEqual(["6.12", "7.2", "vfio", "noiommu"]);
    expect(PROGRAMS.vfio).toHaveLength(7);
    expect(PROGRAMS.noiommu).toEqual(["vfio_iommufd_noiommu_test"]);
  });

  it("the iommufd selftests run on the mock IOMMU with IOMMUFD_TEST, 6.12 with its UAPI profile", () => {
    expect(execArgs("6.12", "iommufd", "/b/iommufd")).toEqual([
      "exec",
      "--iommu",
      "mock",
      "--kconfig",
      "IOMMUFD_TEST=y",
      "--kernel",
      "6.12",
      "--",
      "/b/iommufd",
    ]);
    expect(execArgs("7.2", "iommufd", "/b/iommufd")).not.toContain("--kernel");
    expect(programEnv("7.2", "iommufd")).toEqual({});
  });

  it("the VFIO programs get their device from VFIO_SELFTESTS_BDF; dma_mapping runs on Intel", () => {
    expect(programEnv("vfio", "vfio_pci_device_test")).toEqual({ VFIO_SELFTESTS_BDF: "0000:00:04.0" });
    expect(execArgs("vfio", "vfio_dma_mapping_test", "/p")).toEqual(["exec", "--iommu", "intel", "--", "/p"]);
    const perf = execArgs("vfio", "vfio_pci_device_init_perf_test", "/p");
    // each BDF on the command line is a device of the machine
    const bdfs = perf.slice(perf.indexOf("/p") + 1);
    expect(bdfs.length).toBeGreaterThan(1);
    for (const b of bdfs) expect(perf).toContain(`${b}=memcpy`);
  });

  it("the driver test runs on the emulated IOAT channel (ioat.c claims it) behind VT-d", () => {
    expect(execArgs("vfio", "vfio_pci_driver_test", "/p")).toEqual([
      "exec",
      "--iommu",
      "intel",
      "--pci",
      "0000:00:04.0=ioat",
      "--",
      "/p",
    ]);
    expect(programEnv("vfio", "vfio_pci_driver_test")).toEqual({ VFIO_SELFTESTS_BDF: "0000:00:04.0" });
  });

  it("the noiommu selftest runs without an IOMMU, noiommu mode on, GET_PA revision v7 (0 = no limit)", () => {
    const a = execArgs("noiommu", "vfio_iommufd_noiommu_test", "/p");
    expect(a.slice(0, a.indexOf("--"))).toEqual([
      "exec",
      "--iommu",
      "none",
      "--param",
      "vfio.enable_unsafe_noiommu_mode=1",
      "--noiommu-revision",
      "v7",
    ]);
    expect(programEnv("noiommu", "vfio_iommufd_noiommu_test").VFIO_SELFTESTS_BDF).toBe("0000:00:04.0");
  });
});

describe("npm run conformance -- --help", () => {
  it("prints the options, every tree's binaries and how to run one test by hand, and exits 0", async () => {
    const { main, usage } = await import("../../src/conformance/main.js");
    const text = usage();
    for (const opt of ["--tree", "--bin", "--update", "--no-docs", "--timeout", "--hugepages"])
      expect(text).toContain(opt);
    for (const t of TREES) expect(text).toContain(`${t.padEnd(8)} ${PROGRAMS[t].join(", ")}`);
    expect(text).toContain("--iommu mock --kconfig IOMMUFD_TEST=y -- BIN -r FIXTURE.VARIANT.TEST");
    const out: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => out.push(s) > 0) as typeof process.stdout.write;
    try {
      expect(await main(["--help"])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    expect(out.join("")).toBe(text);
  });
});
