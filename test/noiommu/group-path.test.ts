// The group path as the kernel has it today for a no-IOMMU device: the
// vfio-noiommu container driver, iommufd's compat no-iommu mode, the
// group/cdev exclusivity, and the feature table of the series' documentation.
import { describe, expect, it } from "vitest";
import type { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  EBADFD,
  EBUSY,
  EINVAL,
  ENODEV,
  ENOTTY,
  EPERM,
  IOMMU_VFIO_IOAS,
  IOMMU_VFIO_IOAS_GET,
  iommu_vfio_ioas,
  VFIO_CHECK_EXTENSION,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_GET_INFO,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA,
  VFIO_NOIOMMU_IOMMU,
  VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_bind_iommufd,
  vfio_device_info,
  vfio_iommu_type1_dma_map,
} from "../../src/uapi/index.js";
import { le, sioctl } from "../e2e/driver.js";
import { anon, attach, BDF, boot, CDEV, getPa, ioasAlloc, mapFixed, openBound } from "./helpers.js";

const GROUP = "/dev/vfio/noiommu-0";
const NAME = new TextEncoder().encode(`${BDF}\0`);

function groupWithContainer(p: Process): { g: number; c: number } {
  const g = p.open(GROUP);
  expect(g).toBeGreaterThanOrEqual(0);
  const c = p.open("/dev/vfio/vfio");
  expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
  return { g, c };
}

describe("legacy container: the vfio-noiommu IOMMU driver", () => {
  it("an empty container offers it (vfio_container_ioctl_check_extension polls every driver); a container holding the noiommu group offers only it", () => {
    const { p } = boot();
    const c0 = p.open("/dev/vfio/vfio");
    expect(p.ioctl(c0, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    expect(p.ioctl(c0, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(1);
    const { c } = groupWithContainer(p);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(-ENODEV);
  });

  it("CHECK_EXTENSION reads the parameter live; SET_IOMMU then finds no driver (ENODEV)", () => {
    const { m, p } = boot();
    const { c } = groupWithContainer(p);
    expect(m.setParam("vfio.enable_unsafe_noiommu_mode", false)).toBe(0);
    expect(p.ioctl(c, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(-ENODEV);
  });

  it("SET_IOMMU(VFIO_NOIOMMU_IOMMU) works; MAP_DMA is ENOTTY; the device fd works", () => {
    const { m, p } = boot();
    const { g, c } = groupWithContainer(p);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    const va = anon(p, 4096);
    const r = sioctl(p, c, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
      argsz: 32,
      flags: 3,
      vaddr: va,
      iova: 0n,
      size: 4096n,
    });
    expect(r.ret).toBe(-ENOTTY);
    const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev).toBeGreaterThanOrEqual(0);
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0);
    expect(m.debug.dmesg().some((l) => l.includes("vfio-noiommu device opened by user"))).toBe(true);
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("group open needs CAP_SYS_RAWIO; a noiommu group never shares a container with an IOMMU group", () => {
    const { m } = boot();
    expect(m.spawn().open(GROUP)).toBe(-EPERM);
  });
});

describe("iommufd compat: no-iommu mode", () => {
  function compat(m: Machine, p: Process) {
    const g = p.open(GROUP);
    const fd = p.open("/dev/iommu");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(fd, 4))).toBe(0);
    void m;
    return { g, fd };
  }

  it("the iommufd becomes a no-iommu container: TYPE1 still 1, NOIOMMU 1, SET_IOMMU(NOIOMMU) 0, SET_IOMMU(TYPE1v2) EINVAL", () => {
    const { m, p } = boot();
    const { fd } = compat(m, p);
    // iommufd_vfio_check_extension() answers TYPE1/TYPE1v2/UNMAP_ALL with 1 unconditionally;
    // only iommufd_vfio_set_iommu() looks at no_iommu_mode.
    expect(p.ioctl(fd, VFIO_CHECK_EXTENSION, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(1);
    expect(p.ioctl(fd, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU))).toBe(-EINVAL);
    expect(p.ioctl(fd, VFIO_CHECK_EXTENSION, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(1);
    expect(p.ioctl(fd, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
  });

  it("the device opens without an iommufd DEVICE object, and there is no compat IOAS", () => {
    const { m, p } = boot();
    const { g, fd } = compat(m, p);
    const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(dev).toBeGreaterThanOrEqual(0);
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0);
    expect(m.debug.counters().objects).toBe(0);
    const r = sioctl(p, fd, IOMMU_VFIO_IOAS, iommu_vfio_ioas, { size: 12, op: IOMMU_VFIO_IOAS_GET });
    expect(r.ret).toBe(-ENODEV);
    p.exit();
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("group and cdev for the same device: both nodes, the usual exclusivity", () => {
  it("while the cdev is bound the group cannot be opened (EBUSY), and the other way round", () => {
    const { m, p } = boot();
    const o = openBound(p);
    expect(p.open(GROUP)).toBe(-EBUSY);
    p.close(o.dev);
    const g = p.open(GROUP);
    expect(g).toBeGreaterThanOrEqual(0);
    const dev = p.open(CDEV);
    const r = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, {
      argsz: 24,
      iommufd: o.iommufd,
    });
    expect(r.ret).toBe(-EBUSY);
    void m;
  });
});

describe("the feature table of the series' documentation (group vs cdev)", () => {
  // | Feature          | VFIO group | VFIO device cdev |
  // | VFIO device UAPI | Yes        | Yes              |
  // | VFIO container   | No         | No               |
  // | IOMMUFD IOAS     | No         | Yes*             |
  it("group: device UAPI yes, container DMA no, IOAS no", () => {
    const { m, p } = boot();
    const { g, c } = groupWithContainer(p);
    expect(p.ioctl(c, VFIO_SET_IOMMU, BigInt(VFIO_NOIOMMU_IOMMU))).toBe(0);
    const dev = p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, NAME);
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0); // UAPI: yes
    const dma = sioctl(p, c, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
      argsz: 32,
      flags: 3,
      vaddr: anon(p, 4096),
      size: 4096n,
    });
    expect(dma.ret).toBe(-ENOTTY); // container: no
    // IOAS: no. Through iommufd compat the device never binds, so no IOAS can reach it.
    expect(m.debug.counters().objects).toBe(0);
  });

  it("cdev: device UAPI yes, container no (a container fd cannot be bound), IOAS yes (map + GET_PA)", () => {
    const { m, p } = boot();
    const dev = p.open(CDEV);
    const c = p.open("/dev/vfio/vfio");
    const r = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { argsz: 24, iommufd: c });
    expect(r.ret).toBe(-EBADFD); // container: no
    p.close(dev);
    const o = openBound(p);
    expect(sioctl(p, o.dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 16 }).ret).toBe(0); // UAPI: yes
    const ioas = ioasAlloc(p, o.iommufd);
    expect(attach(o, ioas).ret).toBe(0);
    expect(mapFixed(p, o.iommufd, ioas, anon(p, 4096), 4096n, 0x1000n)).toBe(0);
    expect(getPa(p, o.iommufd, ioas, 0x1000n, 4096n).ret).toBe(0); // IOAS: yes*
    void m;
  });
});
