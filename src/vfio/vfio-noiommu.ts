import type { IommuGroup } from "../iommu/group.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { EINVAL, ENOTTY, EPERM, fail } from "../uapi/errno.js";
import { VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU } from "../uapi/vfio.js";
import type { VfioIommuBackend, VfioIommuDriver } from "./container.js";

/**
 * The legacy container's "vfio-noiommu" IOMMU driver (container.c): it
 * serves only no-IOMMU groups and offers nothing but its own existence.
 * CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) reads the module parameter live (1
 * only while it is on); SET_IOMMU needs arg == VFIO_NOIOMMU_IOMMU (EINVAL)
 * and CAP_SYS_RAWIO (EPERM); attaching groups does nothing; every other
 * container ioctl (MAP_DMA...) is ENOTTY. The user finds physical
 * addresses by other means: this path has no IOAS.
 */
export const vfioNoiommuDriver: VfioIommuDriver = {
  name: "vfio-noiommu",
  noiommu: true,
  checkExtension(ext: number, k?: KernelCtx): number {
    return ext === VFIO_NOIOMMU_IOMMU && k?.params["vfio.enable_unsafe_noiommu_mode"] === true ? 1 : 0;
  },
  open(k: KernelCtx, type: number, task?: Task): VfioIommuBackend {
    if (type !== VFIO_NOIOMMU_IOMMU)
      fail(EINVAL, `vfio-noiommu serves only VFIO_NOIOMMU_IOMMU (asked for ${type})`);
    if (task !== undefined && !task.capable("CAP_SYS_RAWIO")) {
      fail(EPERM, "VFIO_SET_IOMMU(VFIO_NOIOMMU_IOMMU) needs CAP_SYS_RAWIO");
    }
    return {
      attachGroup(_g: IommuGroup): void {},
      detachGroup(_g: IommuGroup): void {},
      ioctl(_task: Task, cmd: number, arg: bigint): number {
        if (cmd === VFIO_CHECK_EXTENSION) {
          return Number(BigInt.asUintN(32, arg)) === VFIO_NOIOMMU_IOMMU &&
            k.params["vfio.enable_unsafe_noiommu_mode"] === true
            ? 1
            : 0;
        }
        return fail(
          ENOTTY,
          `the vfio-noiommu container has no ioctl 0x${(cmd >>> 0).toString(16)}: no DMA mapping without an IOMMU`,
        );
      },
      release(): void {},
      pinnedPages(): number {
        return 0;
      },
    };
  },
};
