import type { IommuGroup } from "../iommu/group.js";
import type { IommufdCtx } from "../iommufd/ctx.js";
import { type FileOps, KFile } from "../kernel/file.js";
import type { Task } from "../kernel/task.js";
import { EBADFD, EBUSY, EINVAL, ENODEV, ENOTTY, EPERM, fail, KernelError } from "../uapi/errno.js";
import { PAGE_SIZE } from "../uapi/linux.js";
import {
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
  vfio_group_status,
} from "../uapi/vfio.js";
import type { VfioContainer } from "./container.js";
import { type VfioDevice, VfioDeviceFile } from "./device.js";
import { vfioDfClose, vfioDfOpen } from "./device-open.js";
import { iommufdCompat, vfioIommufdCtxFromFile, vfioIommufdPhysicalAttach } from "./iommufd.js";
import { getUserS32, vfioCopyInStruct } from "./uaccess.js";

/**
 * struct vfio_group (drivers/vfio/group.c): the devices of one
 * iommu_group as VFIO sees them, the single opener of /dev/vfio/<id>, and
 * what the group is attached to: a legacy container or an iommufd
 * (compat). `cdevDeviceOpenCnt` counts cdev binds in progress or active
 * in the group (they exclude the group path, and the group's opener
 * excludes them).
 */
export class VfioGroup {
  readonly devices: VfioDevice[] = [];
  /** group->opened_file: the single open of the group node. */
  opened = false;
  container: VfioContainer | null = null;
  containerUsers = 0;
  iommufd: IommufdCtx | null = null;
  cdevDeviceOpenCnt = 0;

  constructor(
    readonly id: number,
    /** The iommu_group; null for a no-IOMMU group (the later noiommu mode). */
    readonly iommuGroup: IommuGroup | null,
    /** VFIO_NO_IOMMU: a fake group for a device without an IOMMU (not built yet). */
    readonly noiommu: boolean,
  ) {}

  /** /dev/vfio/<id>, or /dev/vfio/noiommu-<id> for a no-IOMMU group. */
  get nodeName(): string {
    return this.noiommu ? `noiommu-${this.id}` : `${this.id}`;
  }

  hasIommu(): boolean {
    return this.container !== null || this.iommufd !== null;
  }

  /**
   * vfio_group_use_container(): a device open needs an IOMMU driver set on
   * the container (EINVAL), then, for a no-IOMMU group, CAP_SYS_RAWIO in
   * the opener (EPERM: a process that inherited the group fd without the
   * capability cannot open its device).
   */
  useContainer(task?: Task): void {
    if (this.container === null || this.container.backend === null) {
      fail(EINVAL, "the group's container has no IOMMU driver: call VFIO_SET_IOMMU first");
    }
    if (this.noiommu && task !== undefined && !task.capable("CAP_SYS_RAWIO")) {
      fail(EPERM, `opening a device of no-IOMMU group ${this.nodeName} needs CAP_SYS_RAWIO`);
    }
    this.containerUsers++;
  }

  unuseContainer(): void {
    this.containerUsers--;
  }

  /** vfio_device_block_group(): a cdev bind starts; EBUSY while the group node is open. */
  blockGroup(): void {
    if (this.opened) {
      fail(
        EBUSY,
        `iommu_group ${this.id} is open through /dev/vfio/${this.nodeName}: the group path excludes the cdev`,
      );
    }
    this.cdevDeviceOpenCnt++;
  }

  unblockGroup(): void {
    this.cdevDeviceOpenCnt--;
  }

  detachContainer(): void {
    const c = this.container;
    if (c === null) return;
    c.detachGroup(this);
    this.container = null;
    this.containerUsers = 0;
  }
}

/** What the group fops need from the VFIO core. */
export interface GroupEnv {
  containerFromFile(file: KFile): VfioContainer | null;
  deviceFops: FileOps;
  noteDeviceFile(df: VfioDeviceFile, open: boolean): void;
  /** dev_warn(): the kernel log. */
  warn?(msg: string): void;
}

/** open() of /dev/vfio/<id> (vfio_group_fops_open). */
export function vfioGroupOpen(group: VfioGroup, task: Task): void {
  if (group.devices.length === 0) fail(ENODEV, `group ${group.id} has no devices left`);
  if (group.noiommu && !task.capable("CAP_SYS_RAWIO")) {
    fail(EPERM, `opening no-IOMMU group ${group.nodeName} needs CAP_SYS_RAWIO`);
  }
  if (group.cdevDeviceOpenCnt > 0) {
    fail(EBUSY, `a device of group ${group.id} is bound through its cdev: the cdev excludes the group path`);
  }
  if (group.opened) fail(EBUSY, `group ${group.id} is already open (one opener at a time)`);
  group.opened = true;
}

export function vfioGroupFops(env: GroupEnv): FileOps {
  return {
    kind: "vfio-group",
    ioctl(file, task, cmd, arg) {
      const group = file.priv as VfioGroup;
      switch (cmd) {
        case VFIO_GROUP_GET_STATUS:
          return getStatus(group, task, arg);
        case VFIO_GROUP_SET_CONTAINER:
          return setContainer(group, task, arg, env);
        case VFIO_GROUP_UNSET_CONTAINER:
          return unsetContainer(group);
        case VFIO_GROUP_GET_DEVICE_FD:
          return getDeviceFd(group, file, task, arg, env);
        default:
          return fail(ENOTTY, `VFIO group fds have no ioctl 0x${(cmd >>> 0).toString(16)}`);
      }
    },
    release(file) {
      // Device fds hold the group file, so no device is open here.
      const group = file.priv as VfioGroup;
      group.detachContainer();
      if (group.iommufd !== null) {
        group.iommufd.put();
        group.iommufd = null;
      }
      group.opened = false;
    },
  };
}

function getStatus(group: VfioGroup, task: Task, arg: bigint): number {
  const { s: status, buf } = vfioCopyInStruct(
    task,
    arg,
    vfio_group_status,
    vfio_group_status.size,
    "VFIO_GROUP_GET_STATUS",
  );
  let flags = 0;
  if (group.devices.length === 0) fail(ENODEV, `group ${group.id} is being removed`);
  if (group.hasIommu()) flags = VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET;
  else if (group.iommuGroup === null || !group.iommuGroup.dmaOwnerClaimed) flags = VFIO_GROUP_FLAGS_VIABLE;
  status.flags = flags;
  task.copyToUser(arg, buf.subarray(0, vfio_group_status.size));
  return 0;
}

function setContainer(group: VfioGroup, task: Task, arg: bigint, env: GroupEnv): number {
  const fd = getUserS32(task, arg);
  const f = task.fdget(fd);
  if (group.hasIommu()) fail(EINVAL, `group ${group.id} already has a container or iommufd`);
  if (group.devices.length === 0) fail(ENODEV, `group ${group.id} is being removed`);
  const container = env.containerFromFile(f);
  if (container !== null) {
    container.attachGroup(task, group);
    group.container = container;
    group.containerUsers = 1;
    return 0;
  }
  let ictx: IommufdCtx;
  try {
    ictx = vfioIommufdCtxFromFile(f);
  } catch (e) {
    if (e instanceof KernelError && e.errno === EBADFD) {
      fail(EBADFD, `fd ${fd} (${f.kind}) is neither a VFIO container nor an iommufd`);
    }
    throw e;
  }
  if (group.noiommu) iommufdCompat.setNoIommu(ictx);
  else iommufdCompat.ioasCreate(ictx);
  ictx.get();
  group.iommufd = ictx;
  return 0;
}

function unsetContainer(group: VfioGroup): number {
  if (!group.hasIommu()) fail(EINVAL, `group ${group.id} has no container or iommufd to unset`);
  if (group.container !== null) {
    if (group.containerUsers !== 1) fail(EBUSY, `group ${group.id} has open devices using its container`);
    group.detachContainer();
  }
  if (group.iommufd !== null) {
    group.iommufd.put();
    group.iommufd = null;
  }
  return 0;
}

/** vfio_group_ioctl_get_device_fd: by name (the BDF), then the group-path open. */
function getDeviceFd(group: VfioGroup, groupFile: KFile, task: Task, arg: bigint, env: GroupEnv): number {
  const name = readUserString(task, arg);
  // vfio_device_get_from_name(): the driver's match (vfio-pci's takes "BDF vf_token=<uuid>";
  // its refusal ends the search with its errno), else the exact device name
  const device = group.devices.find((d) => (d.ops.match ? d.ops.match(name) : d.bdf === name));
  if (device === undefined) fail(ENODEV, `group ${group.id} has no device named "${name}"`);
  if (!group.hasIommu()) fail(EINVAL, `group ${group.id} has no container or iommufd set`);
  const df = new VfioDeviceFile(device, group);
  df.iommufd = group.iommufd;
  // vfio_df_group_open(): the first open of a no-IOMMU device through
  // iommufd compat needs CAP_SYS_RAWIO and no compat IOAS (a compat IOAS
  // means the user expects translation, which this device does not have).
  if (df.iommufd !== null && group.noiommu && device.openCount === 0) {
    if (!task.capable("CAP_SYS_RAWIO"))
      fail(EPERM, "opening a no-IOMMU device through iommufd needs CAP_SYS_RAWIO");
    if (iommufdCompat.hasIoas(df.iommufd)) {
      fail(
        EPERM,
        "the iommufd has a compat IOAS (IOMMU_VFIO_IOAS SET): a no-IOMMU device cannot be opened where translation is expected",
      );
    }
  }
  vfioDfOpen(df, task);
  // vfio_iommufd_compat_attach_ioas() returns 0 for a noiommu device: there is no compat IOAS.
  if (df.iommufd !== null && device.openCount === 1 && !device.isNoiommu()) {
    try {
      // The legacy path cannot return the pt_id it attached to.
      vfioIommufdPhysicalAttach(device, iommufdCompat.ioasGetId(df.iommufd));
    } catch (e) {
      vfioDfClose(df);
      throw e;
    }
  }
  if (group.noiommu)
    env.warn?.(`vfio-pci ${device.bdf}: vfio-noiommu device opened by user (pid ${task.pid})`);
  df.accessGranted = true;
  df.groupFile = groupFile.get();
  const file = new KFile(env.deviceFops, df, `anon_inode:[vfio-device]`, 0o2000000 | 2);
  env.noteDeviceFile(df, true);
  return task.fdInstall(file);
}

/** strndup_user(arg, PAGE_SIZE): EFAULT unreadable, EINVAL with no NUL within a page. */
function readUserString(task: Task, arg: bigint): string {
  const bytes: number[] = [];
  for (let i = 0; i < PAGE_SIZE; i++) {
    const b = task.copyFromUser(arg + BigInt(i), 1)[0];
    if (b === 0) return String.fromCharCode(...bytes);
    bytes.push(b);
  }
  return fail(EINVAL, "device name longer than a page");
}

/** The group path's close of a device fd (vfio_df_group_close). */
export function vfioDfGroupClose(df: VfioDeviceFile): void {
  vfioDfClose(df);
  const gf = df.groupFile;
  df.groupFile = null;
  gf?.put();
}
