import type { DmaLog } from "../hw/dma-log.js";
import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";
import type { KernelProfile, NoiommuRevision } from "../uapi/profiles.js";
import type { Kconfig } from "./kconfig.js";
import type { ParamName, ParamValue } from "./params.js";
import type { KernelLog } from "./printk.js";
import type { Vfs } from "./vfs.js";

/** The IOMMU a machine has (MachineOptions.iommu). */
export const IOMMU_KINDS = ["amd", "intel", "spapr", "mock", "none"] as const;
export type IommuKind = (typeof IOMMU_KINDS)[number];
export type KernelProfileName = KernelProfile;
export type { NoiommuRevision };

/**
 * The kernel's shared state, handed to each subsystem when the machine
 * boots (what globals are in the kernel). Subsystems import this type
 * only; the Machine builds it.
 */
export interface KernelCtx {
  readonly phys: PhysMem;
  readonly frames: FrameAllocator;
  readonly faults: FaultInject;
  readonly vfs: Vfs;
  readonly klog: KernelLog;
  readonly kconfig: Kconfig;
  readonly params: Record<ParamName, ParamValue>;
  readonly profile: KernelProfileName;
  readonly noiommuRevision: NoiommuRevision;
  readonly iommuKind: IommuKind;
  readonly seed: number;
  readonly dmaLog: DmaLog;
  /** The next IommuDomain id: numbered per machine, so two machines built alike name domains alike. */
  readonly domainIds: { next: number };
}

/** An IOAS as m.debug.ioas() reports it (read-only, for tools). */
export interface IoasDebugInfo {
  /** Areas by IOVA: prot is the IOMMU_READ (1) / IOMMU_WRITE (2) / IOMMU_CACHE (4) ... bits the area maps with; addr is the user VA (or file offset) of the first byte. */
  areas: {
    iova: bigint;
    last: bigint;
    prot: number;
    source: "user" | "file" | "dmabuf";
    addr: bigint;
    /** The pinned pfns behind the area, as runs (at most 4096 runs). */
    pinnedRuns: { pfn: number; n: number }[];
  }[];
  /** iopt reserved ranges and what reserved them (device regions such as the MSI window, aperture gaps). */
  reserved: { start: bigint; last: bigint; owner: string }[];
  /** IOMMU_IOAS_ALLOW_IOVAS ranges (empty: everything not reserved is allowed). */
  allowed: { start: bigint; last: bigint }[];
}

export interface HwptDebugInfo {
  /**
   * "amdv1_mock": the selftest mock's generic_pt AMDv1 variant (iommu_mock.c),
   * AMDv1 entry bits over a 2 KiB granule: a level-L table maps address bits
   * 11+9L..19+9L and OA fields hold address >> 11 (table pointers too).
   */
  format: "amdv1" | "amdv1_mock" | "vtdss" | "x86_64" | "riscv" | "spapr_tce";
  rootPhys: bigint;
  topLevel: number;
  /**
   * The table level by level (src/pt's PageTable.dump(): raw entry and its
   * decoded meaning), for `iommufd-sim inspect`. Optional: filled in by the
   * HWPT's owner when the table object is at hand.
   */
  dump?: () => { level: number; index: number; tablePhys: bigint; raw: bigint; text: string }[];
  /**
   * sPAPR TCE domains: one TCE table per DMA window (the domain's table is
   * not one tree), ascending by bus address. rootPhys/topLevel/dump above
   * are the first window's.
   */
  windows?: TceWindowDebugInfo[];
}

/** One DMA window of an sPAPR PE and its TCE table (struct iommu_table), for m.debug. */
export interface TceWindowDebugInfo {
  /** TVE slot: 0 is the 32-bit window at bus address 0, 1 the dynamic (64-bit) one. */
  slot: number;
  /** First and last bus address the window translates. */
  start: bigint;
  last: bigint;
  /** it_page_shift: log2 of the TCE (IOMMU page) size. */
  pageShift: number;
  /** Table levels (1: a flat array of TCEs; more: indirect levels above it). */
  levels: number;
  /** it_offset: the first entry's number (start >> pageShift). */
  itOffset: number;
  /** it_size: entries the table holds. */
  itSize: number;
  /** it_level_size: entries per table at each level. */
  levelSize: number;
  rootPhys: bigint;
  topLevel: number;
  /**
   * Non-empty entries depth first from the root. `index` is the slot in its
   * level's table; the bus address of a TCE is start plus its position
   * (indices from the top, levelSize per level) times 2^pageShift.
   */
  dump: () => { level: number; index: number; tablePhys: bigint; raw: bigint; text: string }[];
}
