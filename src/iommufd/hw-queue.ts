import type { HwQueueCore } from "../iommu/drivers/viommu-ops.js";
import { EFAULT, EINVAL, EOPNOTSUPP, EOVERFLOW, ERANGE, fail } from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import {
  type IommufdAccess,
  iommufdAccessCreateInternal,
  iommufdAccessPinPages,
  iommufdAccessUnpinPages,
} from "./access.js";
import { hex, U64_MAX } from "./iova-alloc.js";
import { IommufdObject } from "./object.js";
import type { UcmdOf } from "./ucmd.js";
import type { IommufdViommu } from "./viommu.js";

/**
 * struct iommufd_hw_queue: a guest queue the hardware reads by physical
 * address. Its pages are pinned by an internal access on the vIOMMU's
 * IOAS, which locks their areas (IOAS_UNMAP: EBUSY). Holds +1 on the
 * vIOMMU; a queue the driver made depend on it holds +1 on it.
 */
export class IommufdHwQueue extends IommufdObject implements HwQueueCore {
  readonly type = "HW_QUEUE" as const;
  viommu: IommufdViommu | undefined;
  access: IommufdAccess | undefined;
  /** Set by the driver's hw_queue_init_phys on success. */
  driverDestroy: (() => void) | undefined;
  constructor(
    readonly baseAddr: bigint,
    readonly length: bigint,
    readonly queueType: number,
  ) {
    super();
  }
  depend(on: HwQueueCore): void {
    on.refGet();
  }
  undepend(on: HwQueueCore): void {
    on.refPut();
  }
  destroy(): void {
    this.driverDestroy?.();
    this.driverDestroy = undefined;
    if (this.access !== undefined) destroyAccess(this.access, this.baseAddr, this.length);
    this.access = undefined;
    if (this.viommu !== undefined) this.viommu.refPut();
    this.viommu = undefined;
  }
}

/** iommufd_hw_queue_destroy_access(): unpin the page-aligned span, detach, destroy. */
function destroyAccess(a: IommufdAccess, base: bigint, length: bigint): void {
  const aligned = base & ~(PAGE - 1n);
  const span = (length + (base - aligned) + PAGE - 1n) & ~(PAGE - 1n);
  iommufdAccessUnpinPages(a, aligned, span);
  a.destroy();
}

/**
 * iommufd_hw_queue_alloc_phys(): pin the queue's pages through an internal
 * access (errors of access pin: ENOENT unmapped, EPERM not readable...) and
 * require them physically contiguous (EFAULT). Returns the access and the
 * queue's physical address.
 */
function allocPhys(viommu: IommufdViommu, iova: bigint, length: bigint): [IommufdAccess, bigint] {
  const aligned = iova & ~(PAGE - 1n);
  const offset = iova - aligned;
  if (offset + length > U64_MAX || offset + length + PAGE - 1n > U64_MAX)
    fail(ERANGE, `queue [${hex(iova)}, +${hex(length)}) overflows size_t`);
  const span = ((offset + length + PAGE - 1n) / PAGE) * PAGE;
  const access = iommufdAccessCreateInternal(viommu.ictx, viommu.hwpt.ioas);
  let pfns: number[];
  try {
    pfns = iommufdAccessPinPages(access, aligned, span, 0);
  } catch (e) {
    access.destroy();
    throw e;
  }
  for (let i = 1; i < pfns.length; i++) {
    if (pfns[i] !== pfns[i - 1] + 1) {
      iommufdAccessUnpinPages(access, aligned, span);
      access.destroy();
      fail(EFAULT, `queue pages at ${hex(iova)} are not physically contiguous (page ${i})`);
    }
  }
  return [access, BigInt(pfns[0]) * PAGE + offset];
}

/**
 * IOMMU_HW_QUEUE_ALLOC (iommufd_hw_queue_alloc_ioctl): flags/type
 * (EOPNOTSUPP), length 0 (EINVAL), overflow (EOVERFLOW), the vIOMMU
 * (ENOENT), the driver's queue support (EOPNOTSUPP), the pinned contiguous
 * pages, then hw_queue_init_phys with the queue's PA.
 */
export function hwQueueAlloc(u: UcmdOf<"IOMMU_HW_QUEUE_ALLOC">): number {
  const type = u.cmd.type;
  if (u.cmd.flags !== 0 || type === 0)
    fail(EOPNOTSUPP, "flags must be 0 and type must not be IOMMU_HW_QUEUE_TYPE_DEFAULT");
  const length = u.cmd.length;
  if (length === 0n) fail(EINVAL, "length is 0");
  const iova = u.cmd.nesting_parent_iova;
  if (iova + length - 1n > U64_MAX) fail(EOVERFLOW, `nesting_parent_iova ${hex(iova)} + length overflows`);
  const viommu = u.ictx.objects.get(u.cmd.viommu_id, "VIOMMU", "vIOMMU");
  const st = viommu.state;
  if (st?.hwQueueSupported === undefined || st.hwQueueInitPhys === undefined)
    fail(EOPNOTSUPP, "the vIOMMU's driver has no HW queues (get_hw_queue_size/hw_queue_init_phys)");
  if (!st.hwQueueSupported(type))
    fail(EOPNOTSUPP, `the vIOMMU has no HW queue of type 0x${type.toString(16)}`);
  const q = new IommufdHwQueue(iova, length, type);
  u.createObject(q, () => {
    const [access, basePa] = allocPhys(viommu, iova, length);
    q.viommu = viommu;
    viommu.refGet();
    q.access = access;
    st.hwQueueInitPhys!(q, u.cmd.index, basePa);
    u.cmd.out_hw_queue_id = q.id;
    u.respond();
  });
  return 0;
}
