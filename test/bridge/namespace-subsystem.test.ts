import { expect, it } from "vitest";
import { BridgeNamespace } from "../../src/bridge/namespace.js";
import { Machine } from "../../src/kernel/machine.js";

// QEMU's vfio-pci takes realpath() of <sysfsdev>/subsystem to tell an mdev
// (/sys/bus/mdev) from a PCI function; on Linux the link goes to /sys/bus/pci.
it("a PCI function's subsystem link resolves to /sys/bus/pci, as QEMU's realpath reads it", () => {
  const m = new Machine({});
  const ns = new BridgeNamespace(m);
  const dev = "/sys/bus/pci/devices/0000:00:04.0";
  expect(ns.realpath(`${dev}/subsystem`)).toBe("/sys/bus/pci");
  expect(ns.readlink("/sys/devices/pci0000:00/0000:00:04.0/subsystem")).toBe("../../../bus/pci");
  expect(ns.resolve(`${dev}/subsystem`, false)).toMatchObject({ kind: "link" });
  expect(ns.resolve(`${dev}/subsystem`, true)).toMatchObject({ kind: "dir", path: "/sys/bus/pci" });
  const names = ns.readdir(dev);
  expect(Array.isArray(names) && names.find((e) => e.name === "subsystem")).toEqual({
    name: "subsystem",
    kind: "link",
  });
  // only for a function the machine has, and only under its own root bus
  expect(ns.realpath("/sys/bus/pci/devices/0000:00:05.0/subsystem")).toBe(-2);
  expect(ns.realpath("/sys/devices/pci0000:01/0000:00:04.0/subsystem")).toBe(-2);
  expect(ns.readlink(`${dev}/vendor`)).toBe(-22);
});
