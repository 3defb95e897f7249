import { describe, expect, it } from "vitest";
import type { PageTracker, UserTable } from "../../src/mm/index.js";
import * as V from "../../src/uapi/vfio.js";
import { argArea, MAP_PRIVATE_ANON, must, PROT_RW, vioctl } from "./rig.js";
import { BDF, boot, runSteps, STEPS } from "./sequence.js";

// Each check must fire on the corruption it exists for (a check that never
// fails proves nothing). The machine is corrupted behind the model's back.
const upTo = (name: string) => STEPS.findIndex((s) => s.name === name) + 1;

interface MmGlueView {
  pages: PageTracker;
  users: UserTable;
}
function mmGlue(m: ReturnType<typeof boot>["m"]): MmGlueView {
  return (m as unknown as { mmGlue: MmGlueView }).mmGlue;
}

describe("machine invariants", () => {
  it("hold after every step of the sequence and after exit", () => {
    const s = boot();
    for (let i = 0; i < STEPS.length; i++) {
      runSteps(s, i, i + 1);
      expect(s.m.debug.checkInvariants(), STEPS[i].name).toEqual([]);
    }
    s.p.exit();
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("a pin nobody holds is reported", () => {
    const s = boot();
    runSteps(s, 0, upTo("IOMMU_IOAS_MAP"));
    const pages = mmGlue(s.m).pages;
    const folio = pages.allocFolio(0, "test");
    pages.pinRange(folio, 1);
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/pinned pages, but iommufd holds/);
    pages.unpinRange(folio, 1);
    pages.put(folio);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("locked_vm that does not match the USER-mode pins is reported", () => {
    const s = boot();
    runSteps(s, 0, upTo("IOMMU_IOAS_MAP"));
    const u = mmGlue(s.m).users.all()[0];
    u.lockedVm += 3;
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/locked_vm .*USER-mode pins/);
    u.lockedVm -= 3;
  });

  it("pinned_vm that does not match what iommufd pinned is reported", () => {
    const s = boot();
    runSteps(s, 0, upTo("IOMMU_IOAS_MAP"));
    s.p.task.mm.pinnedVm += 1;
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/pinned_vm 17, iommufd pinned 16/);
    s.p.task.mm.pinnedVm -= 1;
  });

  it("a kernel frame left behind after every process exited is reported", () => {
    const s = boot();
    runSteps(s, 0, STEPS.length);
    s.p.exit();
    const pfn = s.m.frames.alloc4k();
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/no process is left but the kernel holds/);
    s.m.frames.free4k(pfn);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("a domain translating what its IOAS does not hold is reported", () => {
    const s = boot();
    runSteps(s, 0, upTo("IOMMU_IOAS_MAP"));
    const d = s.m.iommu.liveDomains().find((x) => x.users.size > 0 && x.mapped.length > 0)!;
    d.map(0x40000000n, 0x1000n, 0x1000n, 3);
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/maps \d+ bytes, areas cover/);
    d.unmap(0x40000000n, 0x1000n);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });
});

describe("machine invariants: containers, locked_vm, domains and the DMA log", () => {
  /** A type1 v2 container with the device's group and 4 pages mapped at 0x100000. */
  function type1() {
    const s = boot();
    const p = s.p;
    const arg = argArea(p);
    const group = s.m.listDir("/dev/vfio").find((n) => /^\d+$/.test(n))!;
    const g = must(p, p.open(`/dev/vfio/${group}`), "open group");
    const c = must(p, p.open("/dev/vfio/vfio"), "open container");
    expect(p.writeMemory(arg, new Uint8Array(new Int32Array([c]).buffer))).toBe(0);
    must(p, p.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, arg), "SET_CONTAINER");
    must(p, p.ioctl(c, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1v2_IOMMU)), "SET_IOMMU");
    const buf = p.mmap(0n, 0x4000n, PROT_RW, MAP_PRIVATE_ANON);
    must(
      p,
      vioctl(p, c, V.VFIO_IOMMU_MAP_DMA, V.vfio_iommu_type1_dma_map, {
        flags: V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: buf,
        iova: 0x100000n,
        size: 0x4000n,
      }).rc,
      "MAP_DMA",
    );
    const d = s.m.iommu.liveDomains().find((x) => x.use === "unmanaged" && x.mapped.length > 0)!;
    return { s, d };
  }

  it("type1 pins are checked per frame: a pin moved to another frame is reported", () => {
    const { s, d } = type1();
    expect(s.m.debug.checkInvariants()).toEqual([]);
    const pages = mmGlue(s.m).pages;
    const pfn = Number(d.iovaToPhys(0x100000n) >> 12n);
    const other = pages.allocFolio(0, "test");
    // Same total, wrong frame: only the per-frame check can see it.
    pages.unpinRange(pfn, 1);
    pages.pinRange(other, 1);
    const v = s.m.debug.checkInvariants().join("\n");
    expect(v).toMatch(new RegExp(`pfn 0x${pfn.toString(16)} has 0 pin\\(s\\), its holders account for 1`));
    expect(v).not.toMatch(/pinned pages, but/);
    pages.unpinRange(other, 1);
    pages.pinRange(pfn, 1);
    pages.put(other);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("mm->locked_vm is exact: MAP_LOCKED mappings plus type1's per-mm charge", () => {
    const { s } = type1();
    const locked = s.p.mmap(0n, 0x3000n, PROT_RW, MAP_PRIVATE_ANON | 0x2000);
    expect(locked > 0n).toBe(true);
    const mm = s.p.task.mm as unknown as { lockedVm: number };
    expect(mm.lockedVm).toBe(4 + 3);
    expect(s.m.debug.checkInvariants()).toEqual([]);
    mm.lockedVm += 1;
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(
      /locked_vm 8, but MAP_LOCKED mappings hold 3, pins charged per mm 4/,
    );
    mm.lockedVm -= 1;
    expect(s.p.munmap(locked, 0x1000n)).toBe(0);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("a frame a user-filled domain maps but nobody pins is reported", () => {
    const { s, d } = type1();
    const pages = mmGlue(s.m).pages;
    const other = pages.allocFolio(0, "test");
    d.map(0x200000n, BigInt(other) << 12n, 0x1000n, 3);
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(
      new RegExp(`maps IOVA 0x200000 to pfn 0x${other.toString(16)}, which no pin holds`),
    );
    d.unmap(0x200000n, 0x1000n);
    pages.put(other);
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("the sanitizer must ask the page tracker", () => {
    const s = boot();
    const san = s.m.pci.sanitizer;
    const oracle = san.oracle;
    san.oracle = null;
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(/sanitizer does not ask the page tracker/);
    san.oracle = oracle;
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });

  it("a translated DMA the sanitizer flags is reported once", () => {
    const s = boot();
    s.m.ctx.dmaLog.push({
      device: BDF,
      op: "write",
      addr: 0x1000n,
      len: 8,
      result: "ok",
      finding: "stray address",
    });
    expect(s.m.debug.checkInvariants().join("\n")).toMatch(
      /a translated write at 0x1000 reached memory no pin holds/,
    );
    expect(s.m.debug.checkInvariants()).toEqual([]);
  });
});
