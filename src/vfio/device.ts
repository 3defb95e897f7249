import type { PciFunction } from "../hw/pci-dev.js";
import type { IommuDevice } from "../iommu/device.js";
import type { IommufdCtx } from "../iommufd/ctx.js";
import type { FileOps, KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import type { IoMem } from "../mm/io-mem.js";
import { EINVAL, ENOTTY, fail } from "../uapi/errno.js";
import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD,
  VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_FEATURE,
} from "../uapi/vfio.js";
import { vfioDeviceFeature } from "./device-feature.js";
import type { VfioGroup } from "./group.js";
import type { VfioIommufdBinding } from "./iommufd.js";

/** What a VFIO bus driver (vfio-pci) supplies: struct vfio_device_ops. */
export interface VfioDeviceOps {
  readonly name: string;
  /** First open of the device (after the IOMMU side is set up). */
  openDevice(): void;
  /** Last close. */
  closeDevice(): void;
  /** Driver ioctls; unknown ones give ENOTTY. */
  ioctl(task: Task, cmd: number, arg: bigint): number;
  read(task: Task, len: number, off: bigint): Uint8Array;
  write(task: Task, bytes: Uint8Array, off: bigint): number;
  /** mmap of a region: the device memory to map (the mapping holds `file`). */
  mmap(file: KFile, task: Task, len: bigint, off: bigint, prot: number): IoMem;
  /** DEVICE_FEATURE features the driver serves (ENOTTY for the rest). */
  feature(task: Task, flags: number, arg: bigint, argsz: number): number;
  /**
   * ops->match: does the group path's device name (GET_DEVICE_FD's string)
   * name this device? Throws for a name that does but may not open it
   * (a VF token rule). Without it the name must equal the BDF.
   */
  match?(name: string): boolean;
  /** ops->match_token_uuid: the cdev BIND's token (null: none given); throws when it may not open. */
  matchTokenUuid?(uuid: Uint8Array | null): void;
  /** vfio_device_pm_runtime_get(): the device resumes for every ioctl after access is granted. */
  pmRuntimeGet?(): void;
}

/**
 * struct vfio_device: one registered device (a PCI function bound to
 * vfio-pci). Opened through its group or its cdev; `openCount` counts
 * device files that opened it (the cdev allows one, the group path many).
 */
export class VfioDevice {
  openCount = 0;
  /** Opened through the cdev (VFIO_DEVICE_BIND_IOMMUFD succeeded). */
  cdevOpened = false;
  /** The iommufd binding while the device is open through iommufd (cdev or group compat). */
  iommufd: VfioIommufdBinding | null = null;
  /** Open device files (for unbind refusal and leak counting). */
  readonly files = new Set<VfioDeviceFile>();
  registered = true;
  /**
   * vfio_device->noiommu (the cdev series): no IOMMU driver, registered
   * while vfio.enable_unsafe_noiommu_mode was on with IOMMUFD_NOIOMMU built.
   */
  noiommu = false;

  constructor(
    /** Index from the vfio device IDA: the N of vfioN. */
    readonly index: number,
    readonly bdf: string,
    readonly fn: PciFunction,
    /** The function's IommuDevice; undefined when it has no IOMMU. */
    readonly iommuDev: IommuDevice | undefined,
    readonly group: VfioGroup,
    readonly ops: VfioDeviceOps,
  ) {}

  /** The struct device / cdev name: noiommu-vfioN for a noiommu cdev. */
  get cdevName(): string {
    return `${this.noiommu ? "noiommu-" : ""}vfio${this.index}`;
  }

  /**
   * vfio_device_is_noiommu(): a VFIO_NO_IOMMU group (the group path's fake
   * group), or the cdev noiommu flag.
   */
  isNoiommu(): boolean {
    return this.group.noiommu || this.noiommu;
  }
}

/**
 * struct vfio_device_file: the private data of one open device fd. A
 * group-obtained fd has `group` set and is usable at once; a cdev fd is
 * usable only after VFIO_DEVICE_BIND_IOMMUFD (`accessGranted`).
 */
export class VfioDeviceFile {
  accessGranted = false;
  iommufd: IommufdCtx | null = null;
  /** The iommufd object id of the bound device (cdev path). */
  devid = 0;
  /** The group file this fd keeps open (group path: device fds hold a group file reference). */
  groupFile: KFile | null = null;

  constructor(
    readonly device: VfioDevice,
    readonly group: VfioGroup | null,
  ) {}
}

/** Hooks the device fops call into the cdev and group paths (kept apart to avoid import cycles). */
export interface DeviceFopsHooks {
  bindIommufd(df: VfioDeviceFile, task: Task, arg: bigint): number;
  attachPt(df: VfioDeviceFile, task: Task, arg: bigint): number;
  detachPt(df: VfioDeviceFile, task: Task, arg: bigint): number;
  release(df: VfioDeviceFile): void;
  cdevBuilt(): boolean;
}

/**
 * vfio_device_fops: BIND_IOMMUFD is always reachable; everything else
 * (and read/write/mmap) needs access (EINVAL before bind); ATTACH/DETACH
 * are cdev-only (on a group fd they reach the driver: ENOTTY); FEATURE is
 * the core's; the rest goes to the driver.
 */
export function vfioDeviceFops(hooks: DeviceFopsHooks): FileOps {
  const access = (df: VfioDeviceFile, what: string) => {
    if (!df.accessGranted) {
      fail(
        EINVAL,
        `${what} on a device cdev before VFIO_DEVICE_BIND_IOMMUFD (access is granted only by bind)`,
      );
    }
  };
  return {
    kind: "vfio-device",
    ioctl(file, task, cmd, arg) {
      const df = file.priv as VfioDeviceFile;
      if (cmd === VFIO_DEVICE_BIND_IOMMUFD) {
        if (!hooks.cdevBuilt()) fail(ENOTTY, "VFIO_DEVICE_BIND_IOMMUFD needs CONFIG_VFIO_DEVICE_CDEV");
        return hooks.bindIommufd(df, task, arg);
      }
      access(df, "ioctl");
      df.device.ops.pmRuntimeGet?.();
      if (df.group === null && hooks.cdevBuilt()) {
        if (cmd === VFIO_DEVICE_ATTACH_IOMMUFD_PT) return hooks.attachPt(df, task, arg);
        if (cmd === VFIO_DEVICE_DETACH_IOMMUFD_PT) return hooks.detachPt(df, task, arg);
      }
      if (cmd === VFIO_DEVICE_FEATURE) return vfioDeviceFeature(df.device, task, arg);
      return df.device.ops.ioctl(task, cmd, arg);
    },
    pread(file, task, len, off) {
      const df = file.priv as VfioDeviceFile;
      access(df, "read");
      return df.device.ops.read(task, len, off);
    },
    pwrite(file, task, bytes, off) {
      const df = file.priv as VfioDeviceFile;
      access(df, "write");
      return df.device.ops.write(task, bytes, off);
    },
    mmap(file, task, len, off, prot) {
      const df = file.priv as VfioDeviceFile;
      access(df, "mmap");
      return df.device.ops.mmap(file, task, len, off, prot);
    },
    release(file) {
      hooks.release(file.priv as VfioDeviceFile);
    },
  };
}
