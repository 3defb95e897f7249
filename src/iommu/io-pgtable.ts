import type { Aperture, DmaFaultReason, PtInfo } from "./types.js";

/**
 * What a paging domain needs from its page table: the driver-facing half of
 * generic_pt (pt_iommu_<fmt>_init + IOMMU_PT_DOMAIN_OPS + dirty ops) and the
 * hardware walker. Every address here is a number in units of the table's
 * smallest page (`unitLg2`), so 64-bit IOVAs stay exact.
 *
 * The tables themselves live in src/pt (page-table bytes in simulated
 * memory); src/iommu only adapts them (pt-table.ts).
 */
export interface IoPageTable {
  readonly format: PtInfo["format"];
  /** log2 of the smallest page in bytes: the unit of every address below. */
  readonly unitLg2: number;
  /** pgsize_bitmap as log2 byte sizes, ascending. */
  readonly pgsizesLg2: readonly number[];
  /** What the table can translate (domain geometry before any driver override). */
  readonly apertures: readonly Aperture[];
  /** Whether the format has a dirty bit (read_and_clear_dirty supported). */
  readonly hasDirty: boolean;

  /**
   * map_pages(iova, paddr, pgsize, pgcount): 0 or -errno. `out.mapped` is
   * increased by the units installed, also on failure (the core undoes them).
   */
  mapPages(
    iova: number,
    pa: number,
    pgLg2: number,
    count: number,
    prot: number,
    out: { mapped: number },
  ): number;
  /**
   * Optional batch of map_pages calls of one leaf each: `count` pages of
   * 2^pgLg2 bytes at consecutive IOVAs from `iova`, page i at pfns[from + i]
   * (4 KiB frame numbers). The same as mapPages(iova + i * size, pfn, pgLg2,
   * 1, prot) for each i until one fails: `out.mapped` is increased by the
   * pages (not units) installed; on failure returns that page's -errno and
   * the pages before it stay mapped (the core undoes them).
   */
  mapLeaves?(
    iova: number,
    pfns: Float64Array,
    from: number,
    count: number,
    pgLg2: number,
    prot: number,
    out: { mapped: number },
  ): number;
  /** A count that moves whenever the table's bytes may have changed (the invariant check's cache key). */
  writes(): number;
  /** unmap_pages: units removed (whole leaves; 0 when starting inside a leaf or at a hole). */
  unmapPages(iova: number, pgLg2: number, count: number): number;
  /** iova_to_phys: 0n for a hole. */
  iovaToPhys(iova: bigint): bigint;
  /**
   * read_and_clear_dirty over [iova, iova+len): calls `record(iova, len)`
   * for each dirty leaf's part in range; clears D unless `noClear`. 0 or -errno.
   */
  readAndClearDirty(
    iova: number,
    len: number,
    noClear: boolean,
    record: (iova: number, len: number) => void,
  ): number;
  /** Test hook (pt set_dirty, IOMMU_TEST_OP_DIRTY): 0, -ENOENT when unmapped. */
  setDirty(iova: number): number;

  /**
   * The hardware walker's view: reads only the table bytes. With `probe`
   * the walk leaves no trace (no A/D bits set), for checks and debuggers.
   */
  translate(iova: bigint, write: boolean, probe?: boolean): WalkResult;
  /**
   * Every leaf in IOVA order, found by walking the table bytes (for the
   * invariant check): unit addresses and the leaf's prot bits.
   */
  leaves(visit: (iova: number, pa: number, len: number, prot: number) => void): void;

  info(): PtInfo;
  /** The table level by level, raw entries with their meaning (for inspect tools); absent for tables kept outside simulated memory. */
  dump?(): PtDumpEntry[];
  /** Table frames held now (4 KiB frames). */
  frames(): number;
  /** Free every table frame. */
  destroy(): void;
}

export interface PtDumpEntry {
  level: number;
  index: number;
  tablePhys: bigint;
  raw: bigint;
  text: string;
}

export type WalkResult =
  | { ok: true; pa: number /** bytes left in this leaf from pa */; left: number; prot: number }
  | { ok: false; reason: DmaFaultReason };
