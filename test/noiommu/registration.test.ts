// Who gets a noiommu device node, named how, at what price (taint,
// CAP_SYS_RAWIO), for each case of the Kconfig matrix agreed in review.
import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import {
  EINVAL,
  ENOENT,
  EPERM,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
  vfio_device_bind_iommufd,
} from "../../src/uapi/index.js";
import { le, sioctl } from "../e2e/driver.js";
import { anon, attach, BDF, CDEV, getPa, ioasAlloc, mapFixed, openBound, RAWIO } from "./helpers.js";

const PARAM = { "vfio.enable_unsafe_noiommu_mode": true };

function machine(kconfig: Record<string, boolean>, params = PARAM): Machine {
  return new Machine({ iommu: "none", kconfig, params });
}

/** What user space can do with the group path: open, container, SET_IOMMU(NOIOMMU), device fd. */
function groupPathWorks(m: Machine): boolean {
  const p = m.spawn({ caps: RAWIO });
  const g = p.open("/dev/vfio/noiommu-0");
  if (g < 0) return false;
  const c = p.open("/dev/vfio/vfio");
  expect(c).toBeGreaterThanOrEqual(0);
  expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
  expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
  const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${BDF}\0`));
  p.exit();
  return dev >= 0;
}

/** What user space can do with the cdev: open, bind, IOAS, attach, map, GET_PA. */
function cdevPathWorks(m: Machine): boolean {
  const p = m.spawn({ caps: RAWIO, rlimitMemlock: 64n << 20n });
  if (p.open(CDEV) < 0) return false;
  const o = openBound(p);
  const ioas = ioasAlloc(p, o.iommufd);
  expect(attach(o, ioas).ret).toBe(0);
  expect(mapFixed(p, o.iommufd, ioas, anon(p, 4096), 4096n, 0x1000n)).toBe(0);
  const ok = getPa(p, o.iommufd, ioas, 0x1000n, 4096n).ret === 0;
  p.exit();
  return ok;
}

describe("the six-case Kconfig matrix, end to end (iommu none, parameter on)", () => {
  // [case, VFIO_GROUP, container, VFIO_DEVICE_CDEV, bind result, /dev/vfio entries, devices entries]
  const cases: [number, Record<string, boolean>, number, string[], string[], boolean, boolean][] = [
    [1, { VFIO_DEVICE_CDEV: false }, 0, ["noiommu-0", "vfio"], [], true, false],
    [
      2,
      { VFIO_CONTAINER: false, IOMMUFD_VFIO_CONTAINER: false, VFIO_DEVICE_CDEV: false, IOMMUFD: true },
      -EINVAL,
      [],
      [],
      false,
      false,
    ],
    [3, {}, 0, ["devices", "noiommu-0", "vfio"], ["noiommu-vfio0"], true, true],
    [4, { VFIO_CONTAINER: false, IOMMUFD_VFIO_CONTAINER: false }, -EINVAL, [], [], false, false],
    [5, { VFIO_GROUP: false }, 0, ["devices"], ["noiommu-vfio0"], false, true],
  ];
  it.each(cases)("case %i", (n, kconfig, bind, vfioDir, devicesDir, group, cdev) => {
    const m = machine(kconfig);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(bind);
    const ls = (d: string) => {
      try {
        return m.listDir(d).sort();
      } catch {
        return [];
      }
    };
    expect(ls("/dev/vfio")).toEqual(vfioDir);
    expect(ls("/dev/vfio/devices")).toEqual(devicesDir);
    expect(groupPathWorks(m)).toBe(group);
    expect(cdevPathWorks(m)).toBe(cdev);
    // Case 4 is the one deliberately given up: cdev built, noiommu not.
    if (n === 4) expect(m.kconfig.VFIO_NOIOMMU).toBe(false);
    expect(m.debug.taint()).toEqual(bind === 0 ? ["TAINT_USER"] : []);
  });

  it("case 6 (no group, no cdev) cannot be built: VFIO selects the cdev, so it is case 5", () => {
    const m = machine({ VFIO_GROUP: false, VFIO_DEVICE_CDEV: false });
    expect(m.kconfig.VFIO_DEVICE_CDEV).toBe(true);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["noiommu-vfio0"]);
  });

  it("the seed's VFIO_GROUP_NOIOMMU / VFIO_CDEV_NOIOMMU spellings are the same symbol", () => {
    const off = machine({ VFIO_CDEV_NOIOMMU: false });
    expect(off.kconfig.VFIO_NOIOMMU).toBe(false);
    expect(off.bindDriver(BDF, "vfio-pci")).toBe(-EINVAL);
    expect(machine({ VFIO_GROUP_NOIOMMU: true }).bindDriver(BDF, "vfio-pci")).toBe(0);
  });
});

describe("the registration gate", () => {
  it("without the parameter a no-IOMMU device gets no node: the probe is EINVAL, open is ENOENT, no taint", () => {
    const m = machine({}, { "vfio.enable_unsafe_noiommu_mode": false });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(-EINVAL);
    const p = m.spawn({ caps: RAWIO });
    expect(p.open(CDEV)).toBe(-ENOENT);
    expect(p.open("/dev/vfio/devices/vfio0")).toBe(-ENOENT);
    expect(p.open("/dev/vfio/noiommu-0")).toBe(-ENOENT);
    expect(m.listDir("/dev/vfio")).toEqual(["vfio"]);
    expect(m.debug.taint()).toEqual([]);
  });

  it("the parameter is read at registration: turning it on later lets a new probe succeed", () => {
    const m = machine({}, { "vfio.enable_unsafe_noiommu_mode": false });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(-EINVAL);
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", "1")).toBe(0);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["noiommu-vfio0"]);
  });

  it("turning it off after registration changes nothing for the registered device (CHECK_EXTENSION reads it live)", () => {
    const m = machine({});
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", false)).toBe(0);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["noiommu-vfio0"]);
    expect(cdevPathWorks(m)).toBe(true);
    const p = m.spawn({ caps: RAWIO });
    const g = p.open("/dev/vfio/noiommu-0");
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
  });

  it("taints at registration with a warning, not at open", () => {
    const m = machine({});
    expect(m.debug.taint()).toEqual([]);
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.debug.taint()).toEqual(["TAINT_USER"]);
    const lines = m.debug.dmesg().filter((l) => l.includes("taint"));
    expect(lines.some((l) => l.includes("vfio-noiommu cdev"))).toBe(true);
    expect(lines.some((l) => l.includes("vfio-noiommu group"))).toBe(true);
    const n = m.debug.dmesg().length;
    const p = m.spawn({ caps: RAWIO });
    expect(p.open(CDEV)).toBeGreaterThanOrEqual(0);
    expect(m.debug.dmesg().length).toBe(n);
  });

  it("sysfs: vfio-dev/noiommu-vfioN, the fake iommu_group named vfio-noiommu", () => {
    const m = machine({});
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir(`/sys/bus/pci/devices/${BDF}/vfio-dev`)).toEqual(["noiommu-vfio0"]);
    expect(m.listDir("/sys/class/vfio-dev")).toEqual(["noiommu-vfio0"]);
    expect(m.readFile(`/sys/bus/pci/devices/${BDF}/vfio-dev/noiommu-vfio0/uevent`)).toContain(
      "DEVNAME=vfio/devices/noiommu-vfio0",
    );
    expect(m.readFile("/sys/kernel/iommu_groups/0/name")).toBe("vfio-noiommu\n");
    expect(m.listDir("/sys/kernel/iommu_groups/0/devices")).toEqual([BDF]);
  });

  it("CAP_SYS_RAWIO: cdev open and group open are EPERM without it", () => {
    const m = machine({});
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn();
    expect(p.open(CDEV)).toBe(-EPERM);
    expect(p.open("/dev/vfio/noiommu-0")).toBe(-EPERM);
    expect(m.debug.counters().openFiles).toBe(0);
  });

  it("unbind removes every node and frees the fake group's id", () => {
    const m = machine({});
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.unbindDriver(BDF)).toBe(0);
    expect(m.listDir("/dev/vfio")).toEqual(["vfio"]);
    expect(() => m.listDir("/sys/kernel/iommu_groups/0")).toThrow();
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio").sort()).toEqual(["devices", "noiommu-0", "vfio"]);
  });

  it("a device without an IOMMU on an IOMMU machine (pci noIommu): noiommu next to a normal device", () => {
    const m = new Machine({
      iommu: "amd",
      params: PARAM,
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy", noIommu: true },
      ],
    });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio/devices").sort()).toEqual(["noiommu-vfio1", "vfio0"]);
    // The fake group takes the next free iommu_group id after the real one.
    expect(m.listDir("/dev/vfio").sort()).toEqual(["0", "devices", "noiommu-1", "vfio"]);
    const p = m.spawn();
    expect(p.open("/dev/vfio/devices/vfio0")).toBeGreaterThanOrEqual(0);
    expect(p.open("/dev/vfio/devices/noiommu-vfio1")).toBe(-EPERM);
  });

  it("the noiommu cdev's bind makes a DEVICE object (out_devid) even with the group path built", () => {
    const m = machine({});
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn({ caps: RAWIO });
    const dev = p.open(CDEV);
    const iommufd = p.open("/dev/iommu");
    const r = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd });
    expect(r.ret).toBe(0);
    expect(r.out.out_devid).toBe(1n);
    expect(m.debug.counters().objects).toBe(1);
  });
});
