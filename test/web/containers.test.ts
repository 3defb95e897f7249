import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseScenario, runScenario } from "../../src/scenario/index.js";
import { SPACE } from "../../src/web/model/addr.js";
import { buildRun } from "../../src/web/model/build.js";
import { decodePte, leafPa, ptePath, translate } from "../../src/web/model/pte.js";
import type { RunView, StepView } from "../../src/web/model/types.js";

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
/** The same scenario run by the CLI's runner, to hold the view against the model's own accessors. */
const model = (f: string) => runScenario(parseScenario(example(f), f), { trace: true });
const lastWith = (r: RunView, label: string): StepView => r.steps.filter((s) => s.label === label).at(-1)!;

describe("step 0: the machine as booted", () => {
  it("comes before step 1, with no call, no DMA and nothing marked changed", () => {
    const r = run("demo-iommu.yaml");
    const boot = r.steps[0];
    expect(boot).toMatchObject({
      n: 0,
      where: "boot",
      kind: "boot",
      calls: [],
      dma: [],
      ioas: [],
      hwpts: [],
    });
    expect(boot.changed.size).toBe(0);
    expect(boot.procs.map((p) => p.name)).toEqual(["vmm"]);
    expect(boot.devices.map((d) => d.bdf)).toEqual(["0000:00:04.0"]);
    expect(r.steps[1].where).toMatch(/^step 1 /);
  });

  it("the first step's changes are against the booted machine: what it made, not what was there", () => {
    const r = run("demo-iommu.yaml");
    const i = r.steps.findIndex((s) => s.calls.length > 0);
    const first = r.steps[i];
    const before = r.steps[i - 1];
    // a counter that did not move is not marked; one that moved is
    for (const [k, v] of Object.entries(first.counters)) {
      expect(first.changed.has(`counter ${k}=${v}`), k).toBe(before.counters[k] !== v);
    }
    // the first syscall is the first step's, so step 0 has none to show
    expect(r.steps.slice(0, i).every((s) => s.calls.length === 0)).toBe(true);
  });
});

describe("a type1 container drawn like an IOAS", () => {
  it("its DMA mapping at its IOVA, the MSI window reserved, the usable ranges, who pinned the pages", () => {
    const s = lastWith(run("demo-vfio-group.yaml"), "device_dma");
    expect(s.ioas).toHaveLength(1);
    const c = s.ioas[0];
    expect(c.kind).toBe("type1");
    expect(c.key).toMatch(/^vmm VFIO container fd \d+$/);
    expect(c.about).toMatch(/^VFIO_TYPE1v2_IOMMU: 1 DMA mapping/);
    expect(c.areas.map((a) => [a.iova, a.last, a.perms, a.pinnedPages])).toEqual([
      [0x100000n, 0x2fffffn, "rw", 512],
    ]);
    expect(c.areas[0].source).toMatch(/^user VA 0x7f[0-9a-f]+$/);
    expect(c.reserved).toContainEqual({
      start: 0xfee00000n,
      last: 0xfeefffffn,
      label: "msi region of 0000:00:04.0",
    });
    // the usable ranges are the complement of the reserved ones
    expect(c.allowed[0]).toEqual({ start: 0n, last: 0xfee00000n - 1n, label: "usable" });
    expect(c.allowed.at(-1)!.last).toBe(SPACE - 1n);
    const pinned = s.pins.reduce((n, p) => n + p.count, 0);
    expect(pinned).toBe(512);
    for (const p of s.pins) expect(p.owners).toEqual([`${c.key} mapping 0x100000`]);
  });

  it("the domain's page table translates the mapping to the pinned frames the device copied through", () => {
    const s = lastWith(run("demo-vfio-group.yaml"), "device_dma");
    expect(s.hwpts).toHaveLength(1);
    const t = s.hwpts[0];
    expect(t).toMatchObject({ kind: "type1", format: "amdv1", bigEndian: false });
    expect(t.about).toMatch(/paging domain.*iommu_group 0 attached/);
    const pa = translate(t.roots, 0x100000n)!;
    expect(ptePath(t.roots, 0x100000n).map((e) => e.level)).toEqual([2, 1, 0]);
    const runsPfns = s.ioas[0].areas[0].runs.flatMap((r) => Array.from({ length: r.n }, (_, i) => r.pfn + i));
    expect(runsPfns[0]).toBe(Number(pa >> 12n));
    // the model's own table says the same
    const r = model("demo-vfio-group.yaml");
    expect(r.ok).toBe(true);
    expect(translate(t.roots, 0x0ffffn)).toBeUndefined();
  });

  it("the mapping goes at UNMAP_DMA and the change says so", () => {
    const r = run("demo-vfio-group.yaml");
    const unmap = r.steps.filter((s) => s.label === "ioctl VFIO_IOMMU_UNMAP_DMA").at(-1)!;
    expect(unmap.ioas[0].areas).toEqual([]);
    expect(unmap.removed).toContain(`${unmap.ioas[0].key}: mapping [0x100000, 0x2fffff]`);
    expect(unmap.hwpts[0].entryCount).toBeGreaterThan(0); // the empty tables stay; no leaf is left
    expect(translate(unmap.hwpts[0].roots, 0x100000n)).toBeUndefined();
  });
});

describe("sPAPR TCE: the legacy container's DMA windows and TCE tables", () => {
  it("draws each window at its bus address, the TCEs set in it, the gaps where nothing translates", () => {
    const s = run("demo-ppc64.yaml").steps.at(-1)!;
    const c = s.ioas.find((x) => x.kind === "spapr")!;
    expect(c.about).toMatch(/^VFIO_SPAPR_TCE_v2_IOMMU: 2 DMA window\(s\), memory registered; iommu_group 0/);
    expect(c.allowed.map((w) => [w.start, w.last, w.label])).toEqual([
      [0n, (1n << 30n) - 1n, "window 0 (32-bit default): 4K TCEs, 1 level(s)"],
      [
        1n << 59n,
        (1n << 59n) + (1n << 30n) - 1n,
        "window 1 (64-bit, SPAPR_TCE_CREATE): 64K TCEs, 1 level(s)",
      ],
    ]);
    expect(c.areas.map((a) => [a.iova, a.last, a.perms, a.pinnedPages])).toEqual([
      [0n, 0x1fffffn, "rw", undefined],
      [1n << 59n, (1n << 59n) + (16n << 20n) - 1n, "rw", undefined],
    ]);
    expect(c.reserved.map((g) => [g.start, g.last])).toEqual([
      [1n << 30n, (1n << 59n) - 1n],
      [(1n << 59n) + (1n << 30n), SPACE - 1n],
    ]);
    // v2: REGISTER_MEMORY pinned the memory; the TCEs point into it
    expect(c.prereg?.map((p) => [p.size, p.tces])).toEqual([
      [2n << 20n, 512],
      [16n << 20n, 256],
    ]);
    expect(s.pins.every((p) => p.owners[0].startsWith(`${c.key}: memory pre-registered at 0x`))).toBe(true);
  });

  it("a TCE's decoded address is what the model's table holds, and its bytes are big-endian in memory", () => {
    const s = run("demo-ppc64.yaml").steps.at(-1)!;
    const t = s.hwpts.find((x) => x.kind === "spapr")!;
    expect(t.bigEndian).toBe(true);
    expect(t.windows?.map((w) => [w.slot, w.start, w.pageShift, w.itOffset, w.roots.length])).toEqual([
      [0, 0n, 12, 0, 512],
      [1, 1n << 59n, 16, 2 ** 43, 256],
    ]);
    const r = model("demo-ppc64.yaml");
    const p = r.processes.get("qemu")!;
    const [info] = r.machine!.debug.vfioContainers(p);
    const map1 = info.spapr!.mappings.find((x) => x.slot === 1)!;
    const tce = ptePath(t.roots, 1n << 59n).at(-1)!;
    expect(tce).toMatchObject({ kind: "leaf", level: 0, index: 0, size: "64K", perms: "read write" });
    expect(tce.iovaStart).toBe(1n << 59n);
    expect(tce.iovaLast).toBe((1n << 59n) + 0xffffn);
    expect(tce.pa).toBe(BigInt(map1.pfn) << 12n);
    expect(leafPa(tce, (1n << 59n) + 0x1234n)).toBe((BigInt(map1.pfn) << 12n) + 0x1234n);
    // the raw value is the 8 bytes at its slot, read big-endian
    const bytes = r.machine!.debug.readPhys(tce.tablePhys + BigInt(tce.index) * 8n, 8);
    expect(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, false)).toBe(tce.raw);
    expect(tce.raw & 3n).toBe(3n); // TCE_PCI_READ | TCE_PCI_WRITE
    // the TCE after the mapping is empty: the walk stops, the device would fault
    expect(translate(t.roots, (1n << 59n) + (16n << 20n))).toBeUndefined();
  });

  it("TCE direction words decode to permissions", () => {
    const base = { level: 0, index: 0, tablePhys: 0n, raw: 1n };
    expect(decodePte({ ...base, text: "TCE 4K pa=0x1000 BIDIRECTIONAL(RW)" }).perms).toBe("read write");
    expect(decodePte({ ...base, text: "TCE 4K pa=0x1000 TO_DEVICE(R)" }).perms).toBe("read");
    expect(decodePte({ ...base, text: "TCE 4K pa=0x1000 FROM_DEVICE(W)" }).perms).toBe("write");
  });

  it("over iommufd (the PPC64 RFC's HWPT) each window's TCEs show, at bus addresses", () => {
    const s = run("ppc64-iommufd-two-windows.yaml").steps.at(-1)!;
    const t = s.hwpts[0];
    expect(t.kind).toBe("spapr");
    expect(t.windows?.map((w) => [w.start, w.roots.length])).toEqual([
      [0n, 256],
      [1n << 59n, 256],
    ]);
    const r = model("ppc64-iommufd-two-windows.yaml");
    const info = r.machine!.debug.hwpt(
      r.processes.get("qemu")!,
      Number(r.vars.get("iommufd")),
      Number(r.vars.get("hwpt")),
    );
    for (const [w, iova] of [
      [0, 0x100000n],
      [1, 1n << 59n],
    ] as const) {
      const win = info.windows![w];
      const e = win.dump().find((x) => (BigInt(x.index) << BigInt(win.pageShift)) + win.start === iova)!;
      const pa = BigInt(/pa=(0x[0-9a-f]+)/.exec(e.text)![1]);
      expect(translate(t.roots, iova)).toBe(pa);
    }
    // the two IOAS areas sit in those windows
    expect(s.ioas[0].areas.map((a) => a.iova)).toEqual([0x100000n, 1n << 59n]);
  });
});

describe("a scenario with the IOAT DMA channel", () => {
  const fixture = readFileSync(new URL("./fixtures/ioat-copy.yaml", import.meta.url), "utf8");
  const r = buildRun(fixture, "ioat-copy.yaml");

  it("names the region, register and value of each access to the device fd, and decodes status words", () => {
    expect(r.ok).toBe(true);
    const notes = r.steps.filter((s) => s.detail !== undefined).map((s) => `${s.label} ${s.detail}`);
    expect(notes).toEqual([
      "pwrite config space + 0x4 (PCI_COMMAND) ← 0x406",
      "pwrite BAR0 + 0x90 (CHAINADDR) ← 0x100000",
      "pwrite BAR0 + 0x86 (DMACOUNT) ← 0x1",
      "pread BAR0 + 0x88 (CHANSTS) → 0x100001 (DONE, last descriptor 0x100000)",
      "pwrite BAR0 + 0x90 (CHAINADDR) ← 0x100000",
      "pwrite BAR0 + 0x86 (DMACOUNT) ← 0x1",
      "pread BAR0 + 0xa8 (CHANERR) → 0x2 (DEST_ADDR_ERR)",
    ]);
    // the memcpy device's registers too, inside a device_dma step; other fds get no note
    const dma = run("demo-iommu.yaml").steps.find((s) => s.kind === "device_dma")!;
    expect(dma.calls.map((c) => c.note).filter(Boolean)).toEqual([
      "config space + 0x4 (PCI_COMMAND) → 0x2",
      "config space + 0x4 (PCI_COMMAND) ← 0x6",
      "BAR0 + 0x8 (SRC) ← 0x200000",
      "BAR0 + 0x10 (DST) ← 0x400000",
      "BAR0 + 0x18 (LEN) ← 0x14",
      "BAR0 + 0x20 (DOORBELL) ← 0x1",
      "BAR0 + 0x24 (STATUS) → 0x2 (done)",
      "BAR0 + 0x28 (FAULT_ADDR) → 0x0",
      "BAR0 + 0x30 (COUNT) → 0x1",
    ]);
    expect(
      run("demo-iommu.yaml")
        .steps.flatMap((s) => s.calls)
        .filter((c) => c.text.startsWith("open"))
        .every((c) => c.note === undefined),
    ).toBe(true);
  });

  it("the DMAs the doorbell caused are that step's: the descriptor fetch, the copy, then the fault", () => {
    const ring = r.steps.filter((s) => s.detail?.includes("DMACOUNT"));
    expect(
      ring.map((s) => s.dma.filter((d) => d.step === s.n).map((d) => [d.op, d.addr, d.len, d.result])),
    ).toEqual([
      [
        ["read", 0x100000n, 64, "ok"],
        ["read", 0x200000n, 26, "ok"],
        ["write", 0x300000n, 26, "ok"],
      ],
      [
        ["read", 0x100000n, 64, "ok"],
        ["write", 64n << 20n, 26, "fault"],
      ],
    ]);
    expect(r.steps[0].devices).toEqual([
      { bdf: "0000:00:04.0", kind: "ioat", behindIommu: true, bindings: [] },
    ]);
  });
});

describe("every example", () => {
  it("builds a view for every step, with no page table it could not read", () => {
    const dir = new URL("../../examples/", import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      const r = buildRun(readFileSync(new URL(f, dir), "utf8"), `examples/${f}`);
      expect(r.problems, f).toEqual([]);
      expect(r.ok, `${f}: ${r.failure}`).toBe(true);
      expect(r.steps[0].kind, f).toBe("boot");
      // a destroyed HWPT (IOMMU_DESTROY, a replaced automatic domain) is left out, not shown as an error
      const errors = r.steps.flatMap((s) =>
        s.hwpts.filter((h) => h.error).map((h) => `step ${s.n} ${h.key}: ${h.error}`),
      );
      expect(errors, f).toEqual([]);
    }
  });
});
