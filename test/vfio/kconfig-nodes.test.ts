import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { EBUSY, EINVAL, ENODEV, ENOENT } from "../../src/uapi/errno.js";
import { BDF, openCdev } from "../e2e/driver.js";

function nodes(kconfig: Record<string, boolean>) {
  const m = new Machine({ kconfig });
  expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
  const has = (p: string) => m.vfs.exists(p);
  return {
    m,
    container: has("/dev/vfio/vfio"),
    group: has("/dev/vfio/0"),
    cdev: has("/dev/vfio/devices/vfio0"),
    sysfs: has(`/sys/bus/pci/devices/${BDF}/vfio-dev/vfio0`),
  };
}

describe("the Kconfig matrix decides the nodes", () => {
  it("default: container, group node, cdev and sysfs entry", () => {
    expect(nodes({})).toMatchObject({ container: true, group: true, cdev: true, sysfs: true });
  });
  it("no VFIO_DEVICE_CDEV: no /dev/vfio/devices, the sysfs device still exists", () => {
    expect(nodes({ VFIO_DEVICE_CDEV: false })).toMatchObject({
      container: true,
      group: true,
      cdev: false,
      sysfs: true,
    });
  });
  it("no VFIO_GROUP: cdev only (no group node, no container)", () => {
    expect(nodes({ VFIO_GROUP: false })).toMatchObject({
      container: false,
      group: false,
      cdev: true,
      sysfs: true,
    });
  });
  it("group without a container: no /dev/vfio/vfio", () => {
    expect(nodes({ VFIO_CONTAINER: false })).toMatchObject({ container: false, group: true, cdev: true });
  });
  it("IOMMUFD_VFIO_CONTAINER: /dev/vfio/vfio is an iommufd", () => {
    const n = nodes({ VFIO_CONTAINER: false, IOMMUFD_VFIO_CONTAINER: true });
    expect(n.container).toBe(true);
    const p = n.m.spawn();
    const fd = p.open("/dev/vfio/vfio");
    expect(p.task.fdget(fd).kind).toBe("iommufd");
  });
  it("nodes appear at bind, not before, and go at unbind", () => {
    const m = new Machine();
    expect(m.vfs.exists("/dev/vfio/0")).toBe(false);
    expect(m.vfs.exists("/dev/vfio/vfio")).toBe(true);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["vfio0"]);
    expect(m.readFile(`/sys/bus/pci/devices/${BDF}/vfio-dev/vfio0/uevent`)).toContain(
      "DEVNAME=vfio/devices/vfio0",
    );
    expect(m.unbindDriver(BDF)).toBe(0);
    expect(m.vfs.exists("/dev/vfio/0")).toBe(false);
    expect(m.vfs.exists("/dev/vfio/devices")).toBe(false);
    expect(m.vfs.exists(`/sys/bus/pci/devices/${BDF}/vfio-dev`)).toBe(false);
    // the index is free again
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["vfio0"]);
  });
});

describe("bindDriver / unbindDriver", () => {
  it("errors as a sysfs bind: unknown driver ENOENT, unknown device ENODEV, bound twice EBUSY, no VFIO ENOENT", () => {
    const m = new Machine();
    expect(m.bindDriver(BDF, "nvme")).toBe(-ENOENT);
    expect(m.bindDriver("0000:00:09.0", "vfio-pci")).toBe(-ENODEV);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(-EBUSY);
    expect(new Machine({ kconfig: { VFIO: false } }).bindDriver(BDF, "vfio-pci")).toBe(-ENOENT);
  });
  it("a device with no IOMMU is refused (the noiommu mode is not built yet)", () => {
    const m = new Machine({ iommu: "none" });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(-EINVAL);
    expect(m.vfs.exists("/dev/vfio/devices")).toBe(false);
  });
  it("unbind of an open device is EBUSY (the kernel would wait); unbind of an unbound device ENODEV", () => {
    const m = new Machine();
    expect(m.unbindDriver(BDF)).toBe(-ENODEV);
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    expect(m.unbindDriver(BDF)).toBe(-EBUSY);
    p.close(o.dev);
    expect(m.unbindDriver(BDF)).toBe(0);
  });
  it("indices are allocated lowest-free across devices", () => {
    const m = new Machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy" },
      ],
    });
    m.bindDriver("0000:00:05.0", "vfio-pci");
    m.bindDriver("0000:00:04.0", "vfio-pci");
    expect(m.listDir("/sys/bus/pci/devices/0000:00:05.0/vfio-dev")).toEqual(["vfio0"]);
    expect(m.listDir("/sys/bus/pci/devices/0000:00:04.0/vfio-dev")).toEqual(["vfio1"]);
  });
});
