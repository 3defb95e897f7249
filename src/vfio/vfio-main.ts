import type { PciFunction } from "../hw/pci-dev.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { FileOps } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { EBUSY, EINVAL, ENODEV, ENOENT, ENOMEM, fail } from "../uapi/errno.js";
import { VfioContainer, type VfioIommuDriver, vfioContainerFops } from "./container.js";
import { VfioDevice, VfioDeviceFile, vfioDeviceFops } from "./device.js";
import {
  vfioDfIoctlAttachPt,
  vfioDfIoctlBindIommufd,
  vfioDfIoctlDetachPt,
  vfioDfUnbindIommufd,
} from "./device-cdev.js";
import { VfioGroup, vfioDfGroupClose, vfioGroupFops, vfioGroupOpen } from "./group.js";
import { VfioPciCore } from "./pci/vfio-pci.js";
import { vfioIommuType1Driver } from "./type1.js";

/** The machine pieces VFIO sits on. */
export interface VfioEnv {
  ctx: KernelCtx;
  iommu: IommuSubsystem;
  /** The PCI function at a BDF (undefined when there is none). */
  pciFunction(bdf: string): PciFunction | undefined;
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

  constructor(private readonly env: VfioEnv) {
    const k = env.ctx.kconfig;
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
    env.ctx.counterSources.set(
      "vfioDevicesOpen",
      () => [...this.devices.values()].filter((d) => d.openCount > 0).length,
    );
    env.ctx.counterSources.set("vfioContainers", () => this.containers.size);
    env.ctx.counterSources.set("vfioDeviceFiles", () => this.deviceFiles.size);
    env.ctx.counterSources.set("vfioType1PinnedPages", () =>
      [...this.containers].reduce((n, c) => n + (c.backend?.pinnedPages() ?? 0), 0),
    );
  }

  /** The IOMMU drivers legacy containers may pick (type1; noiommu and sPAPR later). */
  private iommuDrivers(): VfioIommuDriver[] {
    const k = this.env.ctx.kconfig;
    return k.VFIO_IOMMU_TYPE1 ? [vfioIommuType1Driver] : [];
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
    if (d.openCount > 0 || d.files.size > 0) return -EBUSY;
    const g = d.group;
    if (g.devices.length === 1 && g.opened) return -EBUSY;
    this.unregister(d);
    return 0;
  }

  /** vfio_pci_probe -> vfio_register_group_dev. */
  private register(fn: PciFunction): void {
    const k = this.env.ctx.kconfig;
    const iommuDev = this.env.iommu.device(fn.bdf);
    if (iommuDev === undefined) {
      // The noiommu mode (vfio.enable_unsafe_noiommu_mode) would give it a fake group here; not built yet.
      fail(EINVAL, `${fn.bdf} has no iommu_group and no-IOMMU mode is not available`);
    }
    if (!iommuDev.capable("CACHE_COHERENCY")) {
      fail(EINVAL, `${fn.bdf}: its IOMMU cannot enforce cache-coherent DMA (IOMMU_CAP_CACHE_COHERENCY)`);
    }
    const ig = iommuDev.group;
    let group = this.groups.get(ig.id);
    const newGroup = group === undefined;
    if (group === undefined) group = new VfioGroup(ig.id, ig, false);
    let index = 0;
    while (this.usedIndex.has(index)) index++;
    if (index > VFIO_DEV_MAX) fail(ENODEV, "no vfio device index left");
    const dev = new VfioDevice(index, fn.bdf, fn, iommuDev, group, new VfioPciCore(fn));
    this.usedIndex.add(index);
    group.devices.push(dev);
    this.devices.set(fn.bdf, dev);
    const vfs = this.env.ctx.vfs;
    if (newGroup) {
      this.groups.set(ig.id, group);
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
    const sys = `/sys/bus/pci/devices/${fn.bdf}/vfio-dev/${dev.cdevName}`;
    vfs.add(`${sys}/uevent`, {
      type: "attr",
      read: () =>
        k.VFIO_DEVICE_CDEV ? `MAJOR=511\nMINOR=${index}\nDEVNAME=vfio/devices/${dev.cdevName}\n` : "",
    });
    vfs.add(`/sys/class/vfio-dev/${dev.cdevName}`, {
      type: "link",
      target: `../../devices/pci${fn.bdf.slice(0, 7)}/${fn.bdf}/vfio-dev/${dev.cdevName}`,
    });
    vfs.add(`/sys/bus/pci/devices/${fn.bdf}/driver`, {
      type: "link",
      target: "../../../bus/pci/drivers/vfio-pci",
    });
    if (k.VFIO_DEVICE_CDEV) {
      vfs.add(`/dev/vfio/devices/${dev.cdevName}`, {
        type: "chr",
        open: () => {
          if (!dev.registered) fail(ENODEV, `${dev.cdevName} is being removed`);
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
    vfs.remove(`/sys/class/vfio-dev/${d.cdevName}`);
    vfs.remove(`/sys/bus/pci/devices/${d.bdf}/driver`);
    const g = d.group;
    g.devices.splice(g.devices.indexOf(d), 1);
    if (g.devices.length === 0) {
      vfs.remove(`/dev/vfio/${g.nodeName}`);
      this.groups.delete(g.id);
    }
    this.devices.delete(d.bdf);
    this.usedIndex.delete(d.index);
  }
}
