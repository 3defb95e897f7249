import { describe, expect, it } from "vitest";
import { Vfs } from "../../src/kernel/vfs.js";
import { EISDIR, ENOENT, ENOTDIR, KernelError } from "../../src/uapi/errno.js";

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
}

describe("Vfs", () => {
  it("directories exist while something is inside them", () => {
    const v = new Vfs();
    v.add("/dev/vfio/devices/vfio0", { type: "attr", read: () => "" });
    v.add("/dev/vfio/7", { type: "attr", read: () => "" });
    expect(v.listDir("/dev/vfio")).toEqual(["7", "devices"]);
    expect(v.listDir("/dev")).toEqual(["vfio"]);
    v.remove("/dev/vfio/devices/vfio0");
    expect(v.listDir("/dev/vfio")).toEqual(["7"]);
    expect(errnoOf(() => v.listDir("/dev/vfio/devices"))).toBe(ENOENT);
  });

  it("sorts entries naturally and normalizes paths", () => {
    const v = new Vfs();
    for (const n of ["vfio10", "vfio2", "vfio1"])
      v.add(`/dev/vfio/devices/${n}`, { type: "attr", read: () => n });
    expect(v.listDir("/dev//vfio/./devices/")).toEqual(["vfio1", "vfio2", "vfio10"]);
    expect(v.readFile("/dev/vfio/x/../devices/vfio2")).toBe("vfio2");
  });

  it("reads attributes and links; errors name the path", () => {
    const v = new Vfs();
    v.add("/sys/bus/pci/devices/0000:00:04.0/iommu_group", {
      type: "link",
      target: "../../../kernel/iommu_groups/3",
    });
    expect(v.readFile("/sys/bus/pci/devices/0000:00:04.0/iommu_group")).toBe(
      "../../../kernel/iommu_groups/3",
    );
    expect(errnoOf(() => v.readFile("/sys/bus/pci/devices"))).toBe(EISDIR);
    expect(errnoOf(() => v.listDir("/sys/bus/pci/devices/0000:00:04.0/iommu_group"))).toBe(ENOTDIR);
    expect(errnoOf(() => v.readFile("/nope"))).toBe(ENOENT);
  });
});
