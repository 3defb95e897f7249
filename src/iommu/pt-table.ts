import type { FrameAllocator } from "../hw/frame-alloc.js";
import { type IommuWalkCtx, IommuWalker } from "../hw/iommu-walker.js";
import type { PhysMem } from "../hw/phys-mem.js";
import { POW2 } from "../pt/bits.js";
import { createPageTable, type PageTable } from "../pt/engine.js";
import type { FormatName, PtConfig } from "../pt/types.js";
import { IOMMU_DIRTY_NO_CLEAR } from "../pt/types.js";
import type { IoPageTable, PtDumpEntry, WalkResult } from "./io-pgtable.js";
import { bitmapToLg2 } from "./pgsize.js";
import type { Aperture, PtInfo } from "./types.js";

/** Options of a driver's table beyond pt_iommu_<fmt>_init's cfg. */
export interface PtTableOptions {
  /**
   * Whether the IOMMU behind the table sets A/D bits on DMA when dirty
   * tracking is on (AMD DTE.HAD, VT-d SSADE). The selftest mock has no such
   * hardware: only IOMMU_TEST_OP_DIRTY (set_dirty) marks its entries.
   */
  hwDirty?: boolean;
  /**
   * The driver's domain->pgsize_bitmap when it overrides the table's (log2
   * sizes): map_pages then installs leaves of these sizes only.
   */
  pgsizesLg2?: readonly number[];
}

/**
 * A generic_pt table from src/pt behind the IoPageTable interface, with the
 * hardware walker (src/hw/iommu-walker.ts) for device DMA. Units are the
 * table's granule: 4 KiB, or 2 KiB for the selftest's amdv1_mock.
 */
export class PtTable implements IoPageTable {
  readonly unitLg2: number;
  readonly format: PtInfo["format"];
  readonly pgsizesLg2: number[];
  readonly apertures: Aperture[];
  readonly hasDirty: boolean;
  /** Set by the domain: the walker sets A/D bits (AMD DTE.HAD, VT-d SSADE). */
  dirtyTracking = false;
  private readonly walker: IommuWalker;
  private readonly unitBytes: number;
  private readonly hwDirty: boolean;

  writes(): number {
    return this.table.writes;
  }

  constructor(
    readonly table: PageTable,
    mem: PhysMem,
    opts: PtTableOptions = {},
  ) {
    this.unitLg2 = table.unitLg2;
    this.unitBytes = POW2[table.unitLg2];
    this.hwDirty = opts.hwDirty ?? true;
    this.format = table.format;
    if (opts.pgsizesLg2 !== undefined) table.limitPgsizes(opts.pgsizesLg2);
    const g = table.geometry();
    this.pgsizesLg2 = bitmapToLg2(g.pgsizeBitmap);
    this.apertures = [{ start: g.apertureStart, last: g.apertureEnd }];
    this.hasDirty = table.fmt.dirtyLo !== 0 || table.fmt.dirtyHi !== 0;
    this.walker = new IommuWalker(mem);
  }

  mapPages(
    iova: number,
    pa: number,
    pgLg2: number,
    count: number,
    prot: number,
    out: { mapped: number },
  ): number {
    const r = this.table.mapPages(iova, pa, POW2[pgLg2], count, prot);
    // src/pt undoes a partial map itself, so a failure leaves nothing mapped.
    if (r < 0) return r;
    out.mapped += r / this.unitBytes;
    return 0;
  }

  /** Only for 4 KiB-unit tables: `pfns` are 4 KiB frames (the domain checks unitLg2 === 12). */
  mapLeaves(
    iova: number,
    pfns: Float64Array,
    from: number,
    count: number,
    pgLg2: number,
    prot: number,
    out: { mapped: number },
  ): number {
    const n = this.table.mapLeaves(iova, pfns, from, count, POW2[pgLg2], prot);
    out.mapped += n;
    return n < count ? this.table.lastMapErr : 0;
  }

  unmapPages(iova: number, pgLg2: number, count: number): number {
    return this.table.unmapPages(iova, POW2[pgLg2], count) / this.unitBytes;
  }

  iovaToPhys(iova: bigint): bigint {
    return this.table.iovaToPhys(iova);
  }

  readAndClearDirty(
    iova: number,
    len: number,
    noClear: boolean,
    record: (iova: number, len: number) => void,
  ): number {
    return this.table.readAndClearDirty(iova, len, noClear ? IOMMU_DIRTY_NO_CLEAR : 0, record);
  }

  setDirty(iova: number): number {
    return this.table.setDirty(iova);
  }

  translate(iova: bigint, write: boolean, probe = false): WalkResult {
    const ctx: IommuWalkCtx = this.table.walkCtx(this.hwDirty && this.dirtyTracking && !probe);
    const u = BigInt(this.unitLg2);
    const off = Number(iova & ((1n << u) - 1n));
    const pfn = this.walker.translatePfn(ctx, Number(iova >> u), write);
    if (pfn < 0) {
      const f = this.walker.fault;
      const reason =
        f.reason === "not_present"
          ? "not-present"
          : f.reason === "permission"
            ? write
              ? "write-protected"
              : "read-protected"
            : f.reason === "out_of_range"
              ? "out-of-range"
              : "bad-entry";
      return { ok: false, reason };
    }
    return { ok: true, pa: pfn * this.unitBytes + off, left: this.unitBytes - off, prot: 0 };
  }

  leaves(visit: (iova: number, pa: number, len: number, prot: number) => void): void {
    this.table.forEachLeaf((iova, pfn, len) => visit(iova, pfn, len, 0));
  }

  info(): PtInfo {
    const i = this.table.info();
    return { format: i.format, rootPhys: i.rootPhys, topLevel: i.topLevel };
  }

  dump(): PtDumpEntry[] {
    return this.table.dump();
  }

  frames(): number {
    return this.table.isDestroyed ? 0 : this.table.tableFrames;
  }

  destroy(): void {
    this.table.destroy();
  }
}

/** pt_iommu_<fmt>_init for a driver: throws KernelError (ENOMEM when the top table cannot be allocated). */
export function newPtTable(
  mem: PhysMem,
  alloc: FrameAllocator,
  format: FormatName,
  cfg: PtConfig,
  opts?: PtTableOptions,
): PtTable {
  return new PtTable(createPageTable({ mem, alloc }, format, cfg), mem, opts);
}
