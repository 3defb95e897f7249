import { describe, expect, it } from "vitest";
import type { PtTable } from "../../src/iommu/pt-table.js";
import { Machine } from "../../src/kernel/machine.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../src/pt/types.js";
import { boot, GiB, KiB } from "./helpers.js";

const A = "0000:00:04.0";
const RW = IOMMU_READ | IOMMU_WRITE;

function attached(kind: "amd" | "intel") {
  const { ctx, sub } = boot(kind);
  const dev = sub.device(A)!;
  dev.claimDmaOwner("o");
  const d = dev.driver.allocPaging(dev, 0);
  dev.group.attach(d);
  return { ctx, sub, dev, d };
}

describe("dmaTranslate through the hardware walker", () => {
  for (const kind of ["amd", "intel"] as const) {
    it(`${kind}: mapped ranges translate, holes and permissions fault`, () => {
      const { dev, d } = attached(kind);
      d.map(0x10_0000n, GiB / 2n, 8n * KiB, RW);
      d.map(0x20_0000n, GiB / 2n + 0x10_0000n, 4n * KiB, IOMMU_READ);
      expect(dev.dmaTranslate(0x10_0ff0n, 0x20, true)).toEqual({
        ok: true,
        segments: [{ pa: Number(GiB / 2n) + 0xff0, len: 0x20 }],
      });
      expect(dev.dmaTranslate(0x10_1ff0n, 0x20, false)).toEqual({
        ok: false,
        addr: 0x10_2000n,
        reason: "not-present",
      });
      expect(dev.dmaTranslate(0x20_0010n, 16, false).ok).toBe(true);
      expect(dev.dmaTranslate(0x20_0010n, 16, true)).toEqual({
        ok: false,
        addr: 0x20_0010n,
        reason: "write-protected",
      });
    });
  }

  it("a corrupted entry written through PhysMem changes what the device sees (the walker reads bytes)", () => {
    const { ctx, dev, d } = attached("intel");
    d.map(0x4000n, 0x2345_6000n, 4n * KiB, RW);
    const t = (d.pt as PtTable).table;
    const e = t.leafEntry(4)!;
    // point the leaf at another page, keeping R/W
    ctx.phys.write(e.tablePfn * 4096 + e.index * 8, new Uint8Array([0x03, 0x70, 0x45, 0x23, 0, 0, 0, 0]));
    expect(dev.dmaTranslate(0x4000n, 8, false)).toEqual({
      ok: true,
      segments: [{ pa: 0x2345_7000, len: 8 }],
    });
  });

  it("blocked domains fault; identity passes addresses through", () => {
    const { sub } = boot("amd");
    const dev = sub.device(A)!;
    dev.claimDmaOwner("o");
    expect(dev.dmaTranslate(0x1000n, 4, false)).toEqual({ ok: false, addr: 0x1000n, reason: "blocked" });
    dev.group.replace(dev.driver.identityDomain!);
    expect(dev.dmaTranslate(0x1234_5678n, 4, true)).toEqual({
      ok: true,
      segments: [{ pa: 0x1234_5678, len: 4 }],
    });
  });

  it("AMD dirty tracking: the walker sets D on writes, read_and_clear_dirty reports it", () => {
    const { sub } = boot("amd");
    const dev = sub.device(A)!;
    dev.claimDmaOwner("o");
    const d = dev.driver.allocPaging(dev, 2 /* IOMMU_HWPT_ALLOC_DIRTY_TRACKING */);
    dev.group.attach(d);
    d.map(0x8000n, 0x3000_0000n, 16n * KiB, RW);
    d.setDirtyTracking(true);
    expect(dev.dmaTranslate(0x9000n, 4, true).ok).toBe(true);
    const seen: bigint[][] = [];
    d.readAndClearDirty(0x8000n, 16n * KiB, false, (i, l) => seen.push([i, l]));
    expect(seen.length).toBe(1);
    expect(seen[0][0] <= 0x9000n && seen[0][0] + seen[0][1] > 0x9000n).toBe(true);
    seen.length = 0;
    d.readAndClearDirty(0x8000n, 16n * KiB, false, (i, l) => seen.push([i, l]));
    expect(seen).toEqual([]);
  });
});

describe("invariant check", () => {
  it("passes for consistent domains and reports a corrupted PTE", () => {
    const { ctx, sub, d } = attached("intel");
    d.map(0x4000n, 0x2345_6000n, 8n * KiB, RW);
    d.map(0x20_0000n, GiB / 2n, 2n * 1024n * KiB, IOMMU_READ);
    expect(sub.checkInvariants()).toEqual([]);
    const t = (d.pt as PtTable).table;
    const e = t.leafEntry(5)!;
    ctx.phys.write(e.tablePfn * 4096 + e.index * 8, new Uint8Array([0x03, 0x90, 0x99, 0x19, 0, 0, 0, 0]));
    const problems = sub.checkInvariants();
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]).toMatch(/page table maps .* where the domain recorded/);
  });

  it("reports a permission bit flipped behind the domain's back", () => {
    const { ctx, sub, d } = attached("intel");
    d.map(0x4000n, 0x2345_6000n, 4n * KiB, IOMMU_READ);
    const e = (d.pt as PtTable).table.leafEntry(4)!;
    const off = e.tablePfn * 4096 + e.index * 8;
    const b = ctx.phys.read(off, 8);
    b[0] |= 2; // VT-d W
    ctx.phys.write(off, b);
    expect(sub.checkInvariants()).toEqual([
      expect.stringMatching(/write at 0x4000 is allowed but the mapping's prot is 0x1/),
    ]);
  });

  it("changedOnly re-reads a table only after a write call or a record change; a full check reads every table", () => {
    const { ctx, sub, d } = attached("intel");
    d.map(0x4000n, 0x2345_6000n, 8n * KiB, RW);
    expect(sub.checkInvariants(true)).toEqual([]);
    // bytes changed behind the table's back: only the full check reads them
    const e = (d.pt as PtTable).table.leafEntry(5)!;
    ctx.phys.write(e.tablePfn * 4096 + e.index * 8, new Uint8Array([0x03, 0x90, 0x99, 0x19, 0, 0, 0, 0]));
    expect(sub.checkInvariants(true)).toEqual([]);
    const full = sub.checkInvariants();
    expect(full.length).toBeGreaterThan(0);
    expect(full[0]).toMatch(/page table maps .* where the domain recorded/);
    // any map or unmap call on the table makes the next changedOnly check read it again
    d.map(0x40_0000n, 0x3000_0000n, 4n * KiB, RW);
    const again = sub.checkInvariants(true);
    expect(again[0]).toBe(full[0]);
    expect(again).toEqual(sub.checkInvariants());
    // and so does a change to the domain's record alone (a table the domain no longer agrees with)
    const { sub: sub2, d: d2 } = attached("amd");
    d2.map(0x4000n, 0x2345_6000n, 4n * KiB, RW);
    expect(sub2.checkInvariants(true)).toEqual([]);
    d2.mapped.add(0x100, 1, 0x30000, RW);
    expect(sub2.checkInvariants(true)).toEqual([expect.stringMatching(/page table maps nothing where/)]);
  });

  it("counters: ptFrames and domains come back after free", () => {
    const { sub, dev, d } = attached("amd");
    const frames = () => sub.counters().ptFrames;
    const domains = () => sub.counters().domains;
    expect(domains()).toBe(2); // the default DMA domain and d
    d.map(0x7f_0000_0000n, 0x3000_0000n, 4n * KiB, RW);
    const f = frames();
    expect(f).toBeGreaterThan(2);
    dev.group.detach();
    d.free();
    expect(domains()).toBe(1);
    expect(frames()).toBe(sub.device(A)!.group.defaultDomain.frames());
  });
});

describe("Machine wiring", () => {
  it("m.iommu has the groups and devices of the machine's PCI config", () => {
    const m = new Machine({
      iommu: "intel",
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy", group: 7 },
        { bdf: "0000:00:05.0", kind: "memcpy", group: 7 },
        { bdf: "0000:00:06.0", kind: "memcpy", noIommu: true },
      ],
    });
    expect(m.iommu.device("0000:00:04.0")!.group.id).toBe(7);
    expect(m.iommu.device("0000:00:06.0")).toBeUndefined();
    expect(m.listDir("/sys/kernel/iommu_groups/7/devices")).toEqual(["0000:00:04.0", "0000:00:05.0"]);
    expect(m.debug.counters().ptFrames).toBe(1);
  });
});
