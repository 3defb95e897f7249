import type { HwptDebugInfo, TceWindowDebugInfo } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import type { VfioContainer } from "./container.js";

/** A legacy VFIO container (/dev/vfio/vfio) as m.debug.vfioContainers() reports it. */
export interface VfioContainerDebugInfo {
  /** The fd of the process that refers to it. */
  fd: number;
  /** The IOMMU driver VFIO_SET_IOMMU chose ("vfio-iommu-type1", "iommu-vfio-powerpc", "vfio-noiommu"); null before. */
  driver: string | null;
  /** iommu_group numbers of the groups set to it. */
  groups: number[];
  type1?: Type1DebugInfo;
  spapr?: SpaprTceDebugInfo;
}

/** struct vfio_iommu (type1): its mappings, their IOVA space and the domains they are mapped into. */
export interface Type1DebugInfo {
  v2: boolean;
  /** struct vfio_dma by IOVA: prot is IOMMU_READ (1) | IOMMU_WRITE (2). */
  dmas: {
    iova: bigint;
    size: bigint;
    vaddr: bigint;
    prot: number;
    /** VFIO_DMA_UNMAP_FLAG_VADDR left it without a valid vaddr. */
    vaddrInvalid: boolean;
    /** The pinned pfns behind it, as runs (at most 4096 runs). */
    pinnedRuns: { pfn: number; n: number }[];
  }[];
  /** iommu->iova_list: what VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE reports (empty with no domain). */
  iovaRanges: { start: bigint; last: bigint }[];
  /** The attached devices' reserved regions (the MSI window on x86), minus nothing. */
  reserved: { start: bigint; last: bigint; owner: string }[];
  /** iommu->pgsize_bitmap. */
  pgsizes: bigint;
  /** One paging domain per compatible set of groups (struct vfio_domain), each with its page table. */
  domains: { id: number; groups: number[]; table: HwptDebugInfo }[];
}

/** struct tce_container: its DMA windows, the TCEs in them and (v2) the pre-registered memory. */
export interface SpaprTceDebugInfo {
  v2: boolean;
  /** v1: VFIO_IOMMU_ENABLE done; v2: memory registered (MAP_DMA allowed). */
  enabled: boolean;
  /** The windows by TVE slot (0: 32-bit default window; 1: created with SPAPR_TCE_CREATE). */
  windows: TceWindowDebugInfo[];
  /**
   * The TCEs as runs (at most 4096): consecutive entries of one window with
   * one direction and consecutive user addresses (v2, it_userspace) or
   * consecutive host pages (v1, which records no user address). pfn is the
   * first TCE's host page.
   */
  mappings: { slot: number; iova: bigint; last: bigint; prot: number; pfn: number; ua?: bigint }[];
  /** v2: this mm's pre-registered regions (mm_iommu_table_group_mem_t), with how many TCEs point into each. */
  prereg: { ua: bigint; size: bigint; tces: number; pinnedRuns: { pfn: number; n: number }[] }[];
}

/** What a container backend adds to m.debug (type1 or sPAPR). */
export interface VfioBackendDebugInfo {
  type1?: Type1DebugInfo;
  spapr?: SpaprTceDebugInfo;
}

/** m.debug.vfioContainers(p): every legacy container open in the task, by fd, read without changing anything. */
export function debugVfioContainers(task: Task): VfioContainerDebugInfo[] {
  const out: VfioContainerDebugInfo[] = [];
  task.fds.forEach((f, fd) => {
    if (f === undefined || f.kind !== "vfio-container") return;
    const c = f.priv as VfioContainer;
    const info: VfioContainerDebugInfo = {
      fd,
      driver: c.driver?.name ?? null,
      groups: c.groups.map((g) => g.iommuGroup?.id ?? -1),
    };
    Object.assign(info, c.backend?.debugInfo?.() ?? {});
    out.push(info);
  });
  return out;
}

/** A pin's runs as plain data (at most 4096: a view needs the shape, not a million pfns). */
export function runsView(r: PfnRuns): { pfn: number; n: number }[] {
  const out: { pfn: number; n: number }[] = [];
  for (let i = 0; i < r.count && i < 4096; i++) out.push({ pfn: r.pfn[i], n: r.len[i] });
  return out;
}
