import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import { PageIndex } from "../hw/page-index.js";
import type { PhysMem } from "../hw/phys-mem.js";
import { Hstate } from "./hugetlb-pool.js";
import type { PfnRuns } from "./pfn-runs.js";

/** Folio orders the model allocates: a 4 KiB page, a 2 MiB and a 1 GiB hugetlb folio. */
export type FolioOrder = 0 | 9 | 18;

const HUGE_2M_PAGES = 512;
const HUGE_1G_PAGES = 262144;

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
  /** 4 KiB folios: references by pfn (0 while only pins hold it) and pins (present only while > 0). */
  private readonly refs4k = new PageIndex();
  private readonly pins4k = new PageIndex();
  /*
   * Hugetlb folios by 2 MiB block (pfn / 512), at the head's block: the
   * order (9 or 18; 0 = no folio heads here), references from page tables
   * and page caches, and long-term pins over all its pages (a page pinned
   * twice counts twice). Typed arrays, so a folio costs no object and a
   * lookup no hashing (64 GiB of hugetlb is 32768 folios).
   */
  private readonly hOrder: Uint8Array;
  /** refs at 2b, pins at 2b+1: one cache line for both. */
  private readonly hCount: Float64Array;
  private nHuge = 0;
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
  /** The hugetlb pools: 2 MiB and 1 GiB (unlimited until configured). */
  readonly h2m: Hstate;
  readonly h1g: Hstate;

  constructor(
    readonly phys: PhysMem,
    readonly frames: FrameAllocator,
    readonly faults: FaultInject,
  ) {
    const blocks = Math.ceil(phys.nrFrames / HUGE_2M_PAGES);
    this.hOrder = new Uint8Array(blocks);
    this.hCount = new Float64Array(blocks * 2);
    this.h2m = new Hstate(9, frames, faults, phys);
    this.h1g = new Hstate(18, frames, faults, phys);
  }

  /** The pool of huge folios of `order`. */
  hstate(order: 9 | 18): Hstate {
    return order === 9 ? this.h2m : this.h1g;
  }

  /** A new zeroed folio holding one reference, or -1 (out of memory or an injected failure). */
  allocFolio(order: FolioOrder, site: string): number {
    if (order === 0) {
      const pfn = this.frames.alloc4k(site);
      if (pfn < 0) return -1;
      this.refs4k.set(pfn, 1);
      this.owned++;
      return pfn;
    }
    const head = (order === 9 ? this.h2m : this.h1g).allocNoReserve(site);
    if (head < 0) return -1;
    this.installHuge(head, order);
    return head;
  }

  /**
   * A new zeroed hugetlb folio for a fault that holds a reservation on the
   * pool of `order`: it consumes the reservation and never fails.
   */
  allocReservedFolio(order: 9 | 18): number {
    const head = (order === 9 ? this.h2m : this.h1g).allocReserved();
    if (head < 0) return -1;
    this.installHuge(head, order);
    return head;
  }

  private installHuge(head: number, order: 9 | 18): void {
    const b = head / HUGE_2M_PAGES;
    this.hOrder[b] = order;
    this.hCount[2 * b] = 1;
    this.hCount[2 * b + 1] = 0;
    this.nHuge++;
    if (order === 9) this.n2m++;
    else this.n1g++;
    this.owned += order === 9 ? HUGE_2M_PAGES : HUGE_1G_PAGES;
  }

  /** Take another reference on the folio headed at `head`. */
  get(head: number): void {
    const b = this.headBlock(head);
    if (b >= 0) {
      this.hCount[2 * b]++;
      return;
    }
    const r = this.refs4k.get(head);
    if (r <= 0) throw new Error(`PageTracker.get: pfn 0x${head.toString(16)} is not live`);
    this.refs4k.set(head, r + 1);
  }

  /** Drop a reference; the folio is freed when no reference and no pin remains. */
  put(head: number): void {
    const b = this.headBlock(head);
    if (b >= 0) {
      if (this.hCount[2 * b] <= 0)
        throw new Error(`PageTracker.put: folio 0x${head.toString(16)} has no reference`);
      this.hCount[2 * b]--;
      if (this.hCount[2 * b] === 0 && this.hCount[2 * b + 1] === 0) this.freeHuge(b);
      return;
    }
    const r = this.refs4k.get(head);
    if (r <= 0) throw new Error(`PageTracker.put: pfn 0x${head.toString(16)} is not referenced`);
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
      const b = this.hugeBlockOf(pfn);
      if (b >= 0) {
        const step = Math.min(n, this.hugeEnd(b) - pfn);
        this.hCount[2 * b + 1] += step;
        this.pinned += step;
        pfn += step;
        n -= step;
        continue;
      }
      if (this.refs4k.get(pfn) < 0) throw new Error(`PageTracker.pin: pfn 0x${pfn.toString(16)} is not live`);
      this.pins4k.set(pfn, Math.max(this.pins4k.get(pfn), 0) + 1);
      this.pinned++;
      pfn++;
      n--;
    }
  }

  /**
   * pinRange(pfn, n) for pages that all lie in the live folio headed at
   * `head` (the pin loop knows the folio it just found or allocated).
   */
  pinInFolio(head: number, pfn: number, n: number): void {
    const b = this.headBlock(head);
    if (b < 0) {
      this.pinRange(pfn, n);
      return;
    }
    this.hCount[2 * b + 1] += n;
    this.pinned += n;
  }

  /** Drop one pin from each of `n` pages starting at `pfn` (unpin_user_pages). */
  unpinRange(pfn: number, n: number): void {
    this.onUnpin?.(pfn, n);
    while (n > 0) {
      const b = this.hugeBlockOf(pfn);
      if (b >= 0) {
        const step = Math.min(n, this.hugeEnd(b) - pfn);
        if (this.hCount[2 * b + 1] < step)
          throw new Error(`PageTracker.unpin: folio 0x${(b * HUGE_2M_PAGES).toString(16)} is not pinned`);
        this.hCount[2 * b + 1] -= step;
        this.pinned -= step;
        if (this.hCount[2 * b + 1] === 0 && this.hCount[2 * b] === 0) this.freeHuge(b);
        pfn += step;
        n -= step;
        continue;
      }
      const p = this.pins4k.get(pfn);
      if (p <= 0) throw new Error(`PageTracker.unpin: pfn 0x${pfn.toString(16)} is not pinned`);
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
    const b = this.hugeBlockOf(pfn);
    if (b >= 0) return this.hCount[2 * b + 1];
    return Math.max(this.pins4k.get(pfn), 0);
  }

  isPinned(pfn: number): boolean {
    return this.pinCount(pfn) > 0;
  }

  /**
   * Every pinned page or hugetlb folio, by pfn: pins and the folio order
   * (0 for a 4 KiB page). Read-only, for m.debug.pinnedFrames().
   */
  pinnedFrames(): { pfn: number; pins: number; order: FolioOrder }[] {
    const out: { pfn: number; pins: number; order: FolioOrder }[] = [];
    this.pins4k.forEachIn(0, Number.MAX_SAFE_INTEGER, (pfn, pins) => {
      if (pins > 0) out.push({ pfn, pins, order: 0 });
    });
    if (this.nHuge > 0) {
      for (let b = 0; b < this.hOrder.length; b++) {
        const pins = this.hCount[2 * b + 1];
        if (this.hOrder[b] !== 0 && pins > 0)
          out.push({ pfn: b * HUGE_2M_PAGES, pins, order: this.hOrder[b] as FolioOrder });
      }
    }
    return out.sort((a, b) => a.pfn - b.pfn);
  }

  totalPinnedPages(): number {
    return this.pinned;
  }

  /** References (page tables, page caches) on the page's folio; 0 when free or only pinned. */
  refCount(pfn: number): number {
    const b = this.hugeBlockOf(pfn);
    if (b >= 0) return this.hCount[2 * b];
    return Math.max(this.refs4k.get(pfn), 0);
  }

  /** True while mm owns the page (referenced or pinned). */
  isLive(pfn: number): boolean {
    return this.hugeBlockOf(pfn) >= 0 || this.refs4k.has(pfn);
  }

  /** The folio holding pfn: its head and order, or undefined when mm does not own it. */
  folioOf(pfn: number): { head: number; order: FolioOrder } | undefined {
    const b = this.hugeBlockOf(pfn);
    if (b >= 0) return { head: b * HUGE_2M_PAGES, order: this.hOrder[b] as FolioOrder };
    return this.refs4k.has(pfn) ? { head: pfn, order: 0 } : undefined;
  }

  /** folioOf(pfn)?.head without an object: the head pfn, or -1 when mm does not own pfn. */
  folioHead(pfn: number): number {
    const b = this.hugeBlockOf(pfn);
    if (b >= 0) return b * HUGE_2M_PAGES;
    return this.refs4k.has(pfn) ? pfn : -1;
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

  /**
   * The hugetlb pools' invariants: each pool's own counters, and the pages
   * it counts in use are the hugetlb folios mm holds of that size.
   */
  hugetlbInvariants(): string[] {
    const out = [...this.h2m.check(), ...this.h1g.check()];
    if (this.h2m.inUse !== this.n2m)
      out.push(`hugepages-2048kB: ${this.h2m.inUse} in use but ${this.n2m} 2 MiB folios live`);
    if (this.h1g.inUse !== this.n1g)
      out.push(`hugepages-1048576kB: ${this.h1g.inUse} in use but ${this.n1g} 1 GiB folios live`);
    return out;
  }

  /** The 2 MiB block holding the head of pfn's hugetlb folio, or -1 when pfn is not in one. */
  private hugeBlockOf(pfn: number): number {
    if (this.nHuge === 0) return -1;
    const b = Math.floor(pfn / HUGE_2M_PAGES);
    if (!(b >= 0 && b < this.hOrder.length)) return -1;
    if (this.hOrder[b] === 9) return b;
    const g = b - (b % (HUGE_1G_PAGES / HUGE_2M_PAGES));
    return this.hOrder[g] === 18 ? g : -1;
  }

  /** The block of `head` when it is a hugetlb folio's head pfn, else -1. */
  private headBlock(head: number): number {
    if (this.nHuge === 0 || head % HUGE_2M_PAGES !== 0) return -1;
    const b = head / HUGE_2M_PAGES;
    return b >= 0 && b < this.hOrder.length && this.hOrder[b] !== 0 ? b : -1;
  }

  /** First pfn past the folio headed at block b. */
  private hugeEnd(b: number): number {
    return b * HUGE_2M_PAGES + (this.hOrder[b] === 9 ? HUGE_2M_PAGES : HUGE_1G_PAGES);
  }

  private free4k(pfn: number): void {
    this.refs4k.delete(pfn);
    this.owned--;
    this.frames.free4k(pfn);
  }

  private freeHuge(b: number): void {
    const head = b * HUGE_2M_PAGES;
    const order = this.hOrder[b];
    this.hOrder[b] = 0;
    this.nHuge--;
    if (order === 9) {
      this.n2m--;
      this.owned -= HUGE_2M_PAGES;
      this.h2m.freePage(head);
    } else {
      this.n1g--;
      this.owned -= HUGE_1G_PAGES;
      this.h1g.freePage(head);
    }
  }
}
