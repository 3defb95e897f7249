/**
 * iommufd: /dev/iommu and the in-kernel API VFIO uses
 * (drivers/iommu/iommufd/).
 *
 * - `registerIommufd(ctx, iommu)`: the /dev/iommu node (and /dev/vfio/vfio
 *   when IOMMUFD_VFIO_CONTAINER), leak counters, invariant checks, m.debug.hwpt.
 * - Device API (VFIO cdev): `iommufdCtxFromFile`, `iommufdDeviceBind`,
 *   `iommufdDeviceAttach` (replace when attached; returns the HWPT id),
 *   `iommufdDeviceDetach`, `iommufdDeviceUnbind`.
 * - Access API (emulated devices): `iommufdAccessCreate/Attach/Replace/
 *   Detach/PinPages/UnpinPages/Rw/Destroy`.
 * - VFIO container compat: `iommufdVfioCompatIoasCreate`,
 *   `iommufdVfioCompatIoasGetId`, `iommufdVfioCompatSetNoIommu`, and
 *   `openIommufdVfioContainer` for /dev/vfio/vfio.
 *
 * Noiommu (the cdev series, CONFIG_IOMMUFD_NOIOMMU): `iommufdDeviceBind`
 * with no IommuDevice binds through a dummy igroup; its HWPTs come from
 * the software AMDv1 domain (hwpt-noiommu.ts, src/iommu/drivers/noiommu.ts);
 * IOMMU_IOAS_NOIOMMU_GET_PA (get-pa.ts) reads PAs back from that table.
 *
 * vIOMMU (viommu.ts, hw-queue.ts, eventq.ts): IOMMU_VIOMMU_ALLOC,
 * VDEVICE_ALLOC, VEVENTQ_ALLOC, HW_QUEUE_ALLOC and FAULT_QUEUE_ALLOC with
 * their fds, on drivers implementing src/iommu/drivers/viommu-ops.ts (the
 * mock). PASID attach (pasid.ts): `iommufdDevicePasidAttach/Replace/Detach`.
 */

import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { HwptDebugInfo, KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { EINVAL, ENOENT, fail } from "../uapi/errno.js";
import { type IommufdCtx, IommufdGlobals } from "./ctx.js";
import { HwptNested, HwptPaging } from "./hw-pagetable.js";
import { checkIommufdInvariants } from "./invariants.js";
import { iommufdCtxFromFile, openIommufd } from "./main.js";

export {
  type AccessOps,
  IOMMUFD_ACCESS_RW_KTHREAD,
  IOMMUFD_ACCESS_RW_WRITE,
  type IommufdAccess,
  iommufdAccessAttach,
  iommufdAccessCreate,
  iommufdAccessDestroy,
  iommufdAccessDetach,
  iommufdAccessPinPages,
  iommufdAccessReplace,
  iommufdAccessRw,
  iommufdAccessUnpinPages,
} from "./access.js";
export type { IommufdCtx, IommufdGlobals } from "./ctx.js";
export {
  type BindOpts,
  type IommufdDevice,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
} from "./device.js";
export { ioctlTable, iommufdCtxFromFile } from "./main.js";
export {
  IOMMU_NO_PASID,
  iommufdDevicePasidAttach,
  iommufdDevicePasidDetach,
  iommufdDevicePasidReplace,
} from "./pasid.js";
export {
  iommufdVfioCompatIoasCreate,
  iommufdVfioCompatIoasGetId,
  iommufdVfioCompatSetNoIommu,
  vfioCompatIoctl,
} from "./vfio-compat.js";

/** The device node of /dev/vfio/vfio when iommufd provides the container (IOMMUFD_VFIO_CONTAINER). */
export function openIommufdVfioContainer(g: IommufdGlobals) {
  return openIommufd(g, true);
}

/**
 * Boot-time registration (iommufd_init): /dev/iommu (and /dev/vfio/vfio
 * with IOMMUFD_VFIO_CONTAINER), counters, invariants and m.debug.hwpt.
 * Nothing happens without CONFIG_IOMMUFD.
 */
export function registerIommufd(
  ctx: KernelCtx,
  iommu: IommuSubsystem | undefined,
): IommufdGlobals | undefined {
  if (!ctx.kconfig.IOMMUFD) return undefined;
  const g = new IommufdGlobals(ctx, iommu);
  ctx.vfs.add("/dev/iommu", { type: "chr", open: () => openIommufd(g, false) });
  if (ctx.kconfig.IOMMUFD_VFIO_CONTAINER) {
    ctx.vfs.add("/dev/vfio/vfio", { type: "chr", open: () => openIommufd(g, true) });
  }
  return g;
}

/** iommufd's leak counters (m.debug.counters()): what a process's iommufd state leaves behind. */
export function iommufdCounters(g: IommufdGlobals) {
  let objects = 0;
  let areas = 0;
  // vIOMMU-side state a leak would leave behind: vIOMMUs, queued page requests and vEVENTs.
  let viommus = 0;
  let pendingEvents = 0;
  for (const c of g.contexts) {
    objects += c.objects.size;
    for (const o of c.objects.values()) {
      if (o.type === "IOAS") areas += o.iopt.areas.size;
      else if (o.type === "VIOMMU") viommus++;
      else if (o.type === "FAULT") pendingEvents += o.deliver.length + o.response.size;
      else if (o.type === "VEVENTQ") pendingEvents += o.deliver.length;
    }
  }
  return { objects, areas, iommufdContexts: g.contexts.size, viommus, pendingEvents };
}

/** iommufd's invariant check (m.debug.checkInvariants()). */
export function iommufdInvariants(g: IommufdGlobals): string[] {
  return checkIommufdInvariants(g);
}

/** m.debug.hwpt(): the page table behind HWPT `id` of iommufd `fd` of `task`. */
export function iommufdDebugHwpt(task: Task, fd: number, id: number): HwptDebugInfo {
  const ictx: IommufdCtx = iommufdCtxFromFile(task.fdget(fd));
  const o = ictx.objects.tryGet(id);
  if (o === undefined) fail(ENOENT, `HWPT id ${id} does not exist`);
  const h = o instanceof HwptPaging ? o : o instanceof HwptNested ? o.parent : undefined;
  if (h === undefined) fail(EINVAL, `id ${id} is a ${o.type}, not a HWPT`);
  const info = h.domain.ptInfo();
  const windows = h.domain.debugWindows();
  const dump = windows?.[0]?.dump ?? (() => h.domain.ptDump());
  return { format: info.format, rootPhys: info.rootPhys, topLevel: info.topLevel, dump, windows };
}
export { debugIoas as iommufdDebugIoas } from "./debug-view.js";
