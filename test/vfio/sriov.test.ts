// SR-IOV on the memcpy PF: the capability, sriov_numvfs' rules, the VFs as
// functions of the machine, and the VF token uAPI of vfio-pci, all through
// the syscall contract.
import { describe, expect, it } from "vitest";
import { MEMCPY_PF_TOTAL_VFS, MEMCPY_VF_DEVICE_ID } from "../../src/hw/memcpy-pf.js";
import {
  PCI_EXT_CAP_ID_SRIOV,
  PCI_SRIOV_CTRL,
  PCI_SRIOV_CTRL_MSE,
  PCI_SRIOV_CTRL_VFE,
  PCI_SRIOV_NUM_VF,
  PCI_SRIOV_TOTAL_VF,
  PCI_SRIOV_VF_DID,
  PCI_SRIOV_VF_OFFSET,
  PCI_SRIOV_VF_STRIDE,
} from "../../src/hw/pci-regs.js";
import { Machine } from "../../src/kernel/machine.js";
import type { Process } from "../../src/kernel/process.js";
import {
  EACCES,
  EBUSY,
  EFAULT,
  EINVAL,
  ENODEV,
  ENOENT,
  ENOTTY,
  EPERM,
  ERANGE,
  IOMMU_IOAS_ALLOC,
  iommu_ioas_alloc,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_FLAG_TOKEN,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_SET_IRQS,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_REQ_IRQ_INDEX,
  VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
} from "../../src/uapi/index.js";
import {
  buffer,
  doorbell,
  enableBusMaster,
  ioasMap,
  le,
  msiEventfd,
  openCdev,
  reg,
  sioctl,
  withRegions,
} from "../e2e/driver.js";

const PF = "0000:00:04.0";
const VF0 = "0000:00:10.0";
const VF1 = "0000:00:10.1";
const UUID_1 = "52ac9bff-3a88-4fbd-901a-0d767c3b6c97";
const UUID_2 = "88594674-90a0-47a9-aea8-9d9b352ac08a";
const SYS = "/sys/bus/pci/devices";

function machine(enableSriov = true) {
  const m = new Machine({
    pci: [{ bdf: PF, kind: "memcpy-pf" }],
    params: { "vfio_pci.enable_sriov": enableSriov },
  });
  expect(m.bindDriver(PF, "vfio-pci")).toBe(0);
  const root = m.spawn({ uid: 0, rlimitMemlock: 64n << 20n });
  return { m, root };
}

/** Write a sysfs attribute as root: the write's return (bytes or -errno). */
function sysWrite(p: Process, path: string, text: string): number {
  const fd = p.open(path, 1);
  expect(fd).toBeGreaterThanOrEqual(0);
  const r = p.write(fd, new TextEncoder().encode(text));
  expect(p.close(fd)).toBe(0);
  return r;
}

/** The counters that must come back after everything is closed (the test's own buffers aside). */
function leaks(m: Machine) {
  const c = m.debug.counters();
  return {
    pinnedPages: c.pinnedPages,
    objects: c.objects,
    openFiles: c.openFiles,
    domains: c.domains,
    ptFrames: c.ptFrames,
    vfioDevicesOpen: c.vfioDevicesOpen,
    vfioDeviceFiles: c.vfioDeviceFiles,
    vfioContainers: c.vfioContainers,
    iommufdContexts: c.iommufdContexts,
  };
}

function uuidBytes(s: string): Uint8Array {
  const h = s.replaceAll("-", "");
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16));
}

function groupOf(m: Machine, bdf: string): number {
  const t = m.readFile(`${SYS}/${bdf}/iommu_group`);
  return Number(t.split("/").pop());
}

/** The group path up to GET_DEVICE_FD with `name`: the ioctl's return, and the fds to close. */
function groupGetFd(p: Process, m: Machine, bdf: string, name: string, container: number) {
  const group = p.open(`/dev/vfio/${groupOf(m, bdf)}`);
  expect(group).toBeGreaterThanOrEqual(0);
  expect(p.ioctl(group, VFIO_GROUP_SET_CONTAINER, le(container, 4))).toBe(0);
  p.ioctl(container, VFIO_SET_IOMMU, BigInt(VFIO_TYPE1v2_IOMMU));
  const dev = p.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
  return { group, dev };
}

/** cdev BIND_IOMMUFD with an optional token at a user pointer. */
function cdevBind(p: Process, m: Machine, bdf: string, iommufd: number, token?: string, flags?: number) {
  const name = m.listDir(`${SYS}/${bdf}/vfio-dev`)[0];
  const dev = p.open(`/dev/vfio/devices/${name}`);
  expect(dev).toBeGreaterThanOrEqual(0);
  let ptr = 0n;
  if (token !== undefined) {
    ptr = buffer(p, 4096);
    expect(p.writeMemory(ptr, uuidBytes(token))).toBe(0);
  }
  const r = sioctl(p, dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, {
    argsz: 24,
    flags: flags ?? (token !== undefined ? VFIO_DEVICE_BIND_FLAG_TOKEN : 0),
    iommufd,
    token_uuid_ptr: ptr,
  });
  return { dev, ret: r.ret };
}

function setToken(p: Process, fd: number, token: string, flags = VFIO_DEVICE_FEATURE_SET): number {
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 24, true);
  dv.setUint32(4, flags | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, true);
  b.set(uuidBytes(token), 8);
  return p.ioctl(fd, VFIO_DEVICE_FEATURE, b);
}

describe("the SR-IOV capability of the memcpy PF", () => {
  it("sits at 0x100 with TotalVFs, offset, stride and the VF Device ID", () => {
    const { m } = machine();
    const pf = m.pci.get(PF)!;
    const pos = pf.config.findExtCap(PCI_EXT_CAP_ID_SRIOV);
    expect(pos).toBe(0x100);
    expect(pf.configRead(pos + PCI_SRIOV_TOTAL_VF, 2)).toBe(MEMCPY_PF_TOTAL_VFS);
    expect(pf.configRead(pos + PCI_SRIOV_VF_OFFSET, 2)).toBe(0x60);
    expect(pf.configRead(pos + PCI_SRIOV_VF_STRIDE, 2)).toBe(1);
    expect(pf.configRead(pos + PCI_SRIOV_VF_DID, 2)).toBe(MEMCPY_VF_DEVICE_ID);
    expect(pf.configRead(pos + PCI_SRIOV_CTRL, 2)).toBe(0);
    expect(m.readFile(`${SYS}/${PF}/sriov_totalvfs`)).toBe(`${MEMCPY_PF_TOTAL_VFS}\n`);
    expect(m.readFile(`${SYS}/${PF}/sriov_numvfs`)).toBe("0\n");
    expect(m.readFile(`${SYS}/${PF}/sriov_offset`)).toBe("96\n");
    expect(m.readFile(`${SYS}/${PF}/sriov_vf_device`)).toBe("0002\n");
  });

  it("is not on the plain memcpy device, which has no sriov_* files", () => {
    const m = new Machine();
    expect(m.pci.get(PF)!.config.findExtCap(PCI_EXT_CAP_ID_SRIOV)).toBe(0);
    expect(m.vfs.exists(`${SYS}/${PF}/sriov_numvfs`)).toBe(false);
  });

  it("the user reads it through vfio-pci but cannot write it", () => {
    const { m } = machine();
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const o = openCdev(m, p);
    const ctrl = o.cfg + 0x100n + BigInt(PCI_SRIOV_CTRL);
    expect(p.pread(o.dev, 4, o.cfg + 0x100n)).toEqual(le(0x10010, 4));
    expect(p.pwrite(o.dev, le(PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE, 2), ctrl)).toBe(2);
    expect(m.pci.get(PF)!.configRead(0x100 + PCI_SRIOV_CTRL, 2)).toBe(0);
  });
});

describe("sriov_numvfs", () => {
  it("creates VFs as functions with their own group, vfio-pci binding and sysfs links", () => {
    const { m, root } = machine();
    const before = leaks(m);
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "2\n")).toBe(2);
    expect(m.readFile(`${SYS}/${PF}/sriov_numvfs`)).toBe("2\n");
    const pf = m.pci.get(PF)!;
    expect(pf.configRead(0x100 + PCI_SRIOV_NUM_VF, 2)).toBe(2);
    expect(pf.configRead(0x100 + PCI_SRIOV_CTRL, 2)).toBe(PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    expect(m.readFile(`${SYS}/${PF}/virtfn0`)).toBe(`../${VF0}`);
    expect(m.readFile(`${SYS}/${PF}/virtfn1`)).toBe(`../${VF1}`);
    expect(m.readFile(`${SYS}/${VF0}/physfn`)).toBe(`../${PF}`);
    expect(m.readFile(`${SYS}/${VF0}/driver`)).toBe("../../../bus/pci/drivers/vfio-pci");
    expect(m.readFile(`${SYS}/${VF0}/vendor`)).toBe("0x1de0\n");
    expect(m.readFile(`${SYS}/${VF0}/device`)).toBe("0x0002\n");
    expect(groupOf(m, VF0)).not.toBe(groupOf(m, PF));
    expect(groupOf(m, VF1)).not.toBe(groupOf(m, VF0));
    // the VF's own ID registers read 0xffff (the PCI core's sysfs files above do not)
    expect(m.pci.get(VF0)!.configRead(0, 4)).toBe(0xffffffff);
    expect(m.debug.counters().domains).toBe(before.domains + 2);
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "0")).toBe(1);
    expect(m.vfs.exists(`${SYS}/${VF0}`)).toBe(false);
    expect(m.vfs.exists(`${SYS}/${PF}/virtfn0`)).toBe(false);
    expect(m.pci.get(VF0)).toBeUndefined();
    expect(pf.configRead(0x100 + PCI_SRIOV_CTRL, 2)).toBe(0);
    expect(leaks(m)).toEqual(before);
    expect(m.debug.checkInvariants()).toEqual([]);
  });

  it("refuses what the kernel refuses, with its errnos", () => {
    const { m, root } = machine();
    const path = `${SYS}/${PF}/sriov_numvfs`;
    const before = leaks(m);
    expect(sysWrite(root, path, "abc")).toBe(-EINVAL);
    expect(sysWrite(root, path, "-1")).toBe(-EINVAL);
    expect(sysWrite(root, path, "65536")).toBe(-EINVAL);
    expect(sysWrite(root, path, `${MEMCPY_PF_TOTAL_VFS + 1}`)).toBe(-ERANGE);
    expect(root.lastError()?.reason).toMatch(/more than sriov_totalvfs/);
    expect(sysWrite(root, path, "0")).toBe(1); // no change: a no-op
    expect(sysWrite(root, path, "0x2")).toBe(3);
    expect(sysWrite(root, path, "1")).toBe(-EBUSY);
    expect(root.lastError()?.reason).toMatch(/2 VFs already enabled/);
    expect(sysWrite(root, path, "2")).toBe(1);
    expect(sysWrite(root, path, "0")).toBe(1);
    // the file is root's to write (mode 0644)
    const user = m.spawn();
    const ufd = user.open(path, 1);
    expect(user.write(ufd, new TextEncoder().encode("1"))).toBe(-EPERM);
    expect(user.close(ufd)).toBe(0);
    expect(leaks(m)).toEqual(before);
  });

  it("needs a driver bound to the PF and vfio_pci.enable_sriov (ENOENT)", () => {
    const off = machine(false);
    expect(sysWrite(off.root, `${SYS}/${PF}/sriov_numvfs`, "1")).toBe(-ENOENT);
    expect(off.root.lastError()?.reason).toMatch(/enable_sriov/);
    expect(off.m.setParam("vfio_pci.enable_sriov", "1")).toBe(0);
    expect(sysWrite(off.root, `${SYS}/${PF}/sriov_numvfs`, "1")).toBe(1);
    const { m, root } = machine();
    expect(m.unbindDriver(PF)).toBe(0);
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "1")).toBe(-ENOENT);
    expect(root.lastError()?.reason).toMatch(/no driver bound/);
  });

  it("vfio-pci will not bind a PF whose VFs are enabled, and unbinding the PF removes them", () => {
    const { m, root } = machine();
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "2")).toBe(1);
    expect(m.unbindDriver(PF)).toBe(0);
    expect(m.pci.get(VF0)).toBeUndefined();
    expect(m.readFile(`${SYS}/${PF}/sriov_numvfs`)).toBe("0\n");
    expect(m.bindDriver(PF, "vfio-pci")).toBe(0);
  });

  it("removing a VF that is open is refused (EBUSY, the REQ eventfd signalled) and changes nothing", () => {
    const { m, root } = machine();
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "1")).toBe(1);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    const pfFd = cdevBind(p, m, PF, p.open("/dev/iommu"), UUID_1);
    expect(pfFd.ret).toBe(0);
    const iommufd = p.open("/dev/iommu");
    const vf = cdevBind(p, m, VF0, iommufd, UUID_1);
    expect(vf.ret).toBe(0);
    const efd = p.eventfd();
    const irq = new Uint8Array(24);
    const dv = new DataView(irq.buffer);
    dv.setUint32(0, 24, true);
    dv.setUint32(4, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, true);
    dv.setUint32(8, VFIO_PCI_REQ_IRQ_INDEX, true);
    dv.setUint32(16, 1, true);
    dv.setInt32(20, efd, true);
    expect(p.ioctl(vf.dev, VFIO_DEVICE_SET_IRQS, irq)).toBe(0);
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "0")).toBe(-EBUSY);
    expect(root.lastError()?.reason).toMatch(/would wait until its user releases it/);
    expect(p.read(efd, 8)).toEqual(le(1, 8));
    expect(m.readFile(`${SYS}/${PF}/sriov_numvfs`)).toBe("1\n");
    expect(m.unbindDriver(PF)).toBe(-EBUSY);
    expect(p.close(vf.dev)).toBe(0);
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "0")).toBe(1);
    expect(m.debug.checkInvariants()).toEqual([]);
  });
});

describe("VF tokens", () => {
  function withVf() {
    const { m, root } = machine();
    expect(sysWrite(root, `${SYS}/${PF}/sriov_numvfs`, "1")).toBe(1);
    const p = m.spawn({ rlimitMemlock: 64n << 20n });
    return { m, root, p };
  }

  it("group path: the PF's open sets the token, a VF needs it (match, mismatch, missing)", () => {
    const { m, p } = withVf();
    const before = leaks(m);
    const c = p.open("/dev/vfio/vfio");
    const pf = groupGetFd(p, m, PF, `${PF} vf_token=${UUID_1}`, c);
    expect(pf.dev).toBeGreaterThanOrEqual(0);
    const vfMissing = groupGetFd(p, m, VF0, VF0, c);
    expect(vfMissing.dev).toBe(-EACCES);
    expect(p.lastError()?.reason).toMatch(/VF token required/);
    expect(
      p.ioctl(
        vfMissing.group,
        VFIO_GROUP_GET_DEVICE_FD,
        new TextEncoder().encode(`${VF0} vf_token=${UUID_2}\0`),
      ),
    ).toBe(-EACCES);
    expect(p.lastError()?.reason).toMatch(/Incorrect VF token/);
    const good = p.ioctl(
      vfMissing.group,
      VFIO_GROUP_GET_DEVICE_FD,
      new TextEncoder().encode(`${VF0} vf_token=${UUID_1}\0`),
    );
    expect(good).toBeGreaterThanOrEqual(0);
    // with a VF open, the PF's next opener must know the token too
    const pf2 = p.ioctl(pf.group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${PF}\0`));
    expect(pf2).toBe(-EACCES);
    const pf3 = p.ioctl(
      pf.group,
      VFIO_GROUP_GET_DEVICE_FD,
      new TextEncoder().encode(`${PF} vf_token=${UUID_1}\0`),
    );
    expect(pf3).toBeGreaterThanOrEqual(0);
    for (const fd of [pf3, good, pf.dev, vfMissing.group, pf.group, c]) expect(p.close(fd)).toBe(0);
    expect(leaks(m)).toEqual(before);
  });

  it("the device name's syntax: one vf_token, a whole UUID, nothing else (EINVAL); another name is ENODEV", () => {
    const { m, p } = withVf();
    const c = p.open("/dev/vfio/vfio");
    const g = groupGetFd(p, m, PF, `${PF}  vf_token=${UUID_1}  `, c);
    expect(g.dev).toBeGreaterThanOrEqual(0);
    const ask = (s: string) => p.ioctl(g.group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${s}\0`));
    expect(ask(`${PF} vf_token=${UUID_1} vf_token=${UUID_1}`)).toBe(-EINVAL);
    expect(ask(`${PF} vf_token=${UUID_1.slice(0, 30)}`)).toBe(-EINVAL);
    expect(ask(`${PF} vf_token=${UUID_1.replace("-", "x")}`)).toBe(-EINVAL);
    expect(ask(`${PF} foo=1`)).toBe(-EINVAL);
    expect(ask(`${PF}x`)).toBe(-ENODEV);
    // a device that is neither PF nor VF takes no token
    const m2 = new Machine();
    m2.bindDriver(PF, "vfio-pci");
    const q = m2.spawn();
    const c2 = q.open("/dev/vfio/vfio");
    expect(groupGetFd(q, m2, PF, `${PF} vf_token=${UUID_1}`, c2).dev).toBe(-EINVAL);
    expect(q.lastError()?.reason).toMatch(/not a PF or VF/);
  });

  it("cdev path: BIND with FLAG_TOKEN and token_uuid_ptr; the PF closed early keeps its token", () => {
    const { m, p } = withVf();
    const before = leaks(m);
    const fd1 = p.open("/dev/iommu");
    const pf = cdevBind(p, m, PF, fd1, UUID_1);
    expect(pf.ret).toBe(0);
    expect(p.close(pf.dev)).toBe(0);
    const fd2 = p.open("/dev/iommu");
    const none = cdevBind(p, m, VF0, fd2);
    expect(none.ret).toBe(-EACCES);
    const wrong = cdevBind(p, m, VF0, fd2, UUID_2);
    expect(wrong.ret).toBe(-EACCES);
    expect(p.lastError()?.reason).toMatch(/^VFIO_DEVICE_BIND_IOMMUFD: .*Incorrect VF token/);
    const right = cdevBind(p, m, VF0, fd2, UUID_1);
    expect(right.ret).toBe(0);
    // a bad pointer with the flag: EFAULT, the device stays unbound
    const bad = sioctl(p, none.dev, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, {
      argsz: 24,
      flags: VFIO_DEVICE_BIND_FLAG_TOKEN,
      iommufd: fd2,
      token_uuid_ptr: 0x10n,
    });
    expect(bad.ret).toBe(-EFAULT);
    for (const fd of [right.dev, wrong.dev, none.dev, fd1, fd2]) expect(p.close(fd)).toBe(0);
    expect(leaks(m)).toEqual(before);
  });

  it("override: PCI_VF_TOKEN SET replaces the token, VFs open or not; GET is refused", () => {
    const { m, p } = withVf();
    const fd = p.open("/dev/iommu");
    const pf = cdevBind(p, m, PF, fd, UUID_1);
    expect(pf.ret).toBe(0);
    expect(setToken(p, pf.dev, UUID_2)).toBe(0);
    const old = cdevBind(p, m, VF0, fd, UUID_1);
    expect(old.ret).toBe(-EACCES);
    const vf = cdevBind(p, m, VF0, fd, UUID_2);
    expect(vf.ret).toBe(0);
    expect(setToken(p, pf.dev, UUID_1)).toBe(0);
    expect(setToken(p, pf.dev, UUID_1, VFIO_DEVICE_FEATURE_GET)).toBe(-EINVAL);
    expect(setToken(p, pf.dev, UUID_1, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE)).toBe(0);
    // a VF has no token of its own
    expect(setToken(p, vf.dev, UUID_1)).toBe(-ENOTTY);
  });

  it("a VF's token is counted while it is open: the PF's open without it is EACCES", () => {
    const { m, p } = withVf();
    const fd = p.open("/dev/iommu");
    const pf = cdevBind(p, m, PF, fd, UUID_1);
    expect(p.close(pf.dev)).toBe(0);
    const vf = cdevBind(p, m, VF0, fd, UUID_1);
    expect(vf.ret).toBe(0);
    expect(cdevBind(p, m, PF, fd).ret).toBe(-EACCES);
    expect(cdevBind(p, m, PF, fd, UUID_2).ret).toBe(-EACCES);
    expect(p.close(vf.dev)).toBe(0);
    // no VF open: the PF's opener may set any token, or none
    const again = cdevBind(p, m, PF, fd);
    expect(again.ret).toBe(0);
  });

  it("a VF does DMA through its own IOMMU domain and raises its own interrupt", () => {
    const { m, p } = withVf();
    const fd = p.open("/dev/iommu");
    expect(cdevBind(p, m, PF, fd, UUID_1).ret).toBe(0);
    const vf = cdevBind(p, m, VF0, fd, UUID_1);
    expect(vf.ret).toBe(0);
    const alloc = sioctl(p, fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { size: 12 });
    expect(alloc.ret).toBe(0);
    const ioas = Number(alloc.out.out_ioas_id);
    const at = sioctl(
      p,
      vf.dev,
      VFIO_DEVICE_ATTACH_IOMMUFD_PT,
      vfio_device_attach_iommufd_pt,
      { argsz: 12, pt_id: ioas },
      12,
    );
    expect(at.ret).toBe(0);
    const o = { ...withRegions(p, vf.dev), iommufd: fd, ioas, devid: 0, hwpt: 0 };
    const src = p.mmap(0n, 8192n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    expect(
      p.writeMemory(
        src,
        Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff),
      ),
    ).toBe(0);
    expect(ioasMap(o, src, 8192, 0x100000n)).toBe(0);
    enableBusMaster(o);
    const efd = msiEventfd(o);
    doorbell(o, 0x100000n, 0x101000n, 4096n);
    expect(p.read(efd, 8)).toEqual(le(1, 8));
    expect(reg(o, 0x24)).toBe(2n);
    const out = p.readMemory(src + 4096n, 4096);
    expect(out).toEqual(Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff));
    expect(m.debug.dmaLog().some((e) => e.device === VF0)).toBe(true);
  });
});
