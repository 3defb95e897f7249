import { describe, expect, it } from "vitest";
import { execBin } from "../bridge/helpers.js";
import { buildDriver, DPDK_TEST, ealArgs, haveDpdk, inCI, ioctlNames } from "./helpers.js";

// The EAL in noiommu mode (legacy group, IOMMU type 8): IOVA as PA, which it
// takes from /proc/self/pagemap (the model's frame numbers, src/bridge/pagemap.ts)
// for its hugepage memory (memfd_create(MFD_HUGETLB) from the model's pool).
// test/dpdk/eal-type1.test.ts checks that the packages are there (in CI they must be).
const skip = !haveDpdk() && !inCI;
const NOIOMMU = ["--iommu", "none", "--param", "vfio.enable_unsafe_noiommu_mode=1"];

describe.skipIf(skip)("DPDK EAL, noiommu (legacy group, type 8)", () => {
  it("IOVA as PA from pagemap; the EAL maps the device and our driver copies by physical address", {
    timeout: 120_000,
  }, async () => {
    const driver = buildDriver();
    const r = await execBin(DPDK_TEST, NOIOMMU, [
      ...ealArgs(driver),
      "--in-memory",
      "--iova-mode=pa",
      "malloc_autotest",
    ]);
    const out = r.stdout + r.stderr;
    expect(out).toContain("Selected IOVA mode 'PA'");
    expect(out).toContain("EAL: Using IOMMU type 8 (No-IOMMU)");
    // the group is the noiommu one; the EAL tries types 1, 7 and 8 in that order and keeps 8
    expect(r.trace).toMatch(/open\("\/dev\/vfio\/noiommu-0", O_RDWR\) = \d+/);
    expect(r.trace).toMatch(/VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU\) = 1/);
    const sets = [...r.trace.matchAll(/VFIO_SET_IOMMU, (\w+)\) = (-1 \w+|0)/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(sets).toEqual([
      "VFIO_TYPE1_IOMMU -1 ENODEV",
      "VFIO_SPAPR_TCE_v2_IOMMU -1 ENODEV",
      "VFIO_NOIOMMU_IOMMU 0",
    ]);
    // no IOMMU: nothing is DMA-mapped; the device still gets its BAR, bus mastering, reset, REQ irq
    const calls = ioctlNames(r.trace);
    expect(calls).not.toContain("VFIO_IOMMU_MAP_DMA");
    for (const c of ["VFIO_GROUP_GET_DEVICE_FD", "VFIO_DEVICE_RESET", "VFIO_DEVICE_SET_IRQS"])
      expect(calls).toContain(c);
    // the driver's copy: IOVAs are physical addresses (the model's), not the virtual ones
    const copy =
      /memcpy_pmd: DMA copy of 65536 bytes ok: iova (0x[0-9a-f]+) -> (0x[0-9a-f]+) \(va (0x[0-9a-f]+) -> 0x[0-9a-f]+\), iova mode PA/.exec(
        out,
      );
    expect(copy).not.toBeNull();
    expect(copy?.[1]).not.toBe(copy?.[3]);
    // the device read and wrote frames nobody pinned: the legacy noiommu container never pins
    // (the EAL relies on hugepages staying put); the sanitizer says so
    expect(r.report).toContain(`0000:00:04.0 read ${copy?.[1]} +65536: stray address: frame not pinned`);
    expect(r.report).toContain(`0000:00:04.0 write ${copy?.[2]} +65536: stray address: frame not pinned`);
    expect(r.report).toContain(
      "0000:00:04.0 write 0x400000000000 +64: no RAM at physical address 0x400000000000",
    );
    expect(r.report).toContain("taint: TAINT_USER");
    expect(out).toContain("Test OK");
    expect(r.status).toBe(0);
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
    expect(r.report).toContain("model errors: 0, invariant violations: 0");
  });

  it("with --no-huge there are no physical addresses: the EAL takes IOVA as VA and refuses the device (DPDK's rule)", {
    timeout: 120_000,
  }, async () => {
    const driver = buildDriver();
    const r = await execBin(DPDK_TEST, NOIOMMU, [
      ...ealArgs(driver),
      "--no-huge",
      "-m",
      "64",
      "malloc_autotest",
    ]);
    const out = r.stdout + r.stderr;
    expect(out).toContain("Selected IOVA mode 'VA'");
    expect(out).toContain("Expecting 'PA' IOVA mode but current mode is 'VA', not initializing");
    expect(out).not.toContain("memcpy_pmd: DMA copy");
    expect(out).toContain("Test OK");
  });
});
