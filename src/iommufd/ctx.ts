import type { NoiommuDriver } from "../iommu/drivers/noiommu.js";
import type { IommuGroup } from "../iommu/group.js";
import type { IommuSubsystem } from "../iommu/subsystem.js";
import type { KFile } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import {
  IOPT_PAGES_ACCOUNT_MM,
  IOPT_PAGES_ACCOUNT_USER,
  type IoptPagesAccountMode,
} from "../mm/locked-vm.js";
import type { Igroup } from "./device.js";
import type { IommufdIoas } from "./ioas.js";
import { ObjectTable } from "./object.js";
import type { Immap } from "./viommu.js";

/**
 * What the kernel keeps in iommufd's module globals, one set per machine:
 * the live contexts (counters, invariants, m.debug.hwpt), the IOMMU layer
 * the selftest's mock devices are made on, and iommufd_noiommu_ops
 * (present only with CONFIG_IOMMUFD_NOIOMMU).
 */
export class IommufdGlobals {
  readonly contexts = new Set<IommufdCtx>();
  readonly noiommuOps: NoiommuDriver | undefined;

  constructor(
    readonly k: KernelCtx,
    readonly iommu: IommuSubsystem | undefined,
  ) {
    this.noiommuOps = k.kconfig.IOMMUFD_NOIOMMU ? iommu?.noiommu : undefined;
  }
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
  vfioIoas: IommufdIoas | undefined;
  /** A VFIO no-IOMMU group was attached to this context. */
  noIommuMode = false;
  /** The file this context lives in (the KFile of /dev/iommu). */
  file!: KFile;
  released = false;
  /** ictx->groups: the igroup of each iommu_group with a device bound here. */
  readonly igroups = new Map<IommuGroup, Igroup>();
  /** ictx->mt_mmap: regions drivers registered for mmap() of this fd, by offset. */
  readonly mmaps = new Map<bigint, Immap>();
  readonly k: KernelCtx;

  constructor(
    /** The machine's iommufd globals; the context is in `globals.contexts` until its release. */
    readonly globals: IommufdGlobals,
    /** Opened through /dev/vfio/vfio (IOMMUFD_VFIO_CONTAINER). */
    readonly viaVfioContainer: boolean,
  ) {
    this.k = globals.k;
    this.objects = new ObjectTable(this.k.faults);
    this.accountMode = viaVfioContainer ? IOPT_PAGES_ACCOUNT_MM : IOPT_PAGES_ACCOUNT_USER;
    globals.contexts.add(this);
  }

  /** iommufd_ctx_get(): the in-kernel users (VFIO device, access) keep the file alive. */
  get(): void {
    this.file.get();
  }

  put(): void {
    this.file.put();
  }
}
