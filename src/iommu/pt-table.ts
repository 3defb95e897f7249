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

const PAGE = 4096;

/**
 * A generic_pt table from src/pt behind the IoPageTable interface, with the
 * hardware walker (src/hw/iommu-walker.ts) for device DMA. Units are 4 KiB
 * pages: every format src/pt builds has a 4 KiB granule.
 */
export class PtTable implements IoPageTable {
  readonly unitLg2 = 12;
  readonly format: PtInfo["format"];
  readonly pgsizesLg2: number[];
  readonly apertures: Aperture[];
  readonly hasDirty: boolean;
  /** Set by the domain: the walker sets A/D bits (AMD DTE.HAD, VT-d SSADE). */
  dirtyTracking = false;
  private readonly walker: IommuWalker;

  constructor(
    readonly table: PageTable,
    mem: PhysMem,
  ) {
    this.format = table.format;
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
    out.mapped += r / PAGE;
    return 0;
  }

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
    return this.table.unmapPages(iova, POW2[pgLg2], count) / PAGE;
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
    const ctx: IommuWalkCtx = this.table.walkCtx(this.dirtyTracking && !probe);
    const off = Number(iova & 0xfffn);
    const pfn = this.walker.translatePfn(ctx, Number(iova >> 12n), write);
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
    return { ok: true, pa: pfn * PAGE + off, left: PAGE - off, prot: 0 };
  }

  leaves(visit: (iova: number, pa: number, len: number, prot: number) => void): void {
    const fmt = this.table.fmt;
    // dump() lists entries depth first; rebuild each leaf's IOVA from the
    // index path (9 bits a level over a 4 KiB granule) and skip the
    // replicas of contiguous leaves.
    const path: number[] = [];
    let nextFree = 0;
    for (const e of this.table.dump()) {
      path[e.level] = e.index;
      const lo = Number(e.raw & 0xffffffffn);
      const hi = Number(e.raw >> 32n);
      if (e.level > 0 && fmt.isTable(lo, hi, e.level)) continue;
      let iova = 0;
      const top = this.table.info().topLevel;
      for (let l = top; l >= e.level; l--) iova += (path[l] ?? 0) * 2 ** (9 * l);
      const shift = fmt.leafShift(lo, hi, e.level);
      const len = 2 ** shift;
      const start = iova - (iova % len);
      if (start < nextFree) continue;
      nextFree = start + len;
      visit(start, fmt.leafPfn(lo, hi, e.level), len, 0);
    }
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
export function newPtTable(mem: PhysMem, alloc: FrameAllocator, format: FormatName, cfg: PtConfig): PtTable {
  return new PtTable(createPageTable({ mem, alloc }, format, cfg), mem);
}
