// All state belongs to its Machine: two machines built alike behave alike,
// byte for byte, whatever else ran before them in the same Node process and
// however their calls interleave. Compared: the `trace` and `inspect` output
// of the CLI (text and --json), and for interleaved runs every syscall's
// trace line, reason, counters, DMA log, kernel log and page-table dump.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatTraceEvent } from "../../src/cli/trace-format.js";
import { Machine, type MachineOptions } from "../../src/index.js";
import type { Process } from "../../src/kernel/process.js";
import { IOMMU_HWPT_ALLOC, IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP } from "../../src/uapi/iommufd.js";
import { cli } from "../cli/helpers.js";

/** The iommufd path on a machine with an IOMMU: maps, two devices, DMA, and failures. */
function iommufdScenario(kind: "amd" | "intel" | "mock"): string {
  return `
name: alike-${kind}
machine:
  iommu: ${kind}
  memory: 1G
  pci:
    - { bdf: "0000:00:04.0", kind: memcpy }
    - { bdf: "0000:00:05.0", kind: memcpy, flags: { noEnforceCoherency: true } }
  seed: 1
processes:
  - { name: vmm, rlimitMemlock: 64M }
steps:
  - bind_driver: "0000:00:04.0"
  - bind_driver: "0000:00:05.0"
  - open: /dev/vfio/devices/vfio0
    as: dev0
  - open: /dev/vfio/devices/vfio1
    as: dev1
  - open: /dev/iommu
    as: iommufd
  - bind_iommufd: $dev0
    iommufd: $iommufd
    as: devid0
  - bind_iommufd: $dev1
    iommufd: $iommufd
  - ioas_alloc: $iommufd
    as: ioas
  - mmap: { len: 2M }
    as: src
  - mmap: { len: 2M }
    as: dst
  - write_memory: $src
    data: { text: "alike" }
  - ioas_map: $iommufd
    ioas: $ioas
    va: $src
    length: 2M
    iova: 2M
  - ioas_map: $iommufd
    ioas: $ioas
    va: $dst
    length: 2M
    iova: 4M
  - ioas_map: $iommufd
    ioas: $ioas
    va: $dst
    length: 2M
    iova: 3M
    expect: { errno: EEXIST }
  - ioctl: IOMMU_HWPT_ALLOC
    fd: $iommufd
    arg: { dev_id: $devid0, pt_id: $ioas }
    capture: { hwpt: out_hwpt_id }
  - attach_pt: $dev0
    pt: $hwpt
  - attach_pt: $dev1
    pt: $hwpt
    expect: { any: true }
  - device_dma: $dev0
    src: 2M
    dst: 4M
    len: 5
    expect: { out: { status: 2 } }
  - device_dma: $dev0
    src: 8M
    dst: 4M
    len: 5
    expect: { out: { status: 3 } }
  - destroy: $iommufd
    id: $ioas
    expect: { errno: EBUSY }
  - fail_nth: 3
  - ioas_map: $iommufd
    ioas: $ioas
    va: $src
    length: 2M
    iova: 16M
    expect: { any: true }
  - fail_nth: 0
  - ioas_unmap: $iommufd
    ioas: $ioas
    iova: 4M
    length: 2M
  - check_invariants: true
`;
}

const SCENARIOS: Record<string, string> = {
  amd: iommufdScenario("amd"),
  intel: iommufdScenario("intel"),
  mock: iommufdScenario("mock"),
  spapr: readFileSync("examples/demo-ppc64.yaml", "utf8"),
  "spapr-iommufd": readFileSync("examples/ppc64-iommufd-two-windows.yaml", "utf8"),
  none: readFileSync("examples/demo-noiommu.yaml", "utf8"),
};

/** Everything the CLI prints about a run of `name`: trace and inspect, text and JSON. */
async function render(name: string): Promise<string> {
  const file = `${name}.yaml`;
  const files = { [file]: SCENARIOS[name] };
  let s = "";
  for (const argv of [
    ["trace", file],
    ["trace", "--verbose", file],
    ["inspect", file],
    ["inspect", "--json", file],
  ]) {
    const r = await cli(argv, { files });
    s += `$ ${argv.join(" ")} -> ${r.code}\n${r.stdout}${r.stderr}`;
  }
  return s;
}

describe("machines built alike behave alike in one process", () => {
  const names = Object.keys(SCENARIOS);

  it("every configuration renders the same trace and inspect output in both orders", async () => {
    const forward = new Map<string, string>();
    for (const n of names) forward.set(n, await render(n));
    const backward = new Map<string, string>();
    for (const n of [...names].reverse()) backward.set(n, await render(n));
    for (const n of names) {
      expect(forward.get(n)).toContain("$ inspect --json");
      expect(backward.get(n), n).toBe(forward.get(n));
    }
  });

  it("the runs exercise what they claim: DMA, a fault, failures with reasons", async () => {
    const out = await render("intel");
    expect(out).toContain("EEXIST");
    expect(out).toContain("EBUSY");
    // the second device cannot join a domain that enforces coherency; the reason names the domain
    expect(out).toMatch(/domain \d+ enforces cache coherency/);
    expect(out).toContain('"result": "fault"');
  });
});

/**
 * A scenario as calls on a machine, one at a time, so two machines' calls can
 * interleave. Each step returns nothing; results land in the trace.
 */
function interleavedSteps(
  opts: MachineOptions,
): ((m: Machine, s: Record<string, Process | number>) => void)[] {
  const u8 = (n: number) => new Uint8Array(n);
  const dv = (b: Uint8Array) => new DataView(b.buffer);
  const bdfs = (opts.pci ?? []).map((d) => d.bdf);
  const steps: ((m: Machine, s: Record<string, Process | number>) => void)[] = [];
  const p = (s: Record<string, Process | number>) => s.p as Process;
  const n = (s: Record<string, Process | number>, k: string) => s[k] as number;
  for (const bdf of bdfs) steps.push((m) => m.bindDriver(bdf, "vfio-pci"));
  steps.push((m, s) => {
    s.p = m.spawn({ rlimitMemlock: 64n << 20n });
  });
  steps.push((_m, s) => {
    s.fd = p(s).open("/dev/iommu");
  });
  steps.push((_m, s) => {
    const a = u8(12);
    dv(a).setUint32(0, 12, true);
    p(s).ioctl(n(s, "fd"), IOMMU_IOAS_ALLOC, a);
    s.ioas = dv(a).getUint32(8, true);
  });
  steps.push((_m, s) => {
    s.va = Number(p(s).mmap(0n, 4n << 20n, 3, 0x22));
  });
  for (const [iova, ok] of [
    [1 << 21, true],
    [1 << 22, true],
    [3 << 20, false],
  ] as const) {
    steps.push((_m, s) => {
      const a = u8(40);
      const v = dv(a);
      v.setUint32(0, 40, true);
      v.setUint32(4, 7, true); // FIXED_IOVA | WRITEABLE | READABLE
      v.setUint32(8, n(s, "ioas"), true);
      v.setBigUint64(16, BigInt(n(s, "va") + (ok ? 0 : 1 << 20)), true);
      v.setBigUint64(24, 1n << 21n, true);
      v.setBigUint64(32, BigInt(iova), true);
      p(s).ioctl(n(s, "fd"), IOMMU_IOAS_MAP, a);
    });
  }
  bdfs.forEach((_bdf, i) => {
    steps.push((_m, s) => {
      s[`dev${i}`] = p(s).open(`/dev/vfio/devices/vfio${i}`);
    });
  });
  steps.push((_m, s) => {
    // HWPT_ALLOC with a device id nothing bound: ENOENT with a reason
    const a = u8(48);
    dv(a).setUint32(0, 48, true);
    dv(a).setUint32(8, 77, true);
    dv(a).setUint32(12, n(s, "ioas"), true);
    p(s).ioctl(n(s, "fd"), IOMMU_HWPT_ALLOC, a);
  });
  steps.push((m) => m.debug.failNth(2));
  steps.push((_m, s) => {
    const a = u8(12);
    dv(a).setUint32(0, 12, true);
    p(s).ioctl(n(s, "fd"), IOMMU_IOAS_ALLOC, a);
  });
  steps.push((m) => m.debug.failNth(0));
  steps.push((_m, s) => {
    p(s).close(n(s, "fd"));
  });
  return steps;
}

/** What can be seen of a machine after a run: its trace with reasons, counters, DMA log, dmesg, taint, domains. */
function observe(m: Machine): string {
  const domains = m.iommu.liveDomains().map((d) => `domain ${d.id} ${d.type} ${d.use ?? ""}`);
  const lines = m.debug.trace().map((ev) => `${formatTraceEvent(ev)}${ev.reason ? ` # ${ev.reason}` : ""}`);
  return [
    ...lines,
    JSON.stringify(m.debug.counters()),
    ...m.debug.failures().map((f) => `${f.call} ${f.errno} ${f.reason}`),
    ...m.debug.dmaLog().map((e) => `${e.device} ${e.op} ${e.addr} ${e.len} ${e.result} ${e.finding ?? ""}`),
    ...m.debug.dmesg(),
    m.debug.taint().join(","),
    ...m.debug.checkInvariants(),
    ...domains,
  ].join("\n");
}

describe("two machines stepped in turn", () => {
  const configs: MachineOptions[] = [
    { iommu: "amd", memoryBytes: 1n << 30n },
    { iommu: "intel", memoryBytes: 1n << 30n },
    { iommu: "mock", memoryBytes: 1n << 30n },
    { iommu: "spapr", memoryBytes: 1n << 30n },
    {
      iommu: "none",
      memoryBytes: 1n << 30n,
      params: { "vfio.enable_unsafe_noiommu_mode": true },
    },
  ];
  for (const c of configs) {
    it(`${c.iommu}: interleaved calls give both the same trace, reasons and state`, () => {
      const opts: MachineOptions = {
        ...c,
        seed: 1,
        trace: true,
        pci: [
          { bdf: "0000:00:04.0", kind: "memcpy" },
          { bdf: "0000:00:05.0", kind: "memcpy" },
        ],
      };
      const a = new Machine(opts);
      const b = new Machine(opts);
      const steps = interleavedSteps(opts);
      const sa: Record<string, Process | number> = {};
      const sb: Record<string, Process | number> = {};
      for (const step of steps) {
        step(a, sa);
        step(b, sb);
      }
      const oa = observe(a);
      expect(oa).toContain("ENOENT");
      expect(observe(b)).toBe(oa);
      // and a third machine, built after both, alone
      const cm = new Machine(opts);
      const sc: Record<string, Process | number> = {};
      for (const step of steps) step(cm, sc);
      expect(observe(cm)).toBe(oa);
    });
  }
});
