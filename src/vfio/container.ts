import type { IommuGroup } from "../iommu/group.js";
import type { FileOps } from "../kernel/file.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { EINVAL, ENODEV, EPERM, fail, KernelError } from "../uapi/errno.js";
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION,
  VFIO_SET_IOMMU,
} from "../uapi/vfio.js";
import type { VfioBackendDebugInfo } from "./debug-view.js";
import type { VfioGroup } from "./group.js";

/** An opened IOMMU backend of a container (struct vfio_iommu_driver_ops' data). */
export interface VfioIommuBackend {
  attachGroup(group: IommuGroup): void;
  detachGroup(group: IommuGroup): void;
  ioctl(task: Task, cmd: number, arg: bigint): number;
  release(): void;
  pinnedPages(): number;
  /** Every frame range the backend holds a pin on (for the machine invariants). */
  forEachPin?(cb: (pfn: number, n: number) => void): void;
  /** What the backend charged to each mm's locked_vm (for the machine invariants). */
  forEachLockedVm?(cb: (mm: object, pages: number) => void): void;
  /** For m.debug.vfioContainers(): the backend's mappings and tables, read without changing anything. */
  debugInfo?(): VfioBackendDebugInfo;
}

/**
 * A registered IOMMU driver for legacy containers (vfio_register_iommu_driver):
 * type1 now; the noiommu driver and sPAPR TCE plug in here later (their
 * `noiommu` flag keeps real and fake groups apart).
 */
export interface VfioIommuDriver {
  readonly name: string;
  /** Serves only no-IOMMU groups (vfio-noiommu). */
  readonly noiommu?: boolean;
  /** The driver's CHECK_EXTENSION with no container data (`k`: live module parameters). */
  checkExtension(ext: number, k?: KernelCtx): number;
  /** ops->open(arg); `task` is the caller (for capability checks). */
  open(k: KernelCtx, type: number, task?: Task): VfioIommuBackend;
}

/**
 * struct vfio_container (drivers/vfio/container.c): groups and at most one
 * IOMMU backend, chosen by SET_IOMMU once a group is attached. Held by its
 * fd and by each attached group; the backend goes when the last group does.
 */
export class VfioContainer {
  readonly groups: VfioGroup[] = [];
  driver: VfioIommuDriver | null = null;
  backend: VfioIommuBackend | null = null;
  noiommu = false;
  private refs = 1;

  constructor(
    readonly k: KernelCtx,
    private readonly drivers: () => readonly VfioIommuDriver[],
    private readonly onFree: (c: VfioContainer) => void,
  ) {}

  get(): void {
    this.refs++;
  }

  put(): void {
    if (--this.refs > 0) return;
    this.onFree(this);
  }

  /**
   * vfio_iommu_driver_allowed(): a noiommu container uses only vfio-noiommu
   * and vfio-noiommu serves only a noiommu container (set by the first
   * group's attach).
   */
  private allowed(d: VfioIommuDriver): boolean {
    if (!this.k.kconfig.VFIO_NOIOMMU) return true;
    return (d.noiommu === true) === this.noiommu;
  }

  /**
   * vfio_container_ioctl_check_extension(): the set driver answers; without
   * one every registered driver is polled, filtered by
   * vfio_iommu_driver_allowed() only once a group is attached, so an empty
   * container offers both VFIO_NOIOMMU_IOMMU (while the parameter is on)
   * and the type1 types.
   */
  checkExtension(ext: number): number {
    if (this.backend !== null)
      return this.backend.ioctl(null as unknown as Task, VFIO_CHECK_EXTENSION, BigInt(ext));
    for (const d of this.drivers()) {
      if (this.groups.length > 0 && !this.allowed(d)) continue;
      const r = d.checkExtension(ext, this.k);
      if (r > 0) return r;
    }
    return 0;
  }

  /** vfio_ioctl_set_iommu: the first allowed driver that answers the extension and accepts every group. */
  setIommu(type: number, task?: Task): number {
    if (this.groups.length === 0) fail(EINVAL, "VFIO_SET_IOMMU: the container has no group yet");
    if (this.driver !== null) fail(EINVAL, "VFIO_SET_IOMMU: an IOMMU driver is already set");
    let err: KernelError = new KernelError(ENODEV, `VFIO_SET_IOMMU: no IOMMU driver supports type ${type}`);
    for (const d of this.drivers()) {
      if (!this.allowed(d) || d.checkExtension(type, this.k) <= 0) continue;
      let b: VfioIommuBackend;
      try {
        b = d.open(this.k, type, task);
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        err = e;
        continue;
      }
      const done: VfioGroup[] = [];
      try {
        for (const g of this.groups) {
          if (g.iommuGroup !== null) b.attachGroup(g.iommuGroup);
          done.push(g);
        }
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        for (const g of done) if (g.iommuGroup !== null) b.detachGroup(g.iommuGroup);
        b.release();
        err = e;
        continue;
      }
      this.driver = d;
      this.backend = b;
      return 0;
    }
    throw err;
  }

  /** vfio_container_attach_group (the caller holds the group lock and checked it has no container). */
  attachGroup(task: Task, group: VfioGroup): void {
    if (group.noiommu && !task.capable("CAP_SYS_RAWIO")) {
      fail(EPERM, "VFIO_GROUP_SET_CONTAINER: a no-IOMMU group needs CAP_SYS_RAWIO");
    }
    if (this.groups.length > 0 && this.noiommu !== group.noiommu) {
      fail(EPERM, "VFIO_GROUP_SET_CONTAINER: no-IOMMU and IOMMU groups cannot share a container");
    }
    const ig = group.iommuGroup;
    if (ig !== null) ig.claimDmaOwner(group);
    if (this.backend !== null && ig !== null) {
      try {
        this.backend.attachGroup(ig);
      } catch (e) {
        ig.releaseDmaOwner();
        throw e;
      }
    }
    this.noiommu = group.noiommu;
    this.groups.push(group);
    this.get();
  }

  /** vfio_group_detach_container: the last group takes the backend with it. */
  detachGroup(group: VfioGroup): void {
    const ig = group.iommuGroup;
    if (this.backend !== null && ig !== null) this.backend.detachGroup(ig);
    if (ig !== null) ig.releaseDmaOwner();
    this.groups.splice(this.groups.indexOf(group), 1);
    if (this.groups.length === 0 && this.backend !== null) {
      this.backend.release();
      this.backend = null;
      this.driver = null;
    }
    this.put();
  }
}

/**
 * /dev/vfio/vfio (legacy VFIO_CONTAINER): GET_API_VERSION, CHECK_EXTENSION,
 * SET_IOMMU; anything else goes to the backend once set, EINVAL before.
 */
export function vfioContainerFops(): FileOps {
  return {
    kind: "vfio-container",
    traceKind(file) {
      const c = file.priv as VfioContainer;
      return c.driver?.name === "iommu-vfio-powerpc" ? "vfio-container-spapr" : "vfio-container";
    },
    ioctl(file, task, cmd, arg) {
      const c = file.priv as VfioContainer;
      switch (cmd) {
        case VFIO_GET_API_VERSION:
          return VFIO_API_VERSION;
        case VFIO_CHECK_EXTENSION:
          return c.checkExtension(Number(BigInt.asUintN(32, arg)));
        case VFIO_SET_IOMMU:
          return c.setIommu(Number(BigInt.asUintN(32, arg)), task);
        default:
          if (c.backend === null) {
            fail(EINVAL, "container ioctl before VFIO_SET_IOMMU (no IOMMU driver selected)");
          }
          return c.backend.ioctl(task, cmd, arg);
      }
    },
    release(file) {
      (file.priv as VfioContainer).put();
    },
  };
}
