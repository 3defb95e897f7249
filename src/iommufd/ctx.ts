import type { KFile } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import {
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_USER,
  type IoptPagesAccountMode,
} from "../mm/locked-vm.js";
import type { IoctlRow } from "./main.js";
import type { IommufdObject } from "./object.js";
import { ObjectTable } from "./object.js";

/** The live iommufd contexts of each machine (counters, invariants, m.debug.hwpt). */
const contexts = new WeakMap<KernelCtx, Set<IommufdCtx>>();

export function contextsOf(k: KernelCtx): Set<IommufdCtx> {
  let s = contexts.get(k);
  if (s === undefined) {
    s = new Set();
    contexts.set(k, s);
  }
  return s;
}

/**
 * struct iommufd_ctx: one per open of /dev/iommu (or of /dev/vfio/vfio when
 * iommufd provides it). Owns the object table; the compat IOAS pointer;
 * the RLIMIT accounting mode (IOMMU_OPTION_RLIMIT_MODE).
 */
export class IommufdCtx {
  readonly objects: ObjectTable;
  /** USER for /dev/iommu, MM for /dev/vfio/vfio (legacy VFIO accounting). */
  accountMode: IoptPagesAccountMode;
  /** The IOAS the VFIO type1 compat ioctls use (IOMMU_VFIO_IOAS). */
  vfioIoas: IommufdObject | undefined;
  /** A VFIO no-IOMMU group was attached to this context. */
  noIommuMode = false;
  /** The file this context lives in (the KFile of /dev/iommu). */
  file!: KFile;
  released = false;
  /** The kernel's ioctl table, looked up once per context (the profile and Kconfig are fixed at boot). */
  ioctls: Map<number, IoctlRow> | undefined;

  constructor(
    readonly k: KernelCtx,
    /** Opened through /dev/vfio/vfio (IOMMUFD_VFIO_CONTAINER). */
    readonly viaVfioContainer: boolean,
  ) {
    this.objects = new ObjectTable(k.faults);
    this.accountMode = viaVfioContainer ? IOPT_PAGES_ACCOUNT_MM : IOPT_PAGES_ACCOUNT_USER;
    contextsOf(k).add(this);
  }

  /** iommufd_ctx_get(): the in-kernel users (VFIO device, access) keep the file alive. */
  get(): void {
    this.file.get();
  }

  put(): void {
    this.file.put();
  }
}
