import { MemcpyPf } from "../hw/memcpy-pf.js";
import type { PciBus } from "../hw/pci-bus.js";
import type { PciFunction } from "../hw/pci-dev.js";
import { PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_MSE, PCI_SRIOV_CTRL_VFE, PCI_SRIOV_NUM_VF } from "../hw/pci-regs.js";
import type { PhysMem } from "../hw/phys-mem.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import { EBUSY, EINVAL, EIO, ENOENT, ENOMEM, ENOSYS, ERANGE, fail } from "../uapi/errno.js";
import type { VfioCore } from "../vfio/vfio-main.js";
import { addIntelDebugfsDevice, removeIntelDebugfsDevice } from "./intel-debugfs.js";
import { addPciFunctionSysfs, removePciFunctionSysfs } from "./pci-sysfs.js";
import type { KernelLog } from "./printk.js";
import type { Vfs } from "./vfs.js";

/** What the PCI core's SR-IOV support works on. */
export interface PciIovEnv {
  bus: PciBus;
  vfs: Vfs;
  iommu: IommuSubsystem;
  phys: PhysMem;
  klog: KernelLog;
  vfio: () => VfioCore;
}

/** struct pci_sriov: the PCI core's state of one PF. */
interface PciSriov {
  readonly pf: MemcpyPf;
  /** num_VFs: the VFs the core enabled. */
  numVfs: number;
  /** sriov_drivers_autoprobe: new VFs are probed by a driver (vfio-pci for a vfio-pci PF). */
  autoprobe: boolean;
  readonly vfs: PciFunction[];
}

/**
 * The PCI core's SR-IOV (drivers/pci/iov.c and its sysfs attributes) on
 * one machine: the sriov_* files of each PF, sriov_numvfs' rules, and
 * pci_enable_sriov / pci_disable_sriov, which add and remove the VFs as
 * functions of the machine (bus, IOMMU group, sysfs, virtfnN / physfn
 * links) and let the PF's driver capture them (vfio-pci's bus notifier
 * sets driver_override, so a vfio-pci PF's VFs bind to vfio-pci).
 */
export class PciIov {
  private readonly pfs = new Map<string, PciSriov>();

  constructor(private readonly env: PciIovEnv) {
    for (const fn of env.bus.all()) if (fn instanceof MemcpyPf) this.addPf(fn);
  }

  /** pdev->is_physfn. */
  isPhysfn(fn: PciFunction): boolean {
    return this.pfs.has(fn.bdf);
  }

  /** pci_num_vf(). */
  numVf(fn: PciFunction): number {
    return this.pfs.get(fn.bdf)?.numVfs ?? 0;
  }

  /**
   * pci_enable_sriov() -> sriov_enable(): EINVAL with VFs already enabled
   * or past TotalVFs, EIO without offset/stride, ENOMEM when a VF would sit
   * past the last bus number; then NumVFs, VF Enable and VF MSE, and each
   * VF is added (pci_iov_add_virtfn) and offered to a driver.
   */
  enable(fn: PciFunction, n: number): void {
    const iov = this.pfs.get(fn.bdf);
    if (iov === undefined) fail(ENOSYS, `${fn.bdf} has no SR-IOV capability (not a PF)`);
    const cap = iov.pf.sriov;
    if (iov.numVfs !== 0) fail(EINVAL, `${fn.bdf}: ${iov.numVfs} VFs are already enabled`);
    if (n < 0 || n > cap.totalVfs())
      fail(EINVAL, `${fn.bdf}: ${n} VFs is more than TotalVFs ${cap.totalVfs()}`);
    const l = cap.layout;
    if (l.offset === 0 || (n > 1 && l.stride === 0)) fail(EIO, `${fn.bdf}: no First VF Offset / VF Stride`);
    if (iov.pf.vfBdf(n - 1) === undefined)
      fail(ENOMEM, `${fn.bdf}: can't enable ${n} VFs (bus number out of range)`);
    const pf = iov.pf;
    pf.configWrite(cap.pos + PCI_SRIOV_NUM_VF, 2, n);
    pf.configWrite(cap.pos + PCI_SRIOV_CTRL, 2, cap.ctrl() | PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    iov.numVfs = n;
    for (let i = 0; i < n; i++) iov.vfs.push(this.addVirtfn(iov, i));
    this.env.klog.printk("info", `pci ${fn.bdf}: enabled ${n} VFs`);
    // the bus notifier of a vfio-pci PF (vfio_pci_bus_notifier): driver_override = "vfio-pci",
    // then the driver core probes each VF when autoprobe is on
    const vfio = this.env.vfio();
    if (iov.autoprobe && vfio.devices.has(fn.bdf)) {
      for (const vf of iov.vfs) {
        const r = vfio.bindDriver(vf.bdf, "vfio-pci");
        if (r < 0) this.env.klog.printk("warn", `vfio-pci ${vf.bdf}: probe of VF failed (${-r})`);
      }
    }
  }

  /**
   * pci_disable_sriov(): each VF is removed (its driver released first),
   * then VF Enable, VF MSE and NumVFs are cleared. Releasing a VF that
   * vfio-pci has open blocks in the kernel until the user closes it (vfio
   * signals the REQ eventfd to ask); a model call cannot wait, so this
   * signals the request and refuses with EBUSY, removing nothing.
   */
  disable(fn: PciFunction): void {
    const iov = this.pfs.get(fn.bdf);
    if (iov === undefined || iov.numVfs === 0) return;
    const vfio = this.env.vfio();
    for (const vf of iov.vfs) {
      const why = vfio.removeBlocker(vf.bdf);
      if (why !== undefined) {
        vfio.requestRelease(vf.bdf);
        fail(
          EBUSY,
          `${fn.bdf}: removing VF ${vf.bdf} would wait until its user releases it (${why}; the kernel blocks in vfio_unregister_group_dev, the model refuses)`,
        );
      }
    }
    for (let i = 0; i < iov.vfs.length; i++) this.removeVirtfn(iov, i);
    iov.vfs.length = 0;
    const cap = iov.pf.sriov;
    iov.pf.configWrite(cap.pos + PCI_SRIOV_CTRL, 2, cap.ctrl() & ~(PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE));
    iov.pf.configWrite(cap.pos + PCI_SRIOV_NUM_VF, 2, 0);
    iov.numVfs = 0;
    this.env.klog.printk("info", `pci ${fn.bdf}: disabled its VFs`);
  }

  /** The sriov_* attributes of a PF (sriov_attrs_are_visible: PFs only). */
  private addPf(pf: MemcpyPf): void {
    const iov: PciSriov = { pf, numVfs: 0, autoprobe: true, vfs: [] };
    this.pfs.set(pf.bdf, iov);
    const dir = `/sys/bus/pci/devices/${pf.bdf}`;
    const cap = pf.sriov;
    const attr = (name: string, read: () => string, write?: (v: string) => void) =>
      this.env.vfs.add(`${dir}/${name}`, { type: "attr", read, write });
    attr("sriov_totalvfs", () => `${cap.totalVfs()}\n`);
    attr(
      "sriov_numvfs",
      () => `${iov.numVfs}\n`,
      (v) => this.numvfsStore(iov, v),
    );
    attr("sriov_offset", () => `${cap.layout.offset}\n`);
    attr("sriov_stride", () => `${cap.layout.stride}\n`);
    attr("sriov_vf_device", () => `${cap.layout.vfDeviceId.toString(16).padStart(4, "0")}\n`);
    attr(
      "sriov_drivers_autoprobe",
      () => `${iov.autoprobe ? 1 : 0}\n`,
      (v) => {
        const b = kstrtobool(v);
        if (b === undefined) fail(EINVAL, `${dir}/sriov_drivers_autoprobe: not a boolean`);
        iov.autoprobe = b;
      },
    );
  }

  /**
   * sriov_numvfs_store(): a u16 (EINVAL otherwise), at most TotalVFs
   * (ERANGE); the same count is a no-op; a PF with no driver, or one
   * without sriov_configure, is ENOENT; 0 disables; changing a non-zero
   * count is EBUSY (disable first); else the driver's sriov_configure.
   */
  private numvfsStore(iov: PciSriov, text: string): void {
    const path = `/sys/bus/pci/devices/${iov.pf.bdf}/sriov_numvfs`;
    const n = kstrtou16(text);
    if (n === undefined) fail(EINVAL, `${path}: "${text.trim()}" is not a u16`);
    const total = iov.pf.sriov.totalVfs();
    if (n > total) fail(ERANGE, `${path}: ${n} is more than sriov_totalvfs ${total}`);
    if (n === iov.numVfs) return;
    const vfio = this.env.vfio();
    if (!vfio.devices.has(iov.pf.bdf))
      fail(ENOENT, `${path}: no driver bound to device; cannot configure SR-IOV`);
    if (n === 0) {
      vfio.sriovConfigure(iov.pf.bdf, 0);
      return;
    }
    if (iov.numVfs !== 0)
      fail(EBUSY, `${path}: ${iov.numVfs} VFs already enabled. Disable before enabling ${n} VFs`);
    vfio.sriovConfigure(iov.pf.bdf, n);
  }

  /** pci_iov_add_virtfn(): the VF on the bus, behind the IOMMU, in sysfs, linked to its PF. */
  private addVirtfn(iov: PciSriov, index: number): PciFunction {
    const env = this.env;
    const vf = env.bus.addVf(iov.pf, index);
    if (env.iommu.driver !== undefined) {
      const dev = env.iommu.addDevice(vf.bdf, undefined);
      vf.iommu = dev;
      addIntelDebugfsDevice(env.vfs, dev, env.phys);
    }
    addPciFunctionSysfs(env.vfs, vf);
    env.vfs.add(`/sys/bus/pci/devices/${iov.pf.bdf}/virtfn${index}`, {
      type: "link",
      target: `../${vf.bdf}`,
    });
    env.vfs.add(`/sys/bus/pci/devices/${vf.bdf}/physfn`, { type: "link", target: `../${iov.pf.bdf}` });
    return vf;
  }

  /** pci_iov_remove_virtfn(): the VF's driver released (checked beforehand), then the VF leaves. */
  private removeVirtfn(iov: PciSriov, index: number): void {
    const env = this.env;
    const vf = iov.vfs[index];
    const vfio = env.vfio();
    if (vfio.devices.has(vf.bdf) && vfio.unbindDriver(vf.bdf) !== 0)
      throw new Error(`VF ${vf.bdf}: its driver could not be released`);
    env.vfs.remove(`/sys/bus/pci/devices/${iov.pf.bdf}/virtfn${index}`);
    env.vfs.remove(`/sys/bus/pci/devices/${vf.bdf}/physfn`);
    removePciFunctionSysfs(env.vfs, vf);
    const dev = env.iommu.device(vf.bdf);
    if (dev !== undefined) {
      removeIntelDebugfsDevice(env.vfs, vf.bdf);
      env.iommu.removeDevice(dev);
    }
    vf.iommu = null;
    env.bus.remove(vf.bdf);
  }
}

/** kstrtou16(s, 0): decimal, 0x hex or 0 octal, one trailing newline allowed; undefined when not a u16. */
export function kstrtou16(s: string): number | undefined {
  const t = s.endsWith("\n") ? s.slice(0, -1) : s;
  const hex = /^\+?0[xX]([0-9a-fA-F]+)$/.exec(t);
  const oct = /^\+?0([0-7]*)$/.exec(t);
  const dec = /^\+?([1-9][0-9]*)$/.exec(t);
  let v: number;
  if (hex !== null) v = parseInt(hex[1], 16);
  else if (oct !== null) v = oct[1] === "" ? 0 : parseInt(oct[1], 8);
  else if (dec !== null) v = Number(dec[1]);
  else return undefined;
  return v > 0xffff ? undefined : v;
}

/** kstrtobool(): y/Y/1/on -> true, n/N/0/off -> false. */
function kstrtobool(s: string): boolean | undefined {
  const t = s.trim().toLowerCase();
  if (t === "1" || t.startsWith("y") || t === "on") return true;
  if (t === "0" || t.startsWith("n") || t === "off") return false;
  return undefined;
}
