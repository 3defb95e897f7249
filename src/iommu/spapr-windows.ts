import { EINVAL, ENOENT, EOPNOTSUPP } from "../uapi/errno.js";
import type { IoPageTable, WalkResult } from "./io-pgtable.js";
import type { TceTable } from "./spapr-tce-table.js";
import type { Aperture, PtInfo } from "./types.js";

/**
 * A paging domain's page table on sPAPR: one TCE table per DMA window
 * (at most two), behind the IoPageTable interface the iommu core drives.
 * Each window keeps its own page size; a map_pages call must fall in one
 * window and use a size at least that window's TCE size (a larger one is
 * written as several TCEs), as the RFC's map_pages refuses anything else
 * with EINVAL.
 */
export class TceWindowSet implements IoPageTable {
  readonly format = "spapr_tce" as const;
  readonly unitLg2 = 12;
  readonly hasDirty = false;
  readonly pgsizesLg2: number[];
  readonly apertures: Aperture[];

  readonly tables: TceTable[];

  constructor(tables: TceTable[]) {
    this.tables = [...tables].sort((a, b) => (a.start < b.start ? -1 : 1));
    this.pgsizesLg2 = [...new Set(this.tables.map((t) => t.pageShift))].sort((a, b) => a - b);
    this.apertures = this.tables.map((t) => ({ start: t.start, last: t.last }));
  }

  writes(): number {
    // (the window list is fixed per set and each table's count only grows: the sum moves on any write)
    let n = 0;
    for (const t of this.tables) n += t.table.writes;
    return n;
  }

  /** The window holding 4 KiB units [unit, unit+units), if one does. */
  private windowOf(unit: number, units: number): TceTable | undefined {
    for (const t of this.tables) {
      const first = t.itOffset * 2 ** (t.pageShift - 12);
      const end = first + t.itSize * 2 ** (t.pageShift - 12);
      if (unit >= first && unit + units <= end) return t;
    }
    return undefined;
  }

  mapPages(
    iova: number,
    pa: number,
    pgLg2: number,
    count: number,
    prot: number,
    out: { mapped: number },
  ): number {
    const units = count * 2 ** (pgLg2 - 12);
    const t = this.windowOf(iova, units);
    if (t === undefined) return -EINVAL;
    if (pgLg2 < t.pageShift) return -EINVAL;
    const perTce = 2 ** (t.pageShift - 12);
    if (iova % perTce !== 0 || pa % perTce !== 0) return -EINVAL;
    const r = t.map(iova / perTce, pa, units / perTce, prot);
    if (r < 0) return r;
    out.mapped += units;
    return 0;
  }

  unmapPages(iova: number, pgLg2: number, count: number): number {
    const t = this.windowOf(iova, 1);
    if (t === undefined) return 0;
    const perTce = 2 ** (t.pageShift - 12);
    if (iova % perTce !== 0) return 0;
    // A request shorter than one TCE still clears the whole TCE (and says so).
    const units = Math.max(count * 2 ** (pgLg2 - 12), perTce);
    const first = iova / perTce;
    const tces = Math.min(Math.ceil(units / perTce), t.itOffset + t.itSize - first);
    // src/pt stops at the first empty TCE, as unmap_pages does at a hole.
    return t.table.unmapPages(iova, 2 ** t.pageShift, tces) / 4096;
  }

  iovaToPhys(iova: bigint): bigint {
    const t = this.tables.find((w) => w.contains(iova));
    if (t === undefined) return 0n;
    const mask = (1n << BigInt(t.pageShift)) - 1n;
    const e = t.get(Number(iova >> BigInt(t.pageShift)));
    if (e === undefined) return 0n;
    return (BigInt(e.pfn) << 12n) + (iova & mask);
  }

  readAndClearDirty(): number {
    return -EOPNOTSUPP;
  }

  setDirty(): number {
    return -ENOENT;
  }

  translate(iova: bigint, write: boolean): WalkResult {
    const t = this.tables.find((w) => w.contains(iova));
    if (t === undefined) return { ok: false, reason: "out-of-range" };
    return t.translate(iova, write);
  }

  leaves(visit: (iova: number, pa: number, len: number, prot: number) => void): void {
    for (const t of this.tables) t.leaves((unit, pfn, units) => visit(unit, pfn, units, 0));
  }

  info(): PtInfo {
    return this.tables[0].info();
  }

  frames(): number {
    let n = 0;
    for (const t of this.tables) n += t.frames();
    return n;
  }

  destroy(): void {
    for (const t of this.tables) t.destroy();
  }
}
