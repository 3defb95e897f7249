import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatTraceEvent } from "../../src/cli/trace-format.js";
import { Machine, RecordError, recordScenario } from "../../src/index.js";
import type { TraceEvent } from "../../src/kernel/trace.js";
import { parseScenario, type RunResult, runScenario } from "../../src/scenario/index.js";
import {
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_IOAS_UNMAP,
  iommu_ioas_alloc,
  iommu_ioas_map,
  iommu_ioas_unmap,
} from "../../src/uapi/iommufd.js";
import { decode, encode } from "../../src/uapi/struct.js";

const EX = new URL("../../examples/", import.meta.url);

function lines(m: Machine): string[] {
  const ev = m.tracer.events.map((e) =>
    formatTraceEvent(e, (m.options.kernel ?? "latest") as never, { pid: true }),
  );
  const ops = m.tracer.ops.map(
    (o: TraceEvent) => `${o.pid} ${o.call}(${o.args.map(String).join(", ")}) = ${o.ret}`,
  );
  return [...ev, ...ops];
}

function replay(yaml: string): RunResult {
  const r = runScenario(parseScenario(yaml, "recorded.yaml"), { trace: true });
  if (!r.ok) throw new Error(`replay failed: ${r.failure?.where}: ${r.failure?.message}\n${yaml}`);
  return r;
}

function recordRun(file: string): { orig: RunResult; yaml: string } {
  const sc = parseScenario(readFileSync(new URL(file, EX), "utf8"), file);
  const orig = runScenario(sc, { trace: true });
  const names = new Map([...orig.processes].map(([n, p]) => [p.pid, n]));
  const yaml = recordScenario(orig.machine as Machine, { name: sc.name, processNames: names });
  return { orig, yaml };
}

describe("recordScenario: every example replays to the identical trace", () => {
  const files = readdirSync(EX).filter((f) => f.endsWith(".yaml"));
  for (const f of files) {
    it(f, () => {
      const { orig, yaml } = recordRun(f);
      const again = replay(yaml);
      expect(lines(again.machine as Machine)).toEqual(lines(orig.machine as Machine));
      expect(again.machine?.debug.counters()).toEqual(orig.machine?.debug.counters());
    });
  }
});

/** A program using the library directly: /dev/iommu, IOAS alloc, mmap, map, a failing unmap. */
function libraryRun(): Machine {
  const m = new Machine({ iommu: "intel", memoryBytes: 1n << 30n, seed: 7, trace: true });
  const p = m.spawn({ caps: ["CAP_IPC_LOCK"], rlimitMemlock: 16n << 20n });
  const fd = p.open("/dev/iommu");
  const alloc = encode(iommu_ioas_alloc, { size: iommu_ioas_alloc.size });
  expect(p.ioctl(fd, IOMMU_IOAS_ALLOC, alloc)).toBe(0);
  const ioas = decode(iommu_ioas_alloc, alloc).out_ioas_id;
  const buf = p.mmap(0n, 4n << 20n, 3, 0x22);
  expect(buf > 0n).toBe(true);
  const map = encode(iommu_ioas_map, {
    size: iommu_ioas_map.size,
    flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
    ioas_id: ioas,
    user_va: buf + 0x200000n,
    length: 2n << 20n,
    iova: 1n << 30n,
  });
  expect(p.ioctl(fd, IOMMU_IOAS_MAP, map)).toBe(0);
  const unmap = encode(iommu_ioas_unmap, {
    size: iommu_ioas_unmap.size,
    ioas_id: ioas,
    iova: 2n << 30n,
    length: 4096n,
  });
  expect(p.ioctl(fd, IOMMU_IOAS_UNMAP, unmap)).toBe(-2);
  expect(p.close(99)).toBe(-9);
  return m;
}

describe("recordScenario: a library program", () => {
  it("records the machine, the process, pointers through mmap variables and errors as errno expectations", () => {
    const m = libraryRun();
    const yaml = recordScenario(m, { name: "lib" });
    expect(yaml).toContain("machine: { iommu: intel, memory: 1G, seed: 7 }");
    expect(yaml).toContain("- { name: p, caps: [CAP_IPC_LOCK], rlimitMemlock: 16M }");
    expect(yaml).toContain("as: ioas");
    expect(yaml).toContain("user_va: $buf + 2M");
    expect(yaml).toContain("ioas_id: $ioas");
    expect(yaml).toMatch(/ioctl: IOMMU_IOAS_UNMAP[\s\S]*expect: \{ errno: ENOENT \}/);
    expect(yaml).toMatch(/close: 99\n {4}expect: \{ errno: EBADF \}/);
    const again = replay(yaml);
    expect(lines(again.machine as Machine)).toEqual(lines(m));
    expect(again.machine?.debug.counters()).toEqual(m.debug.counters());
  });

  it("a struct in the program's own memory is passed by pointer: `$buf + off` with the request number", () => {
    const m = new Machine({ trace: true });
    const p = m.spawn();
    const fd = p.open("/dev/iommu");
    const buf = p.mmap(0n, 4096n, 3, 0x22);
    expect(p.writeMemory(buf + 0x100n, encode(iommu_ioas_alloc, { size: iommu_ioas_alloc.size }))).toBe(0);
    expect(p.ioctl(fd, IOMMU_IOAS_ALLOC, buf + 0x100n)).toBe(0);
    const yaml = recordScenario(m);
    expect(yaml).toContain(`ioctl: 0x${IOMMU_IOAS_ALLOC.toString(16)}`);
    expect(yaml).toContain("arg: $buf + 0x100");
    const again = replay(yaml);
    expect(lines(again.machine as Machine)).toEqual(lines(m));
  });

  it("bind_driver, unbind_driver, set_param and fail_nth are recorded in order, failures as errno", () => {
    const m = new Machine({ trace: true });
    const p = m.spawn();
    expect(m.setParam("vfio.no_such_param", true)).toBe(-2);
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.unbindDriver("0000:00:04.0")).toBe(0);
    m.debug.failNth(1);
    expect(p.open("/dev/iommu")).toBeLessThan(0);
    const yaml = recordScenario(m);
    expect(yaml).toMatch(/set_param: vfio.no_such_param\n {4}value: true\n {4}expect: \{ errno: ENOENT \}/);
    expect(yaml).toMatch(
      /bind_driver[\s\S]*unbind_driver[\s\S]*fail_nth: 1[\s\S]*open: \/dev\/iommu\n {4}expect: \{ errno: ENOMEM \}/,
    );
    const again = replay(yaml);
    expect(lines(again.machine as Machine)).toEqual(lines(m));
  });

  it("refuses a machine without a trace, and a forked child (no step for fork yet)", () => {
    expect(() => recordScenario(new Machine())).toThrow(RecordError);
    const m = new Machine({ trace: true });
    const child = m.spawn().fork();
    expect(typeof child).not.toBe("number");
    if (typeof child !== "number") child.open("/dev/iommu");
    expect(() => recordScenario(m)).toThrow(/fork/);
  });
});

describe("recordScenario: every machine option", () => {
  it("writes pci flags, kconfig, params, kernel, noiommuRevision, hugepages and spapr, and the replay builds the same machine", () => {
    const opts = {
      iommu: "mock" as const,
      memoryBytes: 3n << 30n,
      seed: 3,
      kernel: "6.12" as const,
      noiommuRevision: "v7" as const,
      kconfig: { IOMMUFD_VFIO_CONTAINER: true },
      params: { "vfio.enable_unsafe_noiommu_mode": true },
      pci: [{ bdf: "0000:00:05.0", kind: "memcpy" as const, group: 4, flags: { pasid: true } }],
      hugepages: { "2M": 4 },
      trace: true,
    };
    const m = new Machine(opts);
    m.spawn({ uid: 0, rlimitMemlock: (1n << 64n) - 1n });
    const yaml = recordScenario(m);
    expect(yaml).toContain('kernel: "6.12"');
    expect(yaml).toContain("hugepages: { 2M: 4 }");
    expect(yaml).toContain("flags: { pasid: true }");
    expect(yaml).toContain("rlimitMemlock: unlimited");
    const again = replay(yaml).machine as Machine;
    const { trace: _t, ...want } = opts;
    const { trace: _u, ...got } = again.options;
    expect(got).toEqual(want);
    const sp = new Machine({
      iommu: "spapr",
      spapr: { platform: "pseries", pgsizes: [12, 16] },
      trace: true,
    });
    expect((replay(recordScenario(sp)).machine as Machine).options.spapr).toEqual({
      platform: "pseries",
      pgsizes: [12, 16],
    });
  });
});
