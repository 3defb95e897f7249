import type { Task } from "../kernel/task.js";
import { EINVAL, fail } from "../uapi/errno.js";
import { vfioFeatureFlagsCheck } from "../uapi/vfio.js";
import type { VfioDevice } from "./device.js";
import { u32, vfioCopyIn } from "./uaccess.js";

const FEATURE_MINSZ = 8;

/**
 * vfio_ioctl_device_feature(): argsz >= 8, only MASK|GET|SET|PROBE bits,
 * not GET and SET together without PROBE (all EINVAL); then the feature
 * goes to the core (migration, DMA logging: the model's devices support
 * neither) or the driver (ENOTTY for what it does not serve).
 */
export function vfioDeviceFeature(device: VfioDevice, task: Task, arg: bigint): number {
  const { dv, argsz } = vfioCopyIn(task, arg, FEATURE_MINSZ, "VFIO_DEVICE_FEATURE");
  const flags = u32(dv, 4);
  const chk = vfioFeatureFlagsCheck(flags);
  if (!chk.ok) fail(EINVAL, `VFIO_DEVICE_FEATURE: ${chk.reason}`);
  return device.ops.feature(task, flags, arg + 8n, argsz - FEATURE_MINSZ);
}
