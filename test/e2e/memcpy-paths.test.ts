import { describe, expect, it } from "vitest";
import { Machine } from "../../src/kernel/machine.js";
import { EBUSY, EINVAL, EPERM } from "../../src/uapi/errno.js";
import {
  IOMMU_IOAS_MAP_READABLE,
  VFIO_DEVICE_GET_INFO,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_bind_iommufd,
  vfio_device_info,
  vfio_group_status,
} from "../../src/uapi/index.js";
import {
  BDF,
  buffer,
  detachPt,
  dmaMap,
  dmaUnmap,
  doorbell,
  enableBusMaster,
  fromLe,
  ioasMap,
  ioasUnmap,
  le,
  msiEventfd,
  type Opened,
  openCdev,
  openGroup,
  reg,
  sioctl,
  withRegions,
} from "./driver.js";

const PAT = (i: number) => (i * 13 + 1) & 0xff;

function copyAndCheck(
  m: Machine,
  o: Opened,
  srcVa: bigint,
  dstVa: bigint,
  srcIova: bigint,
  dstIova: bigint,
  len: number,
) {
  enableBusMaster(o);
  const efd = msiEventfd(o);
  doorbell(o, srcIova, dstIova, BigInt(len));
  expect(reg(o, 0x24)).toBe(2n);
  expect(fromLe(o.p.read(efd, 8))).toBe(1n);
  expect(o.p.readMemory(dstVa, len)).toEqual(o.p.readMemory(srcVa, len));
  void m;
}

describe("memcpy through the group path", () => {
  for (const [name, type] of [
    ["type1v2", VFIO_TYPE1v2_IOMMU],
    ["type1 (v1)", VFIO_TYPE1_IOMMU],
  ] as const) {
    it(`group + legacy ${name} container`, () => {
      const m = new Machine();
      expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
      const p = m.spawn({ rlimitMemlock: 64n << 20n });
      const o = openGroup(p, 0, BDF, type);
      const src = buffer(p, 4096, PAT);
      const dst = buffer(p, 4096);
      expect(dmaMap(o, src, 4096, 0x10000n)).toBe(0);
      expect(dmaMap(o, dst, 4096, 0x20000n)).toBe(0);
      expect(m.debug.counters().pinnedPages).toBe(2);
      copyAndCheck(m, o, src, dst, 0x10000n, 0x20000n, 4096);
      const st = sioctl(p, o.group, VFIO_GROUP_GET_STATUS, vfio_group_status, { argsz: 8 });
      expect(st.out.flags).toBe(3n);
      p.exit();
      expect(m.debug.counters().pinnedPages).toBe(0);
      expect(m.debug.counters().vfioContainers).toBe(0);
      expect(m.debug.checkInvariants()).toEqual([]);
    });
  }

  it("type1 unmap of a range with nothing mapped succeeds with size 0; v2 refuses to bisect", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openGroup(p, 0);
    expect(dmaUnmap(o, 0x500000n, 0x1000)).toEqual({ ret: 0, size: 0n });
    const src = buffer(p, 8192, PAT);
    expect(dmaMap(o, src, 8192, 0x10000n)).toBe(0);
    expect(dmaUnmap(o, 0x11000n, 0x1000).ret).toBe(-EINVAL);
    expect(dmaUnmap(o, 0x10000n, 0x2000)).toEqual({ ret: 0, size: 0x2000n });
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("type1 v1 unmaps a whole mapping from its first IOVA and leaves one it starts inside", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openGroup(p, 0, BDF, VFIO_TYPE1_IOMMU);
    const src = buffer(p, 8192, PAT);
    expect(dmaMap(o, src, 8192, 0x10000n)).toBe(0);
    expect(dmaUnmap(o, 0x11000n, 0x1000)).toEqual({ ret: 0, size: 0n });
    expect(dmaUnmap(o, 0x10000n, 0x1000)).toEqual({ ret: 0, size: 0x2000n });
  });

  it("group + iommufd compat container (IOMMUFD_VFIO_CONTAINER, no legacy container)", () => {
    const m = new Machine({ kconfig: { IOMMUFD_VFIO_CONTAINER: true, VFIO_CONTAINER: false } });
    expect(m.bindDriver(BDF, "vfio-pci")).toBe(0);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openGroup(p, 0);
    expect(p.task.fdget(o.container).kind).toBe("iommufd");
    const src = buffer(p, 4096, PAT);
    const dst = buffer(p, 4096);
    expect(dmaMap(o, src, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(o, dst, 4096, 0x20000n)).toBe(0);
    copyAndCheck(m, o, src, dst, 0x10000n, 0x20000n, 4096);
    // the compat unmap of a range with nothing mapped also succeeds with size 0
    expect(dmaUnmap(o, 0x700000n, 0x1000)).toEqual({ ret: 0, size: 0n });
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("faults: STATUS 3, FAULT_ADDR, nothing written", () => {
  function setup() {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openCdev(m, p);
    const src = buffer(p, 4096, PAT);
    const dst = buffer(p, 4096, () => 0xee);
    return { m, p, o, src, dst };
  }
  const untouched = (p: Machine["spawn"] extends (...a: never[]) => infer P ? P : never, dst: bigint) =>
    expect([...(p.readMemory(dst, 4096) as Uint8Array)].every((b) => b === 0xee)).toBe(true);

  it("an unmapped source IOVA", () => {
    const { m, p, o, dst } = setup();
    expect(ioasMap(o, dst, 4096, 0x20000n)).toBe(0);
    enableBusMaster(o);
    const efd = msiEventfd(o);
    doorbell(o, 0x90000n, 0x20000n, 64n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(0x90000n);
    expect(reg(o, 0x30)).toBe(0n);
    untouched(p, dst);
    expect(m.debug.dmaLog()).toMatchObject([{ op: "read", addr: 0x90000n, result: "fault" }]);
    // the error completion still interrupts
    expect(fromLe(p.read(efd, 8))).toBe(1n);
  });

  it("a write into a read-only mapping", () => {
    const { m, p, o, src, dst } = setup();
    expect(ioasMap(o, src, 4096, 0x10000n)).toBe(0);
    expect(ioasMap(o, dst, 4096, 0x20000n, IOMMU_IOAS_MAP_READABLE)).toBe(0);
    enableBusMaster(o);
    doorbell(o, 0x10000n, 0x20100n, 64n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(0x20100n);
    untouched(p, dst);
    expect(m.debug.dmaLog()).toMatchObject([{ op: "write", addr: 0x20100n, result: "fault" }]);
  });

  it("the blocked domain after DETACH_IOMMUFD_PT", () => {
    const { p, o, src, dst } = setup();
    expect(ioasMap(o, src, 4096, 0x10000n)).toBe(0);
    expect(ioasMap(o, dst, 4096, 0x20000n)).toBe(0);
    enableBusMaster(o);
    doorbell(o, 0x10000n, 0x20000n, 64n);
    expect(reg(o, 0x24)).toBe(2n);
    p.writeMemory(dst, new Uint8Array(4096).fill(0xee));
    expect(detachPt(o)).toBe(0);
    expect(detachPt(o)).toBe(0); // nothing attached: still 0
    doorbell(o, 0x10000n, 0x20000n, 64n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(0x10000n);
    untouched(p, dst);
  });

  it("after IOAS_UNMAP the IOVA faults", () => {
    const { p, o, src, dst } = setup();
    expect(ioasMap(o, src, 4096, 0x10000n)).toBe(0);
    expect(ioasMap(o, dst, 4096, 0x20000n)).toBe(0);
    expect(ioasUnmap(o, 0x10000n, 4096)).toBe(0);
    enableBusMaster(o);
    doorbell(o, 0x10000n, 0x20000n, 64n);
    expect(reg(o, 0x24)).toBe(3n);
    untouched(p, dst);
  });

  it("no bus master: STATUS 3 and a dmaLog finding", () => {
    const { m, p, o, src, dst } = setup();
    expect(ioasMap(o, src, 4096, 0x10000n)).toBe(0);
    expect(ioasMap(o, dst, 4096, 0x20000n)).toBe(0);
    doorbell(o, 0x10000n, 0x20000n, 64n);
    expect(reg(o, 0x24)).toBe(3n);
    expect(reg(o, 0x28, 8)).toBe(0x10000n);
    untouched(p, dst);
    const log = m.debug.dmaLog();
    expect(log).toHaveLength(1);
    expect(log[0].result).toBe("fault");
    expect(log[0].finding).toMatch(/bus mastering/);
  });
});

describe("group/cdev exclusivity", () => {
  it("an open group node makes cdev bind EBUSY, and nothing changes", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const g = p.open("/dev/vfio/0");
    expect(g).toBeGreaterThanOrEqual(0);
    const ifd = p.open("/dev/iommu");
    const dev = p.open("/dev/vfio/devices/vfio0");
    const b = sioctl(p, dev, 0x3b76, vfio_device_bind_iommufd, { argsz: 24, iommufd: ifd });
    expect(b.ret).toBe(-EBUSY);
    expect(sioctl(p, dev, VFIO_DEVICE_GET_INFO, vfio_device_info, { argsz: 24 }).ret).toBe(-EINVAL);
    expect(p.close(g)).toBe(0);
    expect(sioctl(p, dev, 0x3b76, vfio_device_bind_iommufd, { argsz: 24, iommufd: ifd }).ret).toBe(0);
  });

  it("a bound cdev makes opening the group EBUSY until the cdev fd closes", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const o = openCdev(m, p);
    expect(p.open("/dev/vfio/0")).toBe(-EBUSY);
    expect(p.close(o.dev)).toBe(0);
    const g = p.open("/dev/vfio/0");
    expect(g).toBeGreaterThanOrEqual(0);
    expect(p.open("/dev/vfio/0")).toBe(-EBUSY); // one opener
  });

  it("a failed bind does not keep the group blocked", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const dev = p.open("/dev/vfio/devices/vfio0");
    expect(sioctl(p, dev, 0x3b76, vfio_device_bind_iommufd, { argsz: 24, iommufd: 77 }).ret).toBe(-9);
    const g = p.open("/dev/vfio/0");
    expect(g).toBeGreaterThanOrEqual(0);
  });
});

describe("machines with several devices", () => {
  it("two devices in two groups: each gets its own group node and cdev and copies alone", () => {
    const m = new Machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy" },
        { bdf: "0000:00:05.0", kind: "memcpy" },
      ],
    });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio")).toEqual(["0", "1", "devices", "vfio"]);
    expect(m.listDir("/dev/vfio/devices")).toEqual(["vfio0", "vfio1"]);
    expect(m.listDir("/sys/bus/pci/devices/0000:00:05.0/vfio-dev")).toEqual(["vfio1"]);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const a = openCdev(m, p, "/dev/vfio/devices/vfio0");
    const b = openGroup(p, 1, "0000:00:05.0");
    const src = buffer(p, 4096, PAT);
    const d1 = buffer(p, 4096);
    const d2 = buffer(p, 4096);
    expect(ioasMap(a, src, 4096, 0x10000n)).toBe(0);
    expect(ioasMap(a, d1, 4096, 0x20000n)).toBe(0);
    expect(dmaMap(b, src, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(b, d2, 4096, 0x30000n)).toBe(0);
    copyAndCheck(m, a, src, d1, 0x10000n, 0x20000n, 4096);
    copyAndCheck(m, b, src, d2, 0x10000n, 0x30000n, 4096);
    // device 0's IOVA 0x30000 is not mapped in its IOAS
    doorbell(a, 0x10000n, 0x30000n, 16n);
    expect(reg(a, 0x24)).toBe(3n);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
  });

  it("two devices in one group share the group node, the container and its domain", () => {
    const m = new Machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy", group: 5 },
        { bdf: "0000:00:05.0", kind: "memcpy", group: 5 },
      ],
    });
    expect(m.bindDriver("0000:00:04.0", "vfio-pci")).toBe(0);
    expect(m.bindDriver("0000:00:05.0", "vfio-pci")).toBe(0);
    expect(m.listDir("/dev/vfio")).toEqual(["5", "devices", "vfio"]);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const a = openGroup(p, 5, "0000:00:04.0");
    const name = new TextEncoder().encode("0000:00:05.0\0");
    const bdev = p.ioctl(a.group, VFIO_GROUP_GET_DEVICE_FD, name);
    expect(bdev).toBeGreaterThanOrEqual(0);
    const b = withRegions(p, bdev);
    const src = buffer(p, 4096, PAT);
    const d1 = buffer(p, 4096);
    expect(dmaMap(a, src, 4096, 0x10000n)).toBe(0);
    expect(dmaMap(a, d1, 4096, 0x20000n)).toBe(0);
    copyAndCheck(m, b, src, d1, 0x10000n, 0x20000n, 4096);
    p.exit();
    expect(m.debug.counters().pinnedPages).toBe(0);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("two devices in one group: a second iommufd cannot bind the sibling (iommu_device_claim_dma_owner: another owner is EPERM)", () => {
    const m = new Machine({
      pci: [
        { bdf: "0000:00:04.0", kind: "memcpy", group: 5 },
        { bdf: "0000:00:05.0", kind: "memcpy", group: 5 },
      ],
    });
    m.bindDriver("0000:00:04.0", "vfio-pci");
    m.bindDriver("0000:00:05.0", "vfio-pci");
    const p = m.spawn();
    openCdev(m, p, "/dev/vfio/devices/vfio0");
    const other = p.open("/dev/iommu");
    const dev = p.open("/dev/vfio/devices/vfio1");
    expect(sioctl(p, dev, 0x3b76, vfio_device_bind_iommufd, { argsz: 24, iommufd: other }).ret).toBe(-EPERM);
  });
});

describe("group fd rules", () => {
  it("GET_DEVICE_FD before SET_CONTAINER is EINVAL; an unknown name ENODEV; SET_CONTAINER twice EINVAL", () => {
    const m = new Machine();
    m.bindDriver(BDF, "vfio-pci");
    const p = m.spawn();
    const g = p.open("/dev/vfio/0");
    expect(p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${BDF}\0`))).toBe(-EINVAL);
    expect(p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode("0000:00:09.0\0"))).toBe(-19);
    const c = p.open("/dev/vfio/vfio");
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(0);
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(c, 4))).toBe(-EINVAL);
    // container set but no IOMMU driver yet: the device open fails
    expect(p.ioctl(g, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${BDF}\0`))).toBe(-EINVAL);
    expect(p.ioctl(c, VFIO_SET_IOMMU, 42n)).toBe(-19);
    expect(p.ioctl(g, VFIO_GROUP_SET_CONTAINER, le(p.eventfd(), 4))).toBe(-EINVAL);
  });
});
