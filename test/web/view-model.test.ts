import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseScenario, runScenario } from "../../src/scenario/index.js";
import {
  bytesLabel,
  FULL,
  fitRange,
  fraction,
  MIN_SPAN,
  pan,
  SPACE,
  zoom,
} from "../../src/web/model/addr.js";
import { buildRun } from "../../src/web/model/build.js";
import { decodePte, ptePath, pteTree, translate, walkMiss } from "../../src/web/model/pte.js";
import type { RunView } from "../../src/web/model/types.js";

const example = (f: string) => readFileSync(new URL(`../../examples/${f}`, import.meta.url), "utf8");
const runs = new Map<string, RunView>();
const run = (f: string): RunView => {
  let r = runs.get(f);
  if (!r) {
    r = buildRun(example(f), `examples/${f}`);
    runs.set(f, r);
  }
  return r;
};

describe("buildRun: a view per step", () => {
  it("runs the three demos to the end, one view per step, with the calls strace-style", () => {
    for (const f of ["demo-noiommu.yaml", "demo-iommu.yaml", "demo-ppc64.yaml"]) {
      const r = run(f);
      const sc = parseScenario(example(f), f);
      expect(r.ok, f).toBe(true);
      expect(r.problems).toEqual([]);
      // step 0 is the machine as booted, then one view per step of the scenario
      expect(r.steps.length).toBe(runScenario(sc).results.length + 1);
      expect(r.steps.map((s) => s.n)).toEqual(r.steps.map((_, i) => i));
      expect(r.steps[1].where).toMatch(/^step 1 /);
    }
    const map = run("demo-iommu.yaml").steps.find((s) => s.label === "ioctl IOMMU_IOAS_MAP");
    expect(map?.calls).toHaveLength(1);
    expect(map?.calls[0].text).toMatch(
      /^ioctl\(\d+, IOMMU_IOAS_MAP, \{size=40, flags=.*iova=0x200000.*\}\) = 0$/,
    );
    expect(map?.calls[0].ok).toBe(true);
  });

  it("a failed call carries its errno, the kernel's rule and what explain says the errno means", () => {
    const r = run("iommufd-map-eexist.yaml");
    const failed = r.steps.flatMap((s) => s.calls).filter((c) => !c.ok);
    expect(failed.length).toBeGreaterThan(0);
    const c = failed.find((x) => x.errno === "EEXIST");
    expect(c?.reason).toMatch(/overlaps area/);
    expect(c?.meaning).toMatch(/overlaps an existing mapping/);
    expect(c?.expected).toBe(true);
    expect(c?.text).toMatch(/= -1 EEXIST/);
  });

  it("an IOAS shows its areas with user VA and permissions, and the device's reserved MSI window", () => {
    const last = run("demo-iommu.yaml").steps.at(-1)!;
    expect(last.ioas).toHaveLength(1);
    const io = last.ioas[0];
    expect(io.areas.map((a) => [a.iova, a.last, a.perms, a.pinnedPages])).toEqual([
      [0x200000n, 0x3fffffn, "rw", 512],
      [0x400000n, 0x5fffffn, "rw", 512],
    ]);
    expect(io.areas[0].source).toMatch(/^user VA 0x7f[0-9a-f]+$/);
    expect(io.reserved).toContainEqual({
      start: 0xfee00000n,
      last: 0xfeefffffn,
      label: "msi region of 0000:00:04.0",
    });
  });

  it("PPC64 over iommufd: the gaps between the two DMA windows are reserved", () => {
    const io = run("ppc64-iommufd-two-windows.yaml").steps.at(-1)!.ioas[0];
    expect(io.reserved.map((r) => r.label)).toEqual([
      "outside the domain aperture",
      "outside the domain aperture",
    ]);
    expect(io.reserved[0].start).toBeGreaterThan(0n);
    expect(io.reserved[1].last).toBe(SPACE - 1n);
  });

  it("pinned frames name the IOAS area that pinned them; the total matches counters().pinnedPages", () => {
    const last = run("demo-iommu.yaml").steps.at(-1)!;
    const frames = last.pins.reduce((n, p) => n + p.count * (p.order === 0 ? 1 : 2 ** p.order), 0);
    expect(frames).toBe(1024);
    expect(last.counters.pinnedPages).toBe(1024);
    for (const p of last.pins) expect(p.owners[0]).toMatch(/^vmm iommufd fd \d+ IOAS 2 area 0x[24]00000$/);
  });

  it("a process's VMAs are there; what changed at a step is marked, and the DMA log is tied to its step", () => {
    const r = run("demo-iommu.yaml");
    const mmap = r.steps.find((s) => s.kind === "mmap")!;
    const vma = mmap.procs[0].vmas.find((v) => mmap.changed.has(v.sig));
    expect(vma?.end && vma.end - vma.start).toBe(0x200000n);
    const fault = r.steps.at(-1)!.dma.find((d) => d.result === "fault")!;
    expect(fault.addr).toBe(64n << 20n);
    const cause = r.steps[fault.step];
    expect(cause.kind).toBe("device_dma");
    expect(cause.changed.has(`dma ${fault.n}`)).toBe(true);
    expect(r.steps[fault.step + 1].changed.has(`dma ${fault.n}`)).toBe(false);
    const unmap = run("demo-noiommu.yaml").steps.find((s) => s.label === "ioctl IOMMU_IOAS_UNMAP")!;
    expect(unmap.removed.some((x) => /area \[0x/.test(x))).toBe(true);
  });

  it("a scenario that does not parse gives its error with the line and runs nothing", () => {
    const r = buildRun("name: x\nsteps:\n  - open: /dev/iommu\n  - frobnicate: 1\n", "bad.yaml");
    expect(r.steps).toEqual([]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0].line).toBe(4);
    expect(r.problems[0].message).toMatch(/frobnicate/);
  });

  it("a mistake only the runner sees (an unknown key of a step) is a problem on its line too", () => {
    const text = `${example("demo-iommu.yaml")}  - mmap: { len: 4M, bogus: 1 }\n`;
    const r = buildRun(text, "x.yaml");
    expect(r.ok).toBe(false);
    expect(r.steps).toHaveLength(18);
    expect(r.problems).toEqual([
      {
        line: text.split("\n").length - 1,
        message: expect.stringMatching(/^step 18 \(line \d+\): mmap: unknown key "bogus"/),
      },
    ]);
  });

  it("a failed expectation ends the run and says where", () => {
    const text = example("demo-iommu.yaml").replace(
      "expect: { out: { status: 3, fault_addr: 64M } }",
      "expect: { out: { status: 2 } }",
    );
    const r = buildRun(text, "x.yaml");
    expect(r.ok).toBe(false);
    expect(r.failure).toMatch(/status/);
    expect(r.steps.at(-1)!.failure).toMatch(/status/);
  });
});

describe("page-table entries", () => {
  it("decodes the dump's text of each format", () => {
    const base = { level: 0, index: 1, tablePhys: 0x5000n, raw: 0x1234n };
    expect(decodePte({ ...base, text: "LEAF 4K NL=0 pa=0x83901000 IR IW" })).toMatchObject({
      kind: "leaf",
      pa: 0x83901000n,
      size: "4K",
      perms: "read write",
      flags: ["NL=0", "IR", "IW"],
    });
    expect(decodePte({ ...base, level: 2, text: "TABLE NL=2 -> 0x83905000" })).toMatchObject({
      kind: "table",
      pa: 0x83905000n,
      perms: "",
    });
    expect(decodePte({ ...base, text: "TCE 64K pa=0x10000 READ" })).toMatchObject({
      kind: "leaf",
      size: "64K",
      perms: "read",
    });
    expect(decodePte({ ...base, text: "LEAF 2M pa=0x200000 R" })).toMatchObject({
      size: "2M",
      perms: "read",
    });
  });

  it("an 8K page repeated over two 4K slots translates each slot within the page", () => {
    const t = 0x1000n;
    const roots = pteTree("amdv1", [
      { level: 1, index: 0, tablePhys: 0x9000n, raw: 1n, text: "TABLE NL=1 -> 0x1000" },
      { level: 0, index: 4, tablePhys: t, raw: 2n, text: "LEAF 8K NL=0 pa=0x770000 IR IW" },
      { level: 0, index: 5, tablePhys: t, raw: 2n, text: "LEAF 8K NL=0 pa=0x770000 IR IW" },
      { level: 0, index: 6, tablePhys: t, raw: 3n, text: "LEAF 4K NL=0 pa=0x990000 IR" },
    ]);
    expect(translate(roots, 0x4010n)).toBe(0x770010n);
    expect(translate(roots, 0x5010n)).toBe(0x771010n);
    expect(translate(roots, 0x6fffn)).toBe(0x990fffn);
    expect(translate(roots, 0x7000n)).toBeUndefined();
    expect(ptePath(roots, 0x5000n).map((e) => [e.level, e.index])).toEqual([
      [1, 0],
      [0, 5],
    ]);
  });

  it("a leaf's decoded PA is what m.debug.hwpt's table maps, and the bytes there are the buffer's", () => {
    const sc = parseScenario(example("demo-iommu.yaml"), "demo-iommu.yaml");
    const r = runScenario(sc, { trace: true });
    const m = r.machine!;
    const p = r.processes.get("vmm")!;
    const info = m.debug.hwpt(p, Number(r.vars.get("iommufd")), Number(r.vars.get("hwpt")));
    const roots = pteTree(info.format, info.dump!());
    const path = ptePath(roots, 0x200000n);
    expect(path.map((e) => e.level)).toEqual([2, 1, 0]);
    const pa = translate(roots, 0x200000n)!;
    expect(path[2].pa).toBe(pa);
    expect(new TextDecoder().decode(m.debug.readPhys(pa, 20))).toBe("copied by the device");
    expect(translate(roots, 64n << 20n)).toBeUndefined();
    expect(ptePath(roots, 64n << 20n).map((e) => e.level)).toEqual([2]);
    // the walk read L2[0], then found L1[32] (64 MiB / 2 MiB) empty
    expect(walkMiss(roots, 64n << 20n)).toEqual({ level: 1, index: 32 });
    expect(walkMiss(roots, 0x200000n)).toBeUndefined();
  });
});

describe("address line viewport", () => {
  it("zooms from 2^64 to a page and no further, and back", () => {
    let v = FULL;
    for (let i = 0; i < 80; i++) v = zoom(v, 1);
    expect(v.span).toBe(MIN_SPAN);
    for (let i = 0; i < 80; i++) v = zoom(v, -1);
    expect(v).toEqual(FULL);
  });
  it("keeps the pivot in place and never leaves [0, 2^64)", () => {
    const v = zoom({ start: 0n, span: 1n << 32n }, 1, 0.25);
    expect(v.start).toBe(1n << 29n);
    expect(v.span).toBe(1n << 31n);
    expect(pan(FULL, 0.5)).toEqual(FULL);
    expect(pan({ start: 0n, span: 4096n }, -1)).toEqual({ start: 0n, span: 4096n });
    const top = pan({ start: SPACE - 8192n, span: 4096n }, 3);
    expect(top.start + top.span).toBe(SPACE);
  });
  it("fits a range and places addresses on the line", () => {
    const v = fitRange(0x200000n, 0x5fffffn);
    expect(v.start <= 0x200000n && v.start + v.span > 0x5fffffn).toBe(true);
    expect(fraction(FULL, 1n << 63n)).toBe(0.5);
    expect(fraction(v, 0n)).toBe(0);
    expect(fraction(v, SPACE - 1n)).toBe(1);
  });
  it("labels sizes in binary units, approximately when they are not round", () => {
    expect(bytesLabel(4096n)).toBe("4K");
    expect(bytesLabel(0x200000n)).toBe("2M");
    expect(bytesLabel(SPACE)).toBe("16E");
    expect(bytesLabel(100n)).toBe("100");
    expect(bytesLabel(0x7fffffffe000n)).toBe("~128T");
    expect(bytesLabel(0x180001000n)).toBe("~6.0G");
  });
});
