import type { FrameAllocator } from "../hw/frame-alloc.js";
import { type IommuWalkCtx, IommuWalker } from "../hw/iommu-walker.js";
import type { PhysMem } from "../hw/phys-mem.js";
import type { TceWindowDebugInfo } from "../kernel/kctx.js";
import { createPageTable, type PageTable } from "../pt/engine.js";
import { type TceShape, tceShape } from "../pt/fmt/spapr-tce.js";
import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import { PAGE_SIZE as PAGE } from "../uapi/linux.js";
import type { WalkResult } from "./io-pgtable.js";
import type { PtInfo } from "./types.js";

/** A TCE as read back from the table bytes: host page (4 KiB pfn of its start) and direction bits. */
export interface TceEntry {
  pfn: number;
  /** IOMMU_READ | IOMMU_WRITE as the TCE's TCE_PCI_READ / TCE_PCI_WRITE bits say. */
  prot: number;
}

/**
 * struct iommu_table: one DMA window's TCE table (powernv IODA2 layout,
 * pnv_pci_ioda2_table_alloc_pages), its bytes in simulated memory through
 * src/pt's spapr_tce format. Entries are numbered as the kernel numbers
 * them: entry = bus address >> it_page_shift, valid in
 * [it_offset, it_offset + it_size).
 *
 * Reads go through the hardware walker (the TVE's view), never through a
 * side map, so what a device sees is what the bytes say.
 */
export class TceTable {
  readonly pageShift: number;
  readonly levels: number;
  /** it_offset: first entry (bus start >> page_shift). */
  readonly itOffset: number;
  /** it_size: entries the table holds (>= the requested window: a level is at least a page). */
  readonly itSize: number;
  /** First bus address of the window. */
  readonly start: bigint;
  /** Bytes the window translates: it_size << page_shift. */
  readonly size: bigint;
  private readonly shape: TceShape;
  private readonly walker: IommuWalker;
  /** 4 KiB units per TCE. */
  private readonly unitsPerTce: number;

  readonly table: PageTable;
  /** Owned by a paging domain (counted in ptFrames through the domain). */
  domainOwned = false;

  /**
   * pnv_pci_ioda2_table_alloc_pages: throws KernelError (EINVAL for a shape
   * the platform refuses, ENOMEM when a level cannot be allocated).
   */
  constructor(
    mem: PhysMem,
    alloc: FrameAllocator,
    busOffset: bigint,
    pageShift: number,
    windowSize: bigint,
    levels: number,
  ) {
    const cfg = { hwMaxVaszLg2: 64, hwMaxOaszLg2: 52, pageShift, windowSize, levels, busOffset };
    this.shape = tceShape(cfg);
    this.table = createPageTable({ mem, alloc }, "spapr_tce", { ...cfg, allocSite: "spapr_tce_table" });
    this.pageShift = pageShift;
    this.levels = levels;
    this.itOffset = this.shape.itOffset;
    this.itSize = this.shape.itSize;
    this.start = busOffset;
    this.size = BigInt(this.itSize) << BigInt(pageShift);
    this.walker = new IommuWalker(mem);
    this.unitsPerTce = 2 ** (pageShift - 12);
  }

  /** Last bus address of the window. */
  get last(): bigint {
    return this.start + this.size - 1n;
  }

  /** it_level_size: entries per level table. */
  get levelSize(): number {
    return 2 ** (this.shape.levelShift - 3);
  }

  /** Does the window hold [iova, iova+len)? */
  contains(iova: bigint, len = 1n): boolean {
    return iova >= this.start && iova + len - 1n <= this.last;
  }

  /**
   * Install `count` TCEs from `entry` for host pages starting at 4 KiB pfn
   * `pfn` (contiguous). 0 or -errno; src/pt undoes a partial install.
   */
  map(entry: number, pfn: number, count: number, prot: number): number {
    const r = this.table.mapPages(entry * this.unitsPerTce, pfn, 2 ** this.pageShift, count, prot);
    return Math.min(r, 0);
  }

  /** The TCE at `entry` as the hardware reads it, or undefined when empty. */
  get(entry: number): TceEntry | undefined {
    const ctx = this.walkCtx();
    const unit = entry * this.unitsPerTce;
    const rd = this.walker.translatePfn(ctx, unit, false);
    const wr = this.walker.translatePfn(ctx, unit, true);
    if (rd < 0 && wr < 0) return undefined;
    return {
      pfn: rd >= 0 ? rd : wr,
      prot: (rd >= 0 ? IOMMU_READ : 0) | (wr >= 0 ? IOMMU_WRITE : 0),
    };
  }

  /** Clear one TCE (iommu_clear_tce); returns what it held. */
  clear(entry: number): TceEntry | undefined {
    const old = this.get(entry);
    if (old !== undefined) this.table.unmapPages(entry * this.unitsPerTce, 2 ** this.pageShift, 1);
    return old;
  }

  /**
   * Entries in [first, first+count) that hold a TCE, ascending. Small ranges
   * probe entry by entry; large ones walk the tree (holes cost nothing).
   */
  present(first: number, count: number): number[] {
    const out: number[] = [];
    if (count <= 4096) {
      for (let e = first; e < first + count; e++) if (this.get(e) !== undefined) out.push(e);
      return out;
    }
    this.leaves((unit) => {
      const e = unit / this.unitsPerTce;
      if (e >= first && e < first + count) out.push(e);
    });
    return out;
  }

  /** The walker's translation of one address (the device's view). */
  translate(iova: bigint, write: boolean): WalkResult {
    const off = Number(iova & 0xfffn);
    const pfn = this.walker.translatePfn(this.walkCtx(), Number(iova >> 12n), write);
    if (pfn < 0) {
      const f = this.walker.fault.reason;
      const reason =
        f === "not_present"
          ? "not-present"
          : f === "permission"
            ? write
              ? "write-protected"
              : "read-protected"
            : f === "out_of_range"
              ? "out-of-range"
              : "bad-entry";
      return { ok: false, reason };
    }
    return { ok: true, pa: pfn * PAGE + off, left: PAGE - off, prot: 0 };
  }

  /**
   * Every TCE, ascending, found by walking the bytes: first 4 KiB unit of
   * its bus address, first host pfn, units it spans.
   */
  leaves(visit: (unit: number, pfn: number, units: number) => void): void {
    // every TCE is a one-entry leaf of unitsPerTce units at bus unit (it_offset + entry) * unitsPerTce
    this.table.forEachLeaf(visit);
  }

  walkCtx(): IommuWalkCtx {
    return this.table.walkCtx(false);
  }

  /** m.debug's view of the window in TVE slot `slot`: its shape and the table's entries. */
  debugInfo(slot: number): TceWindowDebugInfo {
    const i = this.table.info();
    return {
      slot,
      start: this.start,
      last: this.last,
      pageShift: this.pageShift,
      levels: this.levels,
      itOffset: this.itOffset,
      itSize: this.itSize,
      levelSize: this.levelSize,
      rootPhys: i.rootPhys,
      topLevel: i.topLevel,
      dump: () => (this.table.isDestroyed ? [] : this.table.dump()),
    };
  }

  info(): PtInfo {
    const i = this.table.info();
    return { format: "spapr_tce", rootPhys: i.rootPhys, topLevel: i.topLevel };
  }

  frames(): number {
    return this.table.isDestroyed ? 0 : this.table.tableFrames;
  }

  get destroyed(): boolean {
    return this.table.isDestroyed;
  }

  destroy(): void {
    if (!this.table.isDestroyed) this.table.destroy();
  }
}
