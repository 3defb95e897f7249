// The no-IOMMU group path checked against the kernel source: container.c
// (vfio_container_ioctl_check_extension, vfio_noiommu_open,
// vfio_group_use_container) and group.c (vfio_df_group_open). An
// unprivileged process cannot open a no-IOMMU group (vfio_group_fops_open:
// EPERM), so the capability checks made later are reached the way the
// kernel allows: a CAP_SYS_RAWIO parent opens the group and the container,
// forks, and the child drops CAP_SYS_RAWIO from its effective set (capset(2)
// lowering a capability needs no privilege) before using the inherited fds.
import { describe, expect, it } from "vitest";
import type { Process } from "../../src/kernel/process.js";
import {
  EINVAL,
  EPERM,
  IOMMU_IOAS_ALLOC,
  IOMMU_VFIO_IOAS,
  IOMMU_VFIO_IOAS_SET,
  iommu_ioas_alloc,
  iommu_vfio_ioas,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_GET_INFO,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_info,
} from "../../src/uapi/index.js";
import { le, sioctl } from "../e2e/driver.js";
import { BDF, boot } from "./helpers.js";

const GROUP = "/dev/vfio/noiommu-0";
const NAME = new TextEncoder().encode(`${BDF}\0`);

/** fork(2), then capset(2) dropping CAP_SYS_RAWIO from the child's effective set. */
function unprivilegedChild(p: Process): Process {
  const child = p.fork();
  if (typeof child === "number") throw new Error(`fork: ${child}`);
  child.cred.caps.delete("CAP_SYS_RAWIO");
  return child;
}

describe("vfio_container_ioctl_check_extension: vfio_iommu_driver_allowed() only once a group is attached", () => {
  it("an empty container offers VFIO_NOIOMMU_IOMMU (parameter on) and type1; a noiommu group leaves only noiommu", () => {
    const { m, p } = boot();
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(1);
    // vfio_noiommu_ioctl() reads the parameter live.
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", false)).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", true)).toBe(0);
    const g = p.open(GROUP);
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(0);
  });
});

describe("vfio_noiommu_open: VFIO_SET_IOMMU(VFIO_NOIOMMU_IOMMU) needs CAP_SYS_RAWIO in the caller", () => {
  it("a child without CAP_SYS_RAWIO gets EPERM on the inherited container; nothing is set; the parent then succeeds", () => {
    const { m, p } = boot();
    const g = p.open(GROUP);
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    const child = unprivilegedChild(p);
    // The unprivileged child cannot open the group itself (vfio_group_fops_open).
    expect(child.open(GROUP)).toBe(-EPERM);
    // It may open the container node (world-writable) and query it.
    const own = child.open("/dev/vfio/vfio");
    expect(own).toBeGreaterThanOrEqual(0);
    expect(child.ioctl(own, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    // vfio_ioctl_set_iommu(): the noiommu driver answers the extension, its open() fails EPERM.
    expect(child.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(-EPERM);
    // No driver was set: a device open still finds no IOMMU driver (EINVAL).
    expect(p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME)).toBe(-EINVAL);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    child.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("vfio_group_use_container: a device of a no-IOMMU group needs CAP_SYS_RAWIO at its first open", () => {
  it("the child's GET_DEVICE_FD on the inherited group is EPERM and leaves nothing open; EINVAL (no driver) comes first", () => {
    const { m, p } = boot();
    const g = p.open(GROUP);
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    const child = unprivilegedChild(p);
    expect(child.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME)).toBe(-EINVAL);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    const before = m.debug.counters();
    expect(child.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME)).toBe(-EPERM);
    expect(m.debug.counters()).toEqual(before);
    expect(m.debug.counters().vfioDevicesOpen).toBe(0);
    // Only the first open checks: once the parent holds the device open, the child's open succeeds.
    const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev).toBeGreaterThanOrEqual(0);
    const dev2 = child.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev2).toBeGreaterThanOrEqual(0);
    expect(sioctl(child, dev2, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0);
    child.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("vfio_df_group_open: a no-IOMMU device through iommufd compat", () => {
  function compat(p: Process): { g: number; fd: number } {
    const g = p.open(GROUP);
    const fd = p.open("/dev/iommu");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(fd, 4))).toBe(0);
    return { g, fd };
  }

  it("EPERM once the iommufd has a compat IOAS (IOMMU_VFIO_IOAS SET): translation was asked for", () => {
    const { m, p } = boot();
    const { g, fd } = compat(p);
    const a = sioctl(p, fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
    expect(a.ret).toBe(0);
    const ioas = Number(a.out.out_ioas_id);
    const set = sioctl(p, fd, IOMMU_VFIO_IOAS, iommu_vfio_ioas, {
      size: 12,
      ioas_id: ioas,
      op: IOMMU_VFIO_IOAS_SET,
    });
    expect(set.ret).toBe(0);
    const before = m.debug.counters();
    expect(p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME)).toBe(-EPERM);
    expect(m.debug.counters()).toEqual(before);
    expect(m.debug.counters().vfioDevicesOpen).toBe(0);
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("EPERM without CAP_SYS_RAWIO at the first open only (a child of the opener)", () => {
    const { m, p } = boot();
    const { g } = compat(p);
    const child = unprivilegedChild(p);
    expect(child.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME)).toBe(-EPERM);
    expect(m.debug.counters().vfioDevicesOpen).toBe(0);
    const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev).toBeGreaterThanOrEqual(0);
    const dev2 = child.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev2).toBeGreaterThanOrEqual(0);
    expect(sioctl(child, dev2, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0);
    child.exit();
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});
