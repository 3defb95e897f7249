import type { Task } from "../../kernel/task.js";
import { EINVAL, fail } from "../../uapi/errno.js";
import { structView } from "../../uapi/struct.js";
import { VFIO_DEVICE_FEATURE_SET, vfio_device_low_power_entry_with_wakeup } from "../../uapi/vfio.js";
import { vfioCheckFeature } from "../device-feature.js";
import { eventfdGet, type Trigger } from "./intrs.js";

const WAKEUP_ENTRY_SIZE = vfio_device_low_power_entry_with_wakeup.size;

/**
 * vfio-pci runtime power management as user space drives it
 * (drivers/vfio/pci/vfio_pci_core.c: vfio_pci_core_pm_entry,
 * _pm_entry_with_wakeup, _pm_exit, vfio_pci_core_runtime_resume).
 *
 * LOW_POWER_ENTRY lets the function runtime-suspend once the ioctl
 * returns (pm_runtime_engaged). Every later device ioctl and region
 * read/write resumes it for its duration (vfio_device_pm_runtime_get,
 * vfio_pci_rw); a resume with a wakeup eventfd signals it and leaves the
 * low-power state, one without stays engaged until LOW_POWER_EXIT. BAR
 * mmaps are zapped on entry and fault with SIGBUS while engaged. Entering
 * twice is EINVAL; EXIT when not engaged is a no-op; closing the device
 * exits.
 */
export class VfioPciLowPower {
  engaged = false;
  private wake: Trigger | null = null;

  /** VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: SET only, no payload. */
  entry(flags: number, argsz: number): number {
    const r = vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0, "LOW_POWER_ENTRY");
    if (r !== 1) return r;
    this.enter(null);
    return 0;
  }

  /** VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: SET, an 8-byte payload with the wakeup eventfd. */
  entryWithWakeup(task: Task, flags: number, arg: bigint, argsz: number): number {
    const r = vfioCheckFeature(
      flags,
      argsz,
      VFIO_DEVICE_FEATURE_SET,
      WAKEUP_ENTRY_SIZE,
      "LOW_POWER_ENTRY_WITH_WAKEUP",
    );
    if (r !== 1) return r;
    const entry = structView(
      vfio_device_low_power_entry_with_wakeup,
      task.copyFromUser(arg, WAKEUP_ENTRY_SIZE),
    );
    const fd = entry.wakeup_eventfd;
    if (fd < 0) fail(EINVAL, `LOW_POWER_ENTRY_WITH_WAKEUP: wakeup_eventfd ${fd} is negative`);
    const t = eventfdGet(task, fd);
    try {
      this.enter(t);
    } catch (e) {
      t.file.put();
      throw e;
    }
    return 0;
  }

  /** VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: SET only; always succeeds. */
  exitFeature(flags: number, argsz: number): number {
    const r = vfioCheckFeature(flags, argsz, VFIO_DEVICE_FEATURE_SET, 0, "LOW_POWER_EXIT");
    if (r !== 1) return r;
    this.exit();
    return 0;
  }

  /** vfio_pci_core_runtime_resume: with a wakeup eventfd, signal it and leave low power. */
  resume(): void {
    if (!this.engaged || this.wake === null) return;
    this.wake.ctx.signal();
    this.exit();
  }

  /** __vfio_pci_runtime_pm_exit: drops the wakeup eventfd. */
  exit(): void {
    if (!this.engaged) return;
    this.engaged = false;
    if (this.wake !== null) this.wake.file.put();
    this.wake = null;
  }

  private enter(wake: Trigger | null): void {
    if (this.engaged)
      fail(EINVAL, "low power entry: the device is already in runtime low power (pm_runtime_engaged)");
    this.engaged = true;
    this.wake = wake;
  }
}
