import { describe, expect, it } from "vitest";
import { IOMMU_RESV_MSI, IOMMU_RESV_RESERVED } from "../../src/iommu/index.js";
import { EBUSY, EINVAL, EOPNOTSUPP, EPERM } from "../../src/uapi/errno.js";
import { IOMMU_HWPT_ALLOC_DIRTY_TRACKING } from "../../src/uapi/iommufd.js";
import { boot, errnoOf } from "./helpers.js";

const A = "0000:00:04.0";
const B = "0000:00:05.0";

describe("iommu_groups", () => {
  it("devices naming the same group share it; others get their own, skipping taken numbers", () => {
    const { ctx, sub } = boot("intel", [{ bdf: "0000:00:03.0" }, { bdf: A, group: 0 }, { bdf: B, group: 0 }]);
    expect(sub.device(A)!.group).toBe(sub.device(B)!.group);
    expect(sub.device(A)!.group.id).toBe(0);
    expect(sub.device("0000:00:03.0")!.group.id).toBe(1);
    expect(ctx.vfs.listDir("/sys/kernel/iommu_groups/0/devices")).toEqual([A, B]);
    expect(ctx.vfs.readFile(`/sys/bus/pci/devices/${A}/iommu_group`)).toBe("../../../kernel/iommu_groups/0");
    expect(ctx.vfs.lookup(`/sys/kernel/iommu_groups/0/devices/${B}`)).toEqual({
      type: "link",
      target: `../../../../devices/pci0000:00/${B}`,
    });
    expect(ctx.vfs.readFile("/sys/kernel/iommu_groups/1/type")).toBe("DMA-FQ\n");
  });

  it("noIommu functions and iommu 'none' machines get no IommuDevice", () => {
    const none = boot("none", [{ bdf: A }]);
    expect(none.sub.device(A)).toBeUndefined();
    expect(none.ctx.vfs.exists("/sys/kernel/iommu_groups")).toBe(false);
    const mixed = boot("amd", [{ bdf: A, noIommu: true }, { bdf: B }]);
    expect(mixed.sub.device(A)).toBeUndefined();
    expect(mixed.sub.device(B)!.group.id).toBe(0);
  });

  it("default domains: DMA paging on amd/intel, blocked on the mock", () => {
    expect(boot("amd").sub.device(A)!.domain.type).toBe("paging");
    expect(boot("amd").sub.device(A)!.domain.use).toBe("dma");
    expect(boot("mock").sub.device(A)!.domain.type).toBe("blocked");
  });
});

describe("DMA ownership", () => {
  it("one owner may claim every device of a group; another owner gets EPERM (iommu_device_claim_dma_owner) and nothing changes", () => {
    const { sub } = boot("intel", [
      { bdf: A, group: 3 },
      { bdf: B, group: 3 },
    ]);
    const a = sub.device(A)!;
    const b = sub.device(B)!;
    const g = a.group;
    const dflt = g.defaultDomain;
    const ctxA = { name: "iommufd ctx A" };
    a.claimDmaOwner(ctxA);
    expect(g.domain).toBe(g.blockingDomain);
    expect(a.dmaTranslate(0x1000n, 4, false)).toEqual({ ok: false, addr: 0x1000n, reason: "blocked" });
    b.claimDmaOwner(ctxA);
    expect(g.ownerCnt).toBe(2);
    expect(errnoOf(() => b.claimDmaOwner({ name: "other" }))).toBe(EPERM);
    expect(g.ownerCnt).toBe(2);
    expect(g.owner).toBe(ctxA);
    expect(errnoOf(() => g.claimDmaOwner({ name: "vfio group" }))).toBe(EPERM);
    a.releaseDmaOwner();
    expect(g.domain).toBe(g.blockingDomain);
    b.releaseDmaOwner();
    expect(g.domain).toBe(dflt);
    expect(g.owner).toBeUndefined();
    expect(dflt.users).toEqual(new Set([A, B]));
  });

  it("a kernel driver using the DMA API blocks a user owner (EPERM: iommu_device_claim_dma_owner) and a user owner blocks the driver (EBUSY: iommu_device_use_default_domain)", () => {
    const { sub } = boot("amd");
    const g = sub.device(A)!.group;
    g.useDefaultDomain();
    expect(errnoOf(() => g.claimDmaOwnerForDevice({}))).toBe(EPERM);
    expect(g.owner).toBeUndefined();
    g.unuseDefaultDomain();
    const owner = {};
    g.claimDmaOwnerForDevice(owner);
    expect(errnoOf(() => g.useDefaultDomain())).toBe(EBUSY);
    expect(g.ownerCnt).toBe(1);
  });
});

describe("attach and replace", () => {
  it("attach moves the whole group; attaching again needs replace (EBUSY)", () => {
    const { sub } = boot("intel", [
      { bdf: A, group: 1 },
      { bdf: B, group: 1 },
    ]);
    const a = sub.device(A)!;
    const g = a.group;
    a.claimDmaOwner("o");
    const d1 = a.driver.allocPaging(a, 0);
    const d2 = a.driver.allocPaging(a, 0);
    g.attach(d1);
    expect(sub.device(B)!.domain).toBe(d1);
    expect(d1.users).toEqual(new Set([A, B]));
    expect(errnoOf(() => g.attach(d2))).toBe(EBUSY);
    g.replace(d2);
    expect(d1.users.size).toBe(0);
    expect(g.domain).toBe(d2);
    g.detach();
    expect(g.domain).toBe(g.blockingDomain);
  });

  it("iommu_group_replace_domain checks no ownership and no current domain: it works on an unowned group and back", () => {
    const { sub } = boot("intel");
    const a = sub.device(A)!;
    const g = a.group;
    const d = a.driver.allocPaging(a, 0);
    expect(g.ownerCnt).toBe(0);
    g.replace(d);
    expect(g.domain).toBe(d);
    expect(d.users).toEqual(new Set([A]));
    g.replace(g.defaultDomain);
    expect(g.domain).toBe(g.defaultDomain);
    expect(d.users.size).toBe(0);
  });

  it("a domain of another driver is EINVAL", () => {
    const intel = boot("intel").sub.device(A)!;
    const amd = boot("amd").sub.device(A)!;
    const d = amd.driver.allocPaging(amd, 0);
    intel.claimDmaOwner("o");
    expect(errnoOf(() => intel.group.attach(d))).toBe(EINVAL);
    expect(intel.domain).toBe(intel.group.blockingDomain);
  });

  it("VT-d: an enforcing-coherency domain is refused for a device without snoop control", () => {
    const { sub } = boot("intel", [{ bdf: A }, { bdf: B, flags: { noEnforceCoherency: true } }]);
    const a = sub.device(A)!;
    const b = sub.device(B)!;
    expect(a.capable("ENFORCE_CACHE_COHERENCY")).toBe(true);
    expect(b.capable("ENFORCE_CACHE_COHERENCY")).toBe(false);
    const d = a.driver.allocPaging(a, 0);
    expect(d.enforceCacheCoherency()).toBe(true);
    b.claimDmaOwner("o");
    expect(errnoOf(() => b.group.attach(d))).toBe(EINVAL);
    expect(b.domain).toBe(b.group.blockingDomain);
    // a non-enforcing domain may be shared with it
    const d2 = a.driver.allocPaging(a, 0);
    b.group.attach(d2);
    expect(d2.enforceCacheCoherency()).toBe(false);
  });

  it("dirty-tracking domains: alloc EOPNOTSUPP and attach EINVAL for a device without dirty tracking", () => {
    for (const kind of ["amd", "intel", "mock"] as const) {
      const { sub } = boot(kind, [{ bdf: A }, { bdf: B, flags: { noDirty: true } }]);
      const a = sub.device(A)!;
      const b = sub.device(B)!;
      expect(errnoOf(() => b.driver.allocPaging(b, IOMMU_HWPT_ALLOC_DIRTY_TRACKING))).toBe(EOPNOTSUPP);
      const d = a.driver.allocPaging(a, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      b.claimDmaOwner("o");
      expect(errnoOf(() => b.group.attach(d))).toBe(EINVAL);
      a.claimDmaOwner("o");
      a.group.attach(d);
    }
  });
});

describe("reserved regions", () => {
  it("amd: MSI window and the HyperTransport range", () => {
    const r = boot("amd").sub.device(A)!.resvRegions();
    expect(r).toEqual([
      { start: 0xfee0_0000n, last: 0xfeef_ffffn, prot: 0, type: IOMMU_RESV_MSI },
      { start: 0xfd_0000_0000n, last: 0xff_ffff_ffffn, prot: 0, type: IOMMU_RESV_RESERVED },
    ]);
  });

  it("intel: the IOAPIC/MSI window; mock: none", () => {
    expect(boot("intel").sub.device(A)!.resvRegions()).toEqual([
      { start: 0xfee0_0000n, last: 0xfeef_ffffn, prot: 0, type: IOMMU_RESV_MSI },
    ]);
    expect(boot("mock").sub.device(A)!.resvRegions()).toEqual([]);
  });

  it("sysfs reserved_regions prints them as the kernel does", () => {
    const { ctx } = boot("amd");
    expect(ctx.vfs.readFile("/sys/kernel/iommu_groups/0/reserved_regions")).toBe(
      "0x00000000fee00000 0x00000000feefffff msi\n0x000000fd00000000 0x000000ffffffffff reserved\n",
    );
  });
});
