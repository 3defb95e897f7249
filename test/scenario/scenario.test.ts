import { describe, expect, it } from "vitest";
import { parseScenario, runScenario, ScenarioError } from "../../src/scenario/index.js";
import { toBig, toBytes, toFlags } from "../../src/scenario/values.js";

const run = (yaml: string) => runScenario(parseScenario(yaml, "t.yaml"));

describe("scenario values", () => {
  const vars = new Map<string, bigint | string>([["buf", 0x7f0000000000n]]);
  it("reads sizes, hex, constants and $var expressions exactly", () => {
    expect(toBig("2M", vars, "x")).toBe(2n << 20n);
    expect(toBig("4KiB", vars, "x")).toBe(4096n);
    expect(toBig("1G", vars, "x")).toBe(1n << 30n);
    expect(toBig("0x1_000", vars, "x")).toBe(4096n);
    expect(toBig("U64_MAX", vars, "x")).toBe((1n << 64n) - 1n);
    expect(toBig("$buf + 2M - 4K", vars, "x")).toBe(0x7f0000000000n + (2n << 20n) - 4096n);
    expect(toBig("VFIO_TYPE1v2_IOMMU", vars, "x")).toBe(3n);
    expect(toBig(12n, vars, "x")).toBe(12n);
    expect(() => toBig("$nope", vars, "x")).toThrow(/variable \$nope is not set/);
    expect(() => toBig("2Q", vars, "x")).toThrow(ScenarioError);
  });
  it("reads flags by short or prefixed name, and rejects unknown ones", () => {
    const t = { FIXED_IOVA: 1n, WRITEABLE: 2n, READABLE: 4n };
    expect(toFlags(["FIXED_IOVA", "READABLE"], t, vars, "f")).toBe(5n);
    expect(toFlags("IOMMU_IOAS_MAP_WRITEABLE|READABLE", t, vars, "f")).toBe(6n);
    expect(toFlags(0x10, t, vars, "f")).toBe(16n);
    expect(() => toFlags(["WRITABLE"], t, vars, "f")).toThrow(
      /unknown flag WRITABLE \(known: FIXED_IOVA, WRITEABLE, READABLE\)/,
    );
  });
  it("reads bytes as hex, text, fill and little-endian words", () => {
    expect([...toBytes("de ad be ef", vars, "d")]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    expect([...toBytes({ text: "hi" }, vars, "d")]).toEqual([0x68, 0x69]);
    expect([...toBytes({ fill: 0xab, len: 3 }, vars, "d")]).toEqual([0xab, 0xab, 0xab]);
    expect([...toBytes({ u32: 0x5950434d }, vars, "d")]).toEqual([0x4d, 0x43, 0x50, 0x59]);
    expect([...toBytes(["01", { u16: 0x302 }], vars, "d")]).toEqual([1, 2, 3]);
    expect(() => toBytes("xyz", vars, "d")).toThrow(/not hex bytes/);
  });
});

describe("scenario files", () => {
  it("names the line of a mistake", () => {
    expect(() => parseScenario("steps:\n  - opn: /dev/iommu\n")).toThrow(
      /step 1 \(line 2\): no step kind among its keys \(opn\)/,
    );
    expect(() => parseScenario("machine: { iommu: amd, ram: 1G }\nsteps: []\n")).toThrow(
      /machine: unknown key "ram"/,
    );
    expect(() => parseScenario("steps:\n  - open: x\n    expect: { errnum: EINVAL }\n")).toThrow(
      /unknown expectation "errnum"/,
    );
    try {
      parseScenario("steps:\n  - open: /dev/iommu\n  - close: 0\n    len: 3\n");
      expect.unreachable();
    } catch (e) {
      expect((e as ScenarioError).line).toBe(3);
    }
  });

  it("reports a bad machine option as a scenario error, not a crash", () => {
    const r = run("machine: { iommu: sparc }\nsteps: []\n");
    expect(r.ok).toBe(false);
    expect(r.failure).toMatchObject({ kind: "scenario", where: "machine" });
    expect(r.failure?.message).toContain('unknown iommu kind "sparc" (amd, intel, spapr, mock, none)');
  });

  it("captures results and output fields into variables", () => {
    const r = run(`
steps:
  - open: /dev/iommu
    as: fd
  - ioctl: IOMMU_IOAS_ALLOC
    fd: $fd
    capture: { a: out_ioas_id, rc: ret }
  - ioctl: IOMMU_IOAS_ALLOC
    fd: $fd
    as: b
  - ioctl: IOMMU_DESTROY
    fd: $fd
    arg: { id: $a }
`);
    expect(r.failure).toBeUndefined();
    expect(r.vars.get("a")).toBe(1n);
    expect(r.vars.get("rc")).toBe(0n);
    expect(r.vars.get("b")).toBe(2n);
  });

  it("stops at the first failed expectation and says what was expected and got", () => {
    const r = run(`
steps:
  - open: /dev/iommu
    as: fd
  - ioctl: IOMMU_IOAS_ALLOC
    fd: $fd
    expect: { out: { out_ioas_id: 7 } }
  - close: $fd
`);
    expect(r.ok).toBe(false);
    expect(r.results).toHaveLength(2);
    expect(r.failure).toEqual({
      kind: "expectation",
      where: "step 2 (line 5): ioctl IOMMU_IOAS_ALLOC",
      message: "expected out_ioas_id=7, got out_ioas_id=1",
    });
  });

  it("checks errno, rc, reason, data, listings and text", () => {
    const r = run(`
steps:
  - close: 42
    expect: { errno: EBADF, rc: -9 }
  - mmap: { len: 8K }
    as: va
  - write_memory: $va + 4K
    data: { u32: 0x12345678 }
  - read_memory: $va + 4K
    len: 4
    expect: { data: "78 56 34 12" }
    capture: { w: u32, hi: u16@2 }
  - list_dir: /sys/module/vfio/parameters
    expect: { contains: [enable_unsafe_noiommu_mode], absent: [nonsense] }
  - read_file: /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
    expect: { text: "N" }
  - set_param: vfio.enable_unsafe_noiommu_mode
    value: "Y"
  - read_file: /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
    expect: { text: "Y" }
  - set_param: vfio.no_such_param
    value: 1
    expect: { errno: ENOENT }
`);
    expect(r.failure).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.vars.get("w")).toBe(0x12345678n);
    expect(r.vars.get("hi")).toBe(0x1234n);
  });

  it("a wrong errno expectation fails with the reason the kernel gave", () => {
    const r = run("steps:\n  - close: 42\n    expect: { errno: EINVAL }\n");
    expect(r.failure?.message).toMatch(/^expected EINVAL, got EBADF \(.+\)$/);
  });

  it("repeat unrolls with a counter variable", () => {
    const r = run(`
steps:
  - repeat: 3
    var: k
    steps:
      - eventfd: $k
        as: e
  - check_counters: { openFiles: 3 }
`);
    expect(r.ok).toBe(true);
    expect(r.results.map((x) => x.where)).toEqual([
      "step 1.1 (line 6) [k=0]",
      "step 1.1 (line 6) [k=1]",
      "step 1.1 (line 6) [k=2]",
      "step 2 (line 8)",
    ]);
  });

  it("check_counters, check_invariants, check_taint, check_dma", () => {
    const bad = run("steps:\n  - check_counters: { openFiles: 5 }\n");
    expect(bad.failure?.message).toBe("expected counter openFiles = 5, got 0");
    const unknown = run("steps:\n  - check_counters: { bogus: 1 }\n");
    expect(unknown.failure?.kind).toBe("scenario");
    const ok = run(
      "steps:\n  - check_invariants: true\n  - check_taint: []\n  - check_dma: { none: true, count: 0, faults: 0 }\n",
    );
    expect(ok.ok).toBe(true);
  });

  it("read_phys sees what a process wrote, through its physical page", () => {
    // The page's PA comes from the noiommu cdev's IOMMU_IOAS_NOIOMMU_GET_PA.
    const scenario = (expectText: string) => `
machine:
  iommu: none
  memory: 256M
  pci: [{ bdf: "0000:00:04.0", kind: memcpy }]
  params: { vfio.enable_unsafe_noiommu_mode: true }
processes:
  - { name: driver, caps: [CAP_SYS_RAWIO], rlimitMemlock: 64M }
steps:
  - bind_driver: "0000:00:04.0"
  - open: /dev/vfio/devices/noiommu-vfio0
    as: dev
  - open: /dev/iommu
    as: iommufd
  - bind_iommufd: $dev
    iommufd: $iommufd
  - ioas_alloc: $iommufd
    as: ioas
  - attach_pt: $dev
    pt: $ioas
  - mmap: { len: 4K }
    as: va
  - write_memory: $va + 0x10
    data: { text: "phys" }
  - ioas_map: $iommufd
    ioas: $ioas
    va: $va
    length: 4K
    iova: 1M
  - ioctl: IOMMU_IOAS_NOIOMMU_GET_PA
    fd: $iommufd
    arg: { ioas_id: $ioas, iova: 1M, length: 4K }
    capture: { pa: out_phys }
  - read_phys: $pa + 0x10
    len: 4
    expect: { data: { text: "${expectText}" } }
  - read_phys: 1T
    len: 4
    expect: { errno: EINVAL }
`;
    const r = run(scenario("phys"));
    expect(r.failure).toBeUndefined();
    expect(r.ok).toBe(true);
    // and the comparison is real: other bytes are a failed expectation
    const wrong = run(scenario("phyz"));
    expect(wrong.ok).toBe(false);
    expect(wrong.failure?.kind).toBe("expectation");
  });

  it("processes are chosen per step and keep their own fds", () => {
    const r = run(`
processes:
  - { name: a }
  - { name: b, caps: [CAP_SYS_RAWIO] }
steps:
  - eventfd: 0
    process: b
    as: e
  - close: $e
    expect: { errno: EBADF }
  - close: $e
    process: b
  - close: 0
    process: c
`);
    expect(r.failure?.kind).toBe("scenario");
    expect(r.failure?.message).toContain("no process named c");
    expect(r.results).toHaveLength(3);
  });

  it("a process with an unknown capability is a scenario error", () => {
    const r = run("processes:\n  - { caps: [CAP_FLY] }\nsteps: []\n");
    expect(r.failure?.message).toMatch(/unknown capability CAP_FLY/);
  });
});
