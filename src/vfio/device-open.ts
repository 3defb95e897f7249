import type { IommufdCtx } from "../iommufd/ctx.js";
import type { Task } from "../kernel/task.js";
import { EINVAL, fail } from "../uapi/errno.js";
import type { VfioDeviceFile } from "./device.js";
import { vfioIommufdPhysicalBind, vfioIommufdPhysicalUnbind } from "./iommufd.js";

/**
 * vfio_df_open(): the cdev allows one opener; the group path counts. The
 * first open sets up the IOMMU side (iommufd bind, or a user of the
 * group's container) and then the driver's open_device; any failure
 * unwinds what was done.
 */
export function vfioDfOpen(df: VfioDeviceFile, task?: Task): void {
  const device = df.device;
  if (device.openCount !== 0 && df.group === null) {
    fail(EINVAL, `${device.bdf} is already open through another device file (the cdev allows one opener)`);
  }
  if (device.openCount === 0) firstOpen(df, task);
  device.openCount++;
}

/** `task` is the opener (capable() in vfio_group_use_container). */
function firstOpen(df: VfioDeviceFile, task?: Task): void {
  const device = df.device;
  const ictx: IommufdCtx | null = df.iommufd;
  // vfio_df_iommufd_bind() lets a noiommu device open through the group's
  // iommufd compat without binding (no IOAS exists there); a noiommu cdev
  // does bind, through iommufd's dummy igroup.
  const skipBind = ictx !== null && df.group !== null && device.isNoiommu();
  if (ictx !== null) {
    if (!skipBind) df.devid = vfioIommufdPhysicalBind(device, ictx);
  } else device.group.useContainer(task);
  try {
    device.ops.openDevice();
  } catch (e) {
    if (ictx !== null) vfioIommufdPhysicalUnbind(device);
    else device.group.unuseContainer();
    throw e;
  }
}

/** vfio_df_close(): the last close runs close_device, then drops the IOMMU side. */
export function vfioDfClose(df: VfioDeviceFile): void {
  const device = df.device;
  if (device.openCount === 0) throw new Error(`${device.bdf}: close without open`);
  if (device.openCount === 1) {
    device.ops.closeDevice();
    if (df.iommufd !== null) vfioIommufdPhysicalUnbind(device);
    else device.group.unuseContainer();
  }
  device.openCount--;
}
