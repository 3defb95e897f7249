import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { parseScenario, runScenario } from "../../src/scenario/index.js";

// m.debug.ioas / pinnedFrames / vmas: read-only views for tools (the web view).
const demo = () => {
  const text = readFileSync(new URL("../../examples/demo-iommu.yaml", import.meta.url), "utf8");
  const r = runScenario(parseScenario(text, "demo-iommu.yaml"), { trace: true });
  return {
    m: r.machine!,
    p: r.processes.get("vmm")!,
    fd: Number(r.vars.get("iommufd")),
    ioas: Number(r.vars.get("ioas")),
    hwpt: Number(r.vars.get("hwpt")),
  };
};

it("m.debug.ioas reports areas, their pinned pfns and reserved ranges, and changes nothing", () => {
  const { m, p, fd, ioas } = demo();
  const before = m.debug.counters();
  const trace = m.debug.trace().length;
  const info = m.debug.ioas(p, fd, ioas);
  expect(info.areas.map((a) => [a.iova, a.last, a.prot, a.source])).toEqual([
    [0x200000n, 0x3fffffn, 7, "user"],
    [0x400000n, 0x5fffffn, 7, "user"],
  ]);
  // the pfns behind IOVA 2 MiB are the pages the process's VA maps
  const va = info.areas[0].addr;
  const pa = p.task.mm.translate(va);
  expect(BigInt(info.areas[0].pinnedRuns[0].pfn) << 12n).toBe(pa);
  expect(info.areas[0].pinnedRuns.reduce((n, r) => n + r.n, 0)).toBe(512);
  expect(info.reserved.some((r) => r.start === 0xfee00000n && r.owner === "msi region of 0000:00:04.0")).toBe(
    true,
  );
  expect(info.allowed).toEqual([]);
  expect(m.debug.counters()).toEqual(before);
  expect(m.debug.trace().length).toBe(trace);
});

it("m.debug.ioas refuses what is not an IOAS with the kernel's errno", () => {
  const { m, p, fd, hwpt } = demo();
  const before = m.debug.counters();
  expect(() => m.debug.ioas(p, fd, 999)).toThrow(/ENOENT: IOAS id 999 does not exist/);
  expect(() => m.debug.ioas(p, fd, hwpt)).toThrow(/EINVAL: id \d+ is a HWPT_PAGING, not an IOAS/);
  expect(() => m.debug.ioas(p, 77, 1)).toThrow(/EBADF/);
  expect(m.debug.counters()).toEqual(before);
});

it("m.debug.pinnedFrames adds up to counters().pinnedPages; m.debug.vmas lists the mappings until exit", () => {
  const { m, p } = demo();
  const pins = m.debug.pinnedFrames();
  const total = pins.reduce((n, f) => n + f.pins, 0);
  expect(total).toBe(m.debug.counters().pinnedPages);
  expect(pins.every((f, i) => i === 0 || pins[i - 1].pfn < f.pfn)).toBe(true);
  const vmas = m.debug.vmas(p);
  expect(vmas.filter((v) => v.end - v.start === 0x200000n)).toHaveLength(2);
  p.exit();
  expect(m.debug.vmas(p)).toEqual([]);
  expect(m.debug.pinnedFrames()).toEqual([]);
  expect(m.debug.counters().pinnedPages).toBe(0);
});
