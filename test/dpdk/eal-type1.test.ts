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
  it("binds the device through the container and group, maps its memory, probes our driver (a DMA copy), runs malloc_autotest", {
    timeout: 120_000,
  }, async () => {
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
      "VFIO_DEVICE_RESET",
      "VFIO_DEVICE_SET_IRQS",
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
    // BAR0 mapped (the bridge traps the mapping), bus mastering on, a reset, the REQ irq on an eventfd
    expect(r.trace).toMatch(
      /mmap\(0x[0-9a-f]+, 0x1000, PROT_READ\|PROT_WRITE, MAP_SHARED\|MAP_FIXED, \d+, 0x0\) = 0x[0-9a-f]+/,
    );
    expect(r.trace).toMatch(/pwrite64\(\d+, <2 bytes>, 0x70000000004\) = 2\n.*VFIO_DEVICE_RESET\) = 0\n/);
    expect(r.trace).toMatch(
      /VFIO_DEVICE_SET_IRQS, \{argsz=24, flags=DATA_EVENTFD\|ACTION_TRIGGER, index=4, start=0, count=1\}\) = 0/,
    );
    // our driver's probe: MMIO through the mapping, a DMA copy checked in DPDK memory, a refused DMA
    expect(out).toMatch(
      /memcpy_pmd: 0000:00:04.0: BAR0 4096 bytes mapped at 0x[0-9a-f]+, VFIO device fd \d+, registers by MMIO/,
    );
    expect(out).toMatch(
      /memcpy_pmd: DMA copy of 65536 bytes ok: iova (0x[0-9a-f]+) -> 0x[0-9a-f]+ \(va \1 -> 0x[0-9a-f]+\), iova mode VA/,
    );
    expect(out).toContain("memcpy_pmd: DMA to unmapped iova 0x400000000000 refused: status 3");
    expect(r.report).toMatch(/0000:00:04.0 write 0x400000000000 \+64: out-of-range/);
    expect(out).toContain("Test OK");
    expect(r.status).toBe(0);
    // dpdk-test exits without closing its VFIO fds: the model released everything
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.report).toContain("model errors: 0, invariant violations: 0");
  });

  it("--in-memory: hugepages from the model's pool; about a thousand MAP/UNMAP_DMA; malloc_autotest and memzone_autotest pass", {
    timeout: 240_000,
  }, async () => {
    const driver = buildDriver();
    const r = await execBin(
      DPDK_TEST,
      [],
      [...ealArgs(driver), "--in-memory", "malloc_autotest", "memzone_autotest"],
    );
    const out = r.stdout + r.stderr;
    // the host has no huge pages; the EAL sees the model's pools (unlimited: no reservations)
    expect(out).toMatch(/\d+ hugepages of size 2097152 reserved, but no mounted hugetlbfs found/);
    expect(out).toContain("EAL: Using IOMMU type 1 (Type 1)");
    expect(out).toMatch(
      /memcpy_pmd: DMA copy of 65536 bytes ok: iova (0x[0-9a-f]+) -> 0x[0-9a-f]+ \(va \1 -> 0x[0-9a-f]+\), iova mode VA/,
    );
    expect(out).toContain("2MB Huge pages available");
    expect(out.match(/Test OK/g)).toHaveLength(2);
    expect(out).not.toContain("Test Failed");
    expect(r.status).toBe(0);
    // each segment is a memfd the model backs with a huge folio of its pool
    const segs = r.trace.match(
      /memfd_create\("seg_\d+-\d+", MFD_HUGETLB\) = \d+ \(an ordinary memfd: its pages are 2\^21 byte folios/g,
    );
    expect(segs?.length ?? 0).toBeGreaterThan(100);
    // the EAL maps each segment the heap gains for the device (IOVA = VA) and unmaps each it
    // loses, from whichever lcore allocates: the shim serves the program's threads at once
    expect(r.trace).toMatch(
      /VFIO_IOMMU_MAP_DMA, \{argsz=32, flags=READ\|WRITE, vaddr=(0x[0-9a-f]+), iova=\1, size=0x200000\}\) = 0/,
    );
    const calls = ioctlNames(r.trace);
    // about a thousand each: 985 to 1026 over runs here (the lcore threads race for the heap)
    expect(calls.filter((c) => c === "VFIO_IOMMU_MAP_DMA").length).toBeGreaterThan(800);
    expect(calls.filter((c) => c === "VFIO_IOMMU_UNMAP_DMA").length).toBeGreaterThan(800);
    expect(r.trace).not.toMatch(/VFIO_IOMMU_(UN)?MAP_DMA, .*\) = -1/);
    expect(r.counters.pinnedPages).toBe(0);
    expect(r.counters.openFiles).toBe(0);
    expect(r.counters.ownedFrames).toBe(0);
    expect(r.report).toContain("model errors: 0, invariant violations: 0");
  });
});
