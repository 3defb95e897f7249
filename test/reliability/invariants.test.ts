import { describe, expect, it } from "vitest";
import type { PageTracker, UserTable } from "../../src/mm/index.js";
import { boot, runSteps, STEPS } from "./sequence.js";

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
