import { describe, expect, it } from "vitest";
import { execBin } from "../bridge/helpers.js";
import { buildDriver, DPDK_TEST, ealArgs, haveDpdk, inCI, ioctlNames } from "./helpers.js";

// DPDK's own EAL (Debian bookworm's 22.11) and test app, unmodified, through
// `iommufd-sim exec`, with our PCI driver for the memcpy device loaded by -d
// (examples/dpdk). CI installs the packages (.ci/run); a missing dpdk-test
// fails there, and is skipped (with the reason in the test's name) elsewhere.
const have = haveDpdk();
const skip = !have && !inCI;

it(`dpdk-test and libdpdk-dev are installed${have ? "" : inCI ? " (CI: required)" : " (absent: the DPDK tests are skipped; apt-get install -y dpdk-dev libdpdk-dev pkg-config)"}`, () => {
  if (inCI) expect(have, `${DPDK_TEST} or libdpdk.pc is missing in CI: .ci/run installs them`).toBe(true);
});

describe.skipIf(skip)("DPDK EAL, legacy VFIO container, type1 IOMMU", () => {
  it("binds the device through the container and group, maps all its memory, and runs malloc_autotest", async () => {
    const driver = buildDriver();
    const r = await execBin(DPDK_TEST, [], [...ealArgs(driver), "--no-huge", "-m", "64", "malloc_autotest"]);
    const out = r.stdout + r.stderr;
    expect(out).toContain("Selected IOVA mode 'VA'");
    expect(out).toContain("EAL: Using IOMMU type 1 (Type 1)");
    // the EAL asks for the IOMMU types it knows in order, then sets the first supported one
    const calls = ioctlNames(r.trace);
    expect(calls.filter((c) => c === "VFIO_CHECK_EXTENSION")).toHaveLength(3);
    expect(r.trace).toMatch(
      /VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU\) = 1\n.*VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU\) = 0\n.*VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU\) = 0\n/,
    );
    const order = [
      "VFIO_GET_API_VERSION",
      "VFIO_GROUP_GET_STATUS",
      "VFIO_GROUP_SET_CONTAINER",
      "VFIO_SET_IOMMU",
      "VFIO_IOMMU_MAP_DMA",
      "VFIO_GROUP_GET_DEVICE_FD",
      "VFIO_DEVICE_GET_INFO",
      "VFIO_DEVICE_GET_REGION_INFO",
    ];
    const at = order.map((c) => calls.indexOf(c));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(r.trace).toMatch(/VFIO_GROUP_GET_STATUS, \{argsz=8, flags=VIABLE\}\) = 0/);
    expect(r.trace).toMatch(/VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU\) = 0/);
    // --no-huge: one memfd-backed segment list of 64 MiB, mapped IOVA = VA in one call
    const map =
      /VFIO_IOMMU_MAP_DMA, \{argsz=32, flags=READ\|WRITE, vaddr=(0x[0-9a-f]+), iova=(0x[0-9a-f]+), size=0x4000000\}\) = 0/.exec(
        r.trace,
      );
    expect(map).not.toBeNull();
    expect(map?.[1]).toBe(map?.[2]);
    expect(r.trace).toContain('VFIO_GROUP_GET_DEVICE_FD, "0000:00:04.0")');
    // the sysfs files the PCI bus scan reads, answered by the model
    for (const f of ["vendor", "device", "class", "numa_node", "resource"])
      expect(r.trace).toContain(`open("/sys/bus/pci/devices/0000:00:04.0/${f}", O_RDONLY) = `);
    expect(r.trace).toMatch(
      /open\("\/sys\/module\/vfio\/parameters\/enable_unsafe_noiommu_mode", O_RDONLY\) = \d+/,
    );
    expect(out).toContain("Test OK");
    expect(r.status).toBe(0);
    // dpdk-test exits without closing its VFIO fds: the model released everything
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.report).toContain("model errors: 0, invariant violations: 0");
  });
});
