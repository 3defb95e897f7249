import type { Task } from "../kernel/task.js";
import { EINVAL, ENOTTY, fail } from "../uapi/errno.js";
import { offsetOfEnd, structView } from "../uapi/struct.js";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  vfio_device_feature,
  vfioFeatureFlagsCheck,
} from "../uapi/vfio.js";
import type { VfioDevice } from "./device.js";
import { vfioCopyIn } from "./uaccess.js";

const FEATURE_MINSZ = offsetOfEnd(vfio_device_feature, "flags");

/**
 * vfio_ioctl_device_feature() (drivers/vfio/vfio_main.c): argsz >= 8, only
 * MASK|GET|SET|PROBE bits, not GET and SET together without PROBE (all
 * EINVAL). The migration and DMA-logging features belong to the core and
 * are ENOTTY before any flag check when the driver has no mig_ops /
 * log_ops (no model device has them); every other feature goes to the
 * driver's device_feature op.
 */
export function vfioDeviceFeature(device: VfioDevice, task: Task, arg: bigint): number {
  const { buf, argsz } = vfioCopyIn(task, arg, FEATURE_MINSZ, "VFIO_DEVICE_FEATURE");
  const flags = structView(vfio_device_feature, buf).flags;
  const chk = vfioFeatureFlagsCheck(flags);
  if (!chk.ok) fail(EINVAL, `VFIO_DEVICE_FEATURE: ${chk.reason}`);
  switch (flags & VFIO_DEVICE_FEATURE_MASK) {
    case VFIO_DEVICE_FEATURE_MIGRATION:
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
      return fail(ENOTTY, `VFIO_DEVICE_FEATURE: ${device.ops.name} has no migration support (no mig_ops)`);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT:
      return fail(ENOTTY, `VFIO_DEVICE_FEATURE: ${device.ops.name} has no device DMA logging (no log_ops)`);
    default:
      // the feature's payload is the header's data[]
      return device.ops.feature(task, flags, arg + BigInt(vfio_device_feature.size), argsz - FEATURE_MINSZ);
  }
}

/**
 * vfio_check_feature() (include/linux/vfio.h): GET/SET the feature does not
 * support is EINVAL; PROBE then answers 0; without PROBE one of GET/SET is
 * needed and argsz must cover the payload (EINVAL). Returns 1 when the
 * driver should go on, 0 for a successful probe; errors throw.
 */
export function vfioCheckFeature(
  flags: number,
  argsz: number,
  supported: number,
  minsz: number,
  what: string,
): number {
  const ops = flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
  if ((ops & ~supported) !== 0)
    fail(EINVAL, `${what}: supports only ${supported === VFIO_DEVICE_FEATURE_SET ? "SET" : "GET"}`);
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
  if (ops === 0) fail(EINVAL, `${what}: without PROBE, GET or SET is needed`);
  if (argsz < minsz) fail(EINVAL, `${what}: argsz leaves ${argsz} bytes for a ${minsz}-byte payload`);
  return 1;
}
