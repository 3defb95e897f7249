import type { PciFunction } from "../hw/pci-dev.js";
import { Prng } from "../hw/prng.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { FileOps } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import type { MmStruct } from "../mm/mm-struct.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { EBUSY, EINVAL, ENODEV, ENOENT, ENOMEM, EPERM, fail } from "../uapi/errno.js";
import {
  VfioContainer,
  type VfioIommuBackend,
  type VfioIommuDriver,
  vfioContainerFops,
} from "./container.js";
import { vfioIommuSpaprTceDriver } from "./container-spapr.js";
import { VfioDevice, VfioDeviceFile, vfioDeviceFops } from "./device.js";
import {
  vfioDfIoctlAttachPt,
  vfioDfIoctlBindIommufd,
  vfioDfIoctlDetachPt,
  vfioDfUnbindIommufd,
} from "./device-cdev.js";
import { VfioGroup, vfioDfGroupClose, vfioGroupFops, vfioGroupOpen } from "./group.js";
import { VfioPciCore } from "./pci/vfio-pci.js";
import { MmIommuRegistry } from "./spapr-prereg.js";
import { vfioIommuType1Driver } from "./type1.js";
import { vfioNoiommuDriver } from "./vfio-noiommu.js";

/** The machine pieces VFIO sits on. */
export interface VfioEnv {
  ctx: KernelCtx;
  iommu: IommuSubsystem;
  /** The PCI function at a BDF (undefined when there is none). */
  pciFunction(bdf: string): PciFunction | undefined;
  /** Every PCI function (the hot reset walks the bus); only the registered ones without it. */
  pciFunctions?(): readonly PciFunction[];
  /** The PCI core's SR-IOV (drivers/pci/iov.c): pci_enable_sriov / pci_disable_sriov of a PF. */
  pciEnableSriov?(pf: PciFunction, numVfs: number): void;
  pciDisableSriov?(pf: PciFunction): void;
  /** pci_num_vf(): the VFs a PF has enabled (0 for any other function). */
  pciNumVf?(fn: PciFunction): number;
  /** pdev->is_physfn: the function has an SR-IOV capability with VFs to offer. */
  pciIsPhysfn?(fn: PciFunction): boolean;
}

/** The largest vfio device index (the cdev minor range). */
const VFIO_DEV_MAX = 0xfffff;

/**
 * The VFIO core of one machine (drivers/vfio/vfio_main.c + group.c +
 * container.c registration): driver binding, the device index allocator,
 * the /dev and /sys nodes the Kconfig matrix calls for, and the fops of
 * every VFIO file.
 *
 * Nodes:
 * - /dev/vfio/vfio: the legacy container (VFIO_CONTAINER) or iommufd's
 *   emulation of it (IOMMUFD_VFIO_CONTAINER);
 * - /dev/vfio/<group> per iommu_group with a vfio-pci device (VFIO_GROUP);
 * - /dev/vfio/devices/vfioN per device (VFIO_DEVICE_CDEV);
 * - /sys/bus/pci/devices/<bdf>/vfio-dev/vfioN and /sys/class/vfio-dev/vfioN
 *   for every registered device (the struct device exists without a cdev).
 *
 * A device with no IOMMU registers only while vfio.enable_unsafe_noiommu_mode
 * is on (read at registration; EINVAL otherwise, as vfio-pci's probe
 * fails): with the group path it gets a fake iommu_group and
 * /dev/vfio/noiommu-<id>; with IOMMUFD_NOIOMMU its cdev is
 * /dev/vfio/devices/noiommu-vfioN. Either taints the kernel (TAINT_USER).
 */
export class VfioCore {
  readonly devices = new Map<string, VfioDevice>();
  readonly groups = new Map<number, VfioGroup>();
  private readonly usedIndex = new Set<number>();
  private readonly containers = new Set<VfioContainer>();
  private readonly deviceFiles = new Set<VfioDeviceFile>();
  readonly deviceFops: FileOps;
  readonly groupFops: FileOps;
  private readonly containerFops = vfioContainerFops();
  /** sPAPR pre-registered memory of this machine's mms (mm_iommu_*). */
  readonly mmIommu = new MmIommuRegistry();
  private readonly spaprTceDriver = vfioIommuSpaprTceDriver(this.mmIommu);
  /** vfio_pci_sriov_pfs: the PFs whose sriov_configure enabled VFs (a VF finds its PF here). */
  private readonly sriovPfs = new Set<VfioPciCore>();
  /** uuid_gen() for a PF's first VF token: seeded, so runs replay. */
  private readonly uuidRng: Prng;

  constructor(private readonly env: VfioEnv) {
    const k = env.ctx.kconfig;
    this.uuidRng = new Prng(env.ctx.seed ^ 0x76667470);
    this.deviceFops = vfioDeviceFops({
      bindIommufd: vfioDfIoctlBindIommufd,
      attachPt: vfioDfIoctlAttachPt,
      detachPt: vfioDfIoctlDetachPt,
      release: (df) => {
        if (df.group !== null) vfioDfGroupClose(df);
        else vfioDfUnbindIommufd(df);
        this.deviceFiles.delete(df);
        df.device.files.delete(df);
      },
      cdevBuilt: () => k.VFIO_DEVICE_CDEV,
    });
    this.groupFops = vfioGroupFops({
      containerFromFile: (f) => (f.ops === this.containerFops ? (f.priv as VfioContainer) : null),
      deviceFops: this.deviceFops,
      warn: (msg) => env.ctx.klog.printk("warn", msg),
      noteDeviceFile: (df, open) => {
        if (open) {
          this.deviceFiles.add(df);
          df.device.files.add(df);
        }
      },
    });
    if (k.VFIO && k.VFIO_CONTAINER) {
      env.ctx.vfs.add("/dev/vfio/vfio", {
        type: "chr",
        open: () => ({ ops: this.containerFops, priv: this.newContainer() }),
      });
    }
    // With IOMMUFD_VFIO_CONTAINER, iommufd itself registers /dev/vfio/vfio (registerIommufd).
  }

  /** VFIO's leak counters (m.debug.counters()). */
  counters() {
    let vfioType1PinnedPages = 0;
    for (const c of this.containers) vfioType1PinnedPages += c.backend?.pinnedPages() ?? 0;
    for (const r of this.preregions()) vfioType1PinnedPages += r.entries;
    return {
      vfioDevicesOpen: [...this.devices.values()].filter((d) => d.openCount > 0).length,
      vfioContainers: this.containers.size,
      vfioDeviceFiles: this.deviceFiles.size,
      vfioType1PinnedPages,
    };
  }

  /** A process's mm dies (after its files are closed): mm_iommu_cleanup() of its pre-registered regions. */
  mmExit(mm: MmStruct): void {
    for (const mem of this.mmIommu.cleanup(mm)) {
      this.env.ctx.klog.printk(
        "warn",
        `mm_iommu: region 0x${mem.ua.toString(16)} still registered when its mm died`,
      );
    }
  }

  /** sPAPR pre-registered regions of every live mm (each pinned once, whichever containers use it). */
  preregions(): { entries: number; runs: PfnRuns }[] {
    return this.mmIommu.all();
  }

  /** Every live container's backend (for the machine invariants). */
  containerBackends(): VfioIommuBackend[] {
    const out: VfioIommuBackend[] = [];
    for (const c of this.containers) if (c.backend !== null) out.push(c.backend);
    return out;
  }

  /** The IOMMU drivers legacy containers may pick (type1; noiommu and sPAPR later). */
  private iommuDrivers(): VfioIommuDriver[] {
    const k = this.env.ctx.kconfig;
    const drivers: VfioIommuDriver[] = k.VFIO_IOMMU_TYPE1 ? [vfioIommuType1Driver] : [];
    if (k.VFIO_IOMMU_SPAPR_TCE) drivers.push(this.spaprTceDriver);
    // container.c registers vfio-noiommu with VFIO_NOIOMMU.
    if (k.VFIO_NOIOMMU) drivers.push(vfioNoiommuDriver);
    return drivers;
  }

  private newContainer(): VfioContainer {
    const c = new VfioContainer(
      this.env.ctx,
      () => this.iommuDrivers(),
      (x) => this.containers.delete(x),
    );
    this.containers.add(c);
    return c;
  }

  /** Like writing the BDF to /sys/bus/pci/drivers/<driver>/bind: 0 or -errno. */
  bindDriver(bdf: string, driver: string): number {
    const k = this.env.ctx.kconfig;
    if (driver !== "vfio-pci" || !k.VFIO || !k.VFIO_PCI) return -ENOENT;
    const fn = this.env.pciFunction(bdf);
    if (fn === undefined) return -ENODEV;
    if (this.devices.has(bdf)) return -EBUSY;
    try {
      this.register(fn);
      return 0;
    } catch (e) {
      if (e instanceof Error && "errno" in e) return -(e as { errno: number }).errno;
      throw e;
    }
  }

  /**
   * Like writing to /sys/bus/pci/drivers/vfio-pci/unbind. The kernel waits
   * for users to close the device (and signals the REQ interrupt); a model
   * call cannot wait, so an open device gives EBUSY.
   */
  unbindDriver(bdf: string): number {
    const d = this.devices.get(bdf);
    if (d === undefined) return -ENODEV;
    if (this.removeBlocker(bdf) !== undefined) return -EBUSY;
    // vfio_pci_core_unregister_device(): a PF's VFs go first (sriov_configure(0))
    if (d.ops instanceof VfioPciCore && this.sriovPfs.has(d.ops)) {
      try {
        this.coreSriovConfigure(d.ops, 0);
      } catch (e) {
        if (e instanceof Error && "errno" in e) return -(e as { errno: number }).errno;
        throw e;
      }
    }
    this.unregister(d);
    return 0;
  }

  /**
   * Why removing the device would block (vfio_unregister_group_dev waits
   * for its users to close it), or undefined when it would not. The kernel
   * waits; a model call cannot, so the caller refuses with EBUSY.
   */
  removeBlocker(bdf: string): string | undefined {
    const d = this.devices.get(bdf);
    if (d === undefined) return undefined;
    if (d.openCount > 0 || d.files.size > 0) return `${bdf} is open (${d.files.size} device file(s))`;
    if (d.group.devices.length === 1 && d.group.opened)
      return `${bdf}'s group /dev/vfio/${d.group.nodeName} is open`;
    return undefined;
  }

  /**
   * vfio_pci_core_request(dev, 0): the kernel asks the device's user to
   * release it (the REQ eventfd) while a removal waits.
   */
  requestRelease(bdf: string): void {
    const d = this.devices.get(bdf);
    if (d?.ops instanceof VfioPciCore) d.ops.irqs.reqTrigger?.ctx.signal(1n);
  }

  /**
   * vfio-pci's sriov_configure (vfio_pci.c) for the bound PF at `bdf`, as
   * the sysfs sriov_numvfs write calls it: refused (ENOENT) unless the
   * module parameter vfio_pci.enable_sriov is on, a disable too. Returns
   * the VFs enabled (0 for a disable).
   */
  sriovConfigure(bdf: string, numVfs: number): number {
    const d = this.devices.get(bdf);
    if (d === undefined || !(d.ops instanceof VfioPciCore))
      return fail(ENODEV, `${bdf} is not bound to vfio-pci`);
    if (this.env.ctx.params["vfio_pci.enable_sriov"] !== true)
      fail(ENOENT, "vfio-pci: SR-IOV configuration is off (module parameter vfio_pci.enable_sriov)");
    return this.coreSriovConfigure(d.ops, numVfs);
  }

  /**
   * vfio_pci_core_sriov_configure(): enabling twice without a disable is
   * EINVAL; the PF joins the list its VFs find it in, then
   * pci_enable_sriov (leaving the list again if that fails); 0 disables
   * the VFs and leaves the list.
   */
  private coreSriovConfigure(core: VfioPciCore, numVfs: number): number {
    const env = this.env;
    if (numVfs !== 0) {
      if (this.sriovPfs.has(core))
        fail(EINVAL, `vfio-pci ${core.bdf}: SR-IOV already enabled by this driver`);
      this.sriovPfs.add(core);
      try {
        if (env.pciEnableSriov === undefined) fail(ENODEV, "no PCI SR-IOV support on this machine");
        env.pciEnableSriov(core.fn, numVfs);
      } catch (e) {
        this.sriovPfs.delete(core);
        throw e;
      }
      return numVfs;
    }
    if ((env.pciNumVf?.(core.fn) ?? 0) > 0) env.pciDisableSriov?.(core.fn);
    this.sriovPfs.delete(core);
    return 0;
  }

  /** vfio_pci_probe -> vfio_register_group_dev. */
  private register(fn: PciFunction): void {
    const iommuDev = this.env.iommu.device(fn.bdf);
    if (iommuDev === undefined) {
      this.registerNoiommu(fn);
      return;
    }
    if (!iommuDev.capable("CACHE_COHERENCY")) {
      fail(EINVAL, `${fn.bdf}: its IOMMU cannot enforce cache-coherent DMA (IOMMU_CAP_CACHE_COHERENCY)`);
    }
    // vfio_pci_core_register_device(): a PF with VFs already enabled cannot be captured
    if ((this.env.pciNumVf?.(fn) ?? 0) > 0) fail(EBUSY, `${fn.bdf}: Cannot bind to PF with SR-IOV enabled`);
    const ig = iommuDev.group;
    let group = this.groups.get(ig.id);
    const newGroup = group === undefined;
    if (group === undefined) group = new VfioGroup(ig.id, ig, false);
    const dev = new VfioDevice(this.allocIndex(), fn.bdf, fn, iommuDev, group, this.newVfioPci(fn));
    this.addDevice(dev, newGroup);
  }

  /** A vfio-pci instance that can see the bus and the other devices (for the hot reset). */
  private newVfioPci(fn: PciFunction): VfioPciCore {
    const core = new VfioPciCore(fn);
    // vfio_pci_vf_init(): a PF gets a random token; a VF finds the vfio-pci PF that created it
    if (fn.physfn !== null) {
      for (const pf of this.sriovPfs) if (pf.fn === fn.physfn) core.sriovPf = pf;
    } else if (this.env.pciIsPhysfn?.(fn)) {
      const uuid = new Uint8Array(16);
      for (let i = 0; i < 16; i += 4) {
        const w = this.uuidRng.next();
        uuid.set([w >>> 24, (w >>> 16) & 0xff, (w >>> 8) & 0xff, w & 0xff], i);
      }
      uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
      uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
      core.vfToken = { uuid, users: 0 };
    }
    const env = this.env;
    core.setEnv({
      get self() {
        return vfioSelf();
      },
      pciFunctions: () => env.pciFunctions?.() ?? [...this.devices.values()].map((d) => d.fn),
      vfioDevice: (bdf) => this.devices.get(bdf),
      iommuGroupId: (bdf) => {
        const id = env.iommu.device(bdf)?.group.id;
        if (id !== undefined) return id;
        const d = this.devices.get(bdf);
        return d?.group.noiommu ? d.group.id : undefined;
      },
      groupOfFile: (f) => (f.ops === this.groupFops ? (f.priv as VfioGroup) : null),
      printk: (msg) => env.ctx.klog.printk("err", msg),
    });
    const vfioSelf = () => {
      const d = this.devices.get(fn.bdf);
      if (d === undefined) throw new Error(`vfio-pci ${fn.bdf} is not registered`);
      return d;
    };
    return core;
  }

  private allocIndex(): number {
    let index = 0;
    while (this.usedIndex.has(index)) index++;
    if (index > VFIO_DEV_MAX) fail(ENODEV, "no vfio device index left");
    return index;
  }

  /**
   * A physical device with no IOMMU driver (dev->iommu NULL). The gate is
   * read now and never again for this device: VFIO_NOIOMMU built and
   * vfio.enable_unsafe_noiommu_mode on, otherwise the probe fails EINVAL
   * (group.c finds no iommu_group; a cdev-only kernel fails the coherency
   * check). The cdev flag (vfio_device_set_noiommu_and_name) needs
   * IOMMUFD_NOIOMMU and names the cdev noiommu-vfioN; the group path gets
   * a fake iommu_group "vfio-noiommu" and a VFIO_NO_IOMMU group. Each
   * taints the kernel with a warning, at registration, not at open.
   */
  private registerNoiommu(fn: PciFunction): void {
    const ctx = this.env.ctx;
    const k = ctx.kconfig;
    const param = k.VFIO_NOIOMMU && ctx.params["vfio.enable_unsafe_noiommu_mode"] === true;
    if (!param) {
      fail(
        EINVAL,
        k.VFIO_GROUP
          ? `${fn.bdf} has no iommu_group and no-IOMMU mode is off (vfio.enable_unsafe_noiommu_mode${k.VFIO_NOIOMMU ? "" : ", VFIO_NOIOMMU not built"})`
          : `${fn.bdf} has no IOMMU (no IOMMU_CAP_CACHE_COHERENCY) and no-IOMMU mode is off (vfio.enable_unsafe_noiommu_mode)`,
      );
    }
    const index = this.allocIndex();
    let group: VfioGroup;
    let newGroup = false;
    if (k.VFIO_GROUP) {
      const id = this.env.iommu.allocGroupId();
      group = new VfioGroup(id, null, true);
      newGroup = true;
      this.addFakeIommuGroup(id, fn.bdf);
      ctx.klog.addTaint(
        "TAINT_USER",
        `vfio-pci ${fn.bdf}: Adding kernel taint for vfio-noiommu group on device`,
      );
    } else {
      // No group path: the kernel's vfio_device has no group; this one only carries the cdev bookkeeping.
      group = new VfioGroup(-1, null, false);
    }
    const dev = new VfioDevice(index, fn.bdf, fn, undefined, group, this.newVfioPci(fn));
    dev.noiommu = k.IOMMUFD_NOIOMMU;
    if (dev.isNoiommu() && k.IOMMUFD_NOIOMMU) {
      ctx.klog.addTaint("TAINT_USER", `vfio-pci ${fn.bdf}: Adding kernel taint for vfio-noiommu cdev`);
    }
    this.addDevice(dev, newGroup);
  }

  /** iommu_group_alloc() + iommu_group_set_name("vfio-noiommu") + iommu_group_add_device(): the sysfs side. */
  private addFakeIommuGroup(id: number, bdf: string): void {
    const vfs = this.env.ctx.vfs;
    vfs.add(`/sys/kernel/iommu_groups/${id}/name`, { type: "attr", read: () => "vfio-noiommu\n" });
    // No default domain: iommu_group_show_type() prints "unknown"; no reserved regions.
    vfs.add(`/sys/kernel/iommu_groups/${id}/type`, { type: "attr", read: () => "unknown\n" });
    vfs.add(`/sys/kernel/iommu_groups/${id}/reserved_regions`, { type: "attr", read: () => "" });
    vfs.add(`/sys/kernel/iommu_groups/${id}/devices/${bdf}`, {
      type: "link",
      target: `../../../../devices/pci${bdf.slice(0, 7)}/${bdf}`,
    });
    vfs.add(`/sys/bus/pci/devices/${bdf}/iommu_group`, {
      type: "link",
      target: `../../../kernel/iommu_groups/${id}`,
    });
  }

  private removeFakeIommuGroup(id: number, bdf: string): void {
    const vfs = this.env.ctx.vfs;
    for (const n of ["name", "type", "reserved_regions", `devices/${bdf}`])
      vfs.remove(`/sys/kernel/iommu_groups/${id}/${n}`);
    vfs.remove(`/sys/bus/pci/devices/${bdf}/iommu_group`);
    this.env.iommu.freeGroupId(id);
  }

  /** Publish a registered device: its group node (first device), sysfs, and the cdev. */
  private addDevice(dev: VfioDevice, newGroup: boolean): void {
    const k = this.env.ctx.kconfig;
    const fn = dev.fn;
    const index = dev.index;
    const group = dev.group;
    this.usedIndex.add(index);
    group.devices.push(dev);
    this.devices.set(fn.bdf, dev);
    const vfs = this.env.ctx.vfs;
    if (newGroup) {
      this.groups.set(group.id, group);
      if (k.VFIO_GROUP) {
        const g = group;
        vfs.add(`/dev/vfio/${g.nodeName}`, {
          type: "chr",
          open: (task: Task) => {
            vfioGroupOpen(g, task);
            return { ops: this.groupFops, priv: g };
          },
        });
      }
    }
    // vfio_init_device_cdev(): a noiommu device gets no devt unless IOMMUFD_NOIOMMU is built.
    const hasCdev = k.VFIO_DEVICE_CDEV && !(dev.isNoiommu() && !k.IOMMUFD_NOIOMMU);
    const sys = `/sys/bus/pci/devices/${fn.bdf}/vfio-dev/${dev.cdevName}`;
    vfs.add(`${sys}/uevent`, {
      type: "attr",
      read: () => (hasCdev ? `MAJOR=511\nMINOR=${index}\nDEVNAME=vfio/devices/${dev.cdevName}\n` : ""),
    });
    // the cdev's dev_t as "MAJOR:MINOR" (what fstat of /dev/vfio/devices/<name> gives in st_rdev)
    if (hasCdev) vfs.add(`${sys}/dev`, { type: "attr", read: () => `511:${index}\n` });
    vfs.add(`/sys/class/vfio-dev/${dev.cdevName}`, {
      type: "link",
      target: `../../devices/pci${fn.bdf.slice(0, 7)}/${fn.bdf}/vfio-dev/${dev.cdevName}`,
    });
    vfs.add(`/sys/bus/pci/devices/${fn.bdf}/driver`, {
      type: "link",
      target: "../../../bus/pci/drivers/vfio-pci",
    });
    if (hasCdev) {
      vfs.add(`/dev/vfio/devices/${dev.cdevName}`, {
        type: "chr",
        open: (task: Task) => {
          if (!dev.registered) fail(ENODEV, `${dev.cdevName} is being removed`);
          if (dev.isNoiommu() && !task.capable("CAP_SYS_RAWIO")) {
            fail(EPERM, `opening the noiommu device cdev ${dev.cdevName} needs CAP_SYS_RAWIO`);
          }
          if (this.env.ctx.faults.hit("vfio_allocate_device_file"))
            fail(ENOMEM, "cannot allocate the vfio_device_file");
          const df = new VfioDeviceFile(dev, null);
          this.deviceFiles.add(df);
          dev.files.add(df);
          return { ops: this.deviceFops, priv: df };
        },
      });
    }
  }

  private unregister(d: VfioDevice): void {
    const vfs = this.env.ctx.vfs;
    d.registered = false;
    vfs.remove(`/dev/vfio/devices/${d.cdevName}`);
    vfs.remove(`/sys/bus/pci/devices/${d.bdf}/vfio-dev/${d.cdevName}/uevent`);
    vfs.remove(`/sys/bus/pci/devices/${d.bdf}/vfio-dev/${d.cdevName}/dev`);
    vfs.remove(`/sys/class/vfio-dev/${d.cdevName}`);
    vfs.remove(`/sys/bus/pci/devices/${d.bdf}/driver`);
    const g = d.group;
    g.devices.splice(g.devices.indexOf(d), 1);
    if (g.devices.length === 0 && g.id >= 0) {
      vfs.remove(`/dev/vfio/${g.nodeName}`);
      this.groups.delete(g.id);
      if (g.noiommu) this.removeFakeIommuGroup(g.id, d.bdf);
    }
    this.devices.delete(d.bdf);
    this.usedIndex.delete(d.index);
  }
}
