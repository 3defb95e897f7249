import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";
import type { PfnRuns } from "./pfn-runs.js";

/** Folio orders the model allocates: a 4 KiB page, a 2 MiB and a 1 GiB hugetlb folio. */
export type FolioOrder = 0 | 9 | 18;

const HUGE_2M_PAGES = 512;
const HUGE_1G_PAGES = 262144;

interface HugeFolio {
  order: 9 | 18;
  /** References from page tables and page caches. */
  refs: number;
  /** Long-term pins over all its pages (a page pinned twice counts twice). */
  pins: number;
}

export interface PageCounters {
  /** 4 KiB frames owned by mm (huge folios count all their pages). */
  ownedFrames: number;
  folios4k: number;
  folios2m: number;
  folios1g: number;
  /** Pinned pages, summed over every pin (a page pinned twice counts twice). */
  pinnedPages: number;
  /** MemFiles (memfds and the shmem/hugetlb files behind shared anonymous mappings) alive. */
  memFiles: number;
  /** VMAs of every process. */
  vmas: number;
}

/**
 * Machine-wide ownership of user memory (struct page / folio refcounts and
 * pincounts). A folio is freed to the FrameAllocator only when neither a
 * page table nor a page cache references it and no long-term pin holds it,
 * so a pinned page outlives munmap, truncation and process exit until it is
 * unpinned (the FOLL_PIN rule in mm/gup.c).
 *
 * 4 KiB frames are tracked per pfn. Hugetlb folios are tracked once per
 * folio, by head pfn: their pin count is the folio's (as folio->_pincount),
 * which `pinCount` reports for any page inside the folio.
 */
export class PageTracker {
  private readonly refs4k = new Map<number, number>();
  private readonly pins4k = new Map<number, number>();
  private readonly huge = new Map<number, HugeFolio>();
  private pinned = 0;
  private owned = 0;
  private n2m = 0;
  private n1g = 0;
  /** Live MemFile objects (maintained by MemFile). */
  memFiles = 0;
  /** Live VMAs over all processes (maintained by MmStruct). */
  liveVmas = 0;
  /**
   * Told of every unpin (pfn, count), so the DMA sanitizer can name a later
   * DMA to one of these frames a use after unmap rather than a stray address.
   */
  onUnpin: ((pfn: number, n: number) => void) | null = null;

  constructor(
    readonly phys: PhysMem,
    readonly frames: FrameAllocator,
    readonly faults: FaultInject,
  ) {}

  /** A new zeroed folio holding one reference, or -1 (out of memory or an injected failure). */
  allocFolio(order: FolioOrder, site: string): number {
    if (order === 0) {
      const pfn = this.frames.alloc4k(site);
      if (pfn < 0) return -1;
      this.refs4k.set(pfn, 1);
      this.owned++;
      return pfn;
    }
    const head = order === 9 ? this.frames.alloc2m(site) : this.frames.alloc1g(site);
    if (head < 0) return -1;
    this.huge.set(head, { order, refs: 1, pins: 0 });
    if (order === 9) this.n2m++;
    else this.n1g++;
    this.owned += order === 9 ? HUGE_2M_PAGES : HUGE_1G_PAGES;
    return head;
  }

  /** Take another reference on the folio headed at `head`. */
  get(head: number): void {
    const h = this.huge.get(head);
    if (h !== undefined) {
      h.refs++;
      return;
    }
    const r = this.refs4k.get(head);
    if (r === undefined || r === 0)
      throw new Error(`PageTracker.get: pfn 0x${head.toString(16)} is not live`);
    this.refs4k.set(head, r + 1);
  }

  /** Drop a reference; the folio is freed when no reference and no pin remains. */
  put(head: number): void {
    const h = this.huge.get(head);
    if (h !== undefined) {
      if (h.refs <= 0) throw new Error(`PageTracker.put: folio 0x${head.toString(16)} has no reference`);
      h.refs--;
      if (h.refs === 0 && h.pins === 0) this.freeHuge(head, h);
      return;
    }
    const r = this.refs4k.get(head);
    if (r === undefined || r === 0)
      throw new Error(`PageTracker.put: pfn 0x${head.toString(16)} is not referenced`);
    if (r > 1) {
      this.refs4k.set(head, r - 1);
      return;
    }
    if (this.pins4k.has(head)) {
      this.refs4k.set(head, 0);
      return;
    }
    this.free4k(head);
  }

  /** Pin `n` pages starting at `pfn`; they may cross folios but must all be live. */
  pinRange(pfn: number, n: number): void {
    while (n > 0) {
      const h = this.hugeOf(pfn);
      if (h !== undefined) {
        const [head, f] = h;
        const step = Math.min(n, head + (f.order === 9 ? HUGE_2M_PAGES : HUGE_1G_PAGES) - pfn);
        f.pins += step;
        this.pinned += step;
        pfn += step;
        n -= step;
        continue;
      }
      if (this.refs4k.get(pfn) === undefined)
        throw new Error(`PageTracker.pin: pfn 0x${pfn.toString(16)} is not live`);
      this.pins4k.set(pfn, (this.pins4k.get(pfn) ?? 0) + 1);
      this.pinned++;
      pfn++;
      n--;
    }
  }

  /** Drop one pin from each of `n` pages starting at `pfn` (unpin_user_pages). */
  unpinRange(pfn: number, n: number): void {
    this.onUnpin?.(pfn, n);
    while (n > 0) {
      const h = this.hugeOf(pfn);
      if (h !== undefined) {
        const [head, f] = h;
        const step = Math.min(n, head + (f.order === 9 ? HUGE_2M_PAGES : HUGE_1G_PAGES) - pfn);
        if (f.pins < step) throw new Error(`PageTracker.unpin: folio 0x${head.toString(16)} is not pinned`);
        f.pins -= step;
        this.pinned -= step;
        if (f.pins === 0 && f.refs === 0) this.freeHuge(head, f);
        pfn += step;
        n -= step;
        continue;
      }
      const p = this.pins4k.get(pfn);
      if (p === undefined) throw new Error(`PageTracker.unpin: pfn 0x${pfn.toString(16)} is not pinned`);
      this.pinned--;
      if (p > 1) this.pins4k.set(pfn, p - 1);
      else {
        this.pins4k.delete(pfn);
        if (this.refs4k.get(pfn) === 0) this.free4k(pfn);
      }
      pfn++;
      n--;
    }
  }

  pinRuns(runs: PfnRuns): void {
    for (let i = 0; i < runs.count; i++) this.pinRange(runs.pfn[i], runs.len[i]);
  }

  unpinRuns(runs: PfnRuns): void {
    for (let i = 0; i < runs.count; i++) this.unpinRange(runs.pfn[i], runs.len[i]);
  }

  /** Pins on the page (for a hugetlb page: on its folio, as folio_maybe_dma_pinned sees it). */
  pinCount(pfn: number): number {
    const h = this.hugeOf(pfn);
    if (h !== undefined) return h[1].pins;
    return this.pins4k.get(pfn) ?? 0;
  }

  isPinned(pfn: number): boolean {
    return this.pinCount(pfn) > 0;
  }

  totalPinnedPages(): number {
    return this.pinned;
  }

  /** References (page tables, page caches) on the page's folio; 0 when free or only pinned. */
  refCount(pfn: number): number {
    const h = this.hugeOf(pfn);
    if (h !== undefined) return h[1].refs;
    return this.refs4k.get(pfn) ?? 0;
  }

  /** True while mm owns the page (referenced or pinned). */
  isLive(pfn: number): boolean {
    return this.hugeOf(pfn) !== undefined || this.refs4k.has(pfn);
  }

  /** The folio holding pfn: its head and order, or undefined when mm does not own it. */
  folioOf(pfn: number): { head: number; order: FolioOrder } | undefined {
    const h = this.hugeOf(pfn);
    if (h !== undefined) return { head: h[0], order: h[1].order };
    return this.refs4k.has(pfn) ? { head: pfn, order: 0 } : undefined;
  }

  counters(): PageCounters {
    return {
      ownedFrames: this.owned,
      folios4k: this.refs4k.size,
      folios2m: this.n2m,
      folios1g: this.n1g,
      pinnedPages: this.pinned,
      memFiles: this.memFiles,
      vmas: this.liveVmas,
    };
  }

  private hugeOf(pfn: number): [number, HugeFolio] | undefined {
    if (this.huge.size === 0) return undefined;
    const h2 = pfn - (pfn % HUGE_2M_PAGES);
    const a = this.huge.get(h2);
    if (a !== undefined) return [h2, a];
    const h1 = pfn - (pfn % HUGE_1G_PAGES);
    const b = this.huge.get(h1);
    if (b !== undefined && b.order === 18) return [h1, b];
    return undefined;
  }

  private free4k(pfn: number): void {
    this.refs4k.delete(pfn);
    this.owned--;
    this.frames.free4k(pfn);
  }

  private freeHuge(head: number, f: HugeFolio): void {
    this.huge.delete(head);
    if (f.order === 9) {
      this.n2m--;
      this.owned -= HUGE_2M_PAGES;
      this.frames.free2m(head);
    } else {
      this.n1g--;
      this.owned -= HUGE_1G_PAGES;
      this.frames.free1g(head);
    }
  }
}
