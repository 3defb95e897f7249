import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";

/** Printed for nr_overcommit_hugepages of an unlimited pool: ULONG_MAX, as `echo -1` would leave it. */
const ULONG_MAX = "18446744073709551615";

/**
 * struct hstate: the pool of one huge page size (mm/hugetlb.c).
 *
 * `nr` counts every huge page of this size the kernel holds (h->nr_huge_pages,
 * surplus included), `free` those on the free list, `resv` the free pages
 * promised to mappings (reservations not yet consumed by a fault), `surplus`
 * pages allocated past the persistent pool under nr_overcommit_hugepages.
 * Invariants: resv <= free <= nr, surplus <= nr.
 *
 * An unlimited pool (`limited` false, the model's default when the machine
 * is booted without `hugepages`) behaves as an infinite overcommit with no
 * reservations: every page comes from the frame allocator at first touch and
 * goes back there when freed, and mmap never fails for lack of huge pages.
 * Writing nr_hugepages or nr_overcommit_hugepages turns it into a limited pool.
 */
export class Hstate {
  limited = false;
  nr = 0;
  free = 0;
  resv = 0;
  surplus = 0;
  overcommit = 0;
  /** Head pfns of the free pages (the hugepage_freelists, one node). */
  private readonly freeList: number[] = [];
  /** Pages in use in an unlimited pool (they show as surplus). */
  private unlimitedInUse = 0;

  constructor(
    /** 9 (2 MiB) or 18 (1 GiB). */
    readonly order: 9 | 18,
    private readonly frames: FrameAllocator,
    private readonly faults: FaultInject,
    private readonly phys: PhysMem,
  ) {}

  /** "hugepages-2048kB" / "hugepages-1048576kB". */
  get name(): string {
    return `hugepages-${4 << this.order}kB`;
  }

  /** nr_huge_pages - surplus_huge_pages. */
  get persistent(): number {
    return this.nr - this.surplus;
  }

  /** A fresh page from the frame allocator (alloc_fresh_hugetlb_folio), or -1. */
  private fresh(site: string): number {
    return this.order === 9 ? this.frames.alloc2m(site) : this.frames.alloc1g(site);
  }

  private release(head: number): void {
    if (this.order === 9) this.frames.free2m(head);
    else this.frames.free1g(head);
  }

  /**
   * A page for a fault that holds no reservation (alloc_hugetlb_folio without
   * one): a free page not promised to anyone, else a surplus page while
   * surplus < nr_overcommit_hugepages; -1 otherwise (the fault's SIGBUS).
   */
  allocNoReserve(site: string): number {
    if (!this.limited) {
      const h = this.fresh(site);
      if (h >= 0) this.unlimitedInUse++;
      return h;
    }
    if (this.faults.hit(site)) return -1;
    if (this.free - this.resv > 0) return this.dequeue();
    return this.allocSurplus("alloc_surplus_hugetlb_folio");
  }

  /** A page for a fault that holds a reservation: it consumes it and cannot fail. */
  allocReserved(): number {
    if (!this.limited) return this.allocNoReserve("alloc_hugetlb_folio");
    if (this.resv <= 0 || this.free <= 0)
      throw new Error(`${this.name}: reserved allocation without a reservation`);
    this.resv--;
    return this.dequeue();
  }

  /** Give back a reservation a failed operation consumed (restore_reserve_on_error); its page is freed next. */
  restoreReserve(): void {
    if (this.limited) this.resv++;
  }

  private dequeue(): number {
    const head = this.freeList.pop();
    if (head === undefined) throw new Error(`${this.name}: free list empty with free=${this.free}`);
    this.free--;
    return head;
  }

  /** alloc_surplus_hugetlb_folio: a page in use past the persistent pool, or -1. */
  private allocSurplus(site: string): number {
    if (this.surplus >= this.overcommit) return -1;
    const head = this.fresh(site);
    if (head < 0) return -1;
    this.nr++;
    this.surplus++;
    return head;
  }

  /**
   * free_huge_folio: a surplus page goes back to the frame allocator (unless
   * it is needed to back reservations), any other joins the free list.
   */
  freePage(head: number): void {
    if (!this.limited) {
      this.unlimitedInUse--;
      this.release(head);
      return;
    }
    if (this.surplus > 0 && this.free >= this.resv) {
      this.nr--;
      this.surplus--;
      this.release(head);
      return;
    }
    // a free pool page holds no data: the next fault gets it zeroed, as clear_huge_page does
    const n = 2 ** this.order;
    for (let i = 0; i < n; i++) if (this.phys.isResident(head + i)) this.phys.discard(head + i);
    this.freeList.push(head);
    this.free++;
  }

  /**
   * hugetlb_acct_memory(h, delta > 0) / gather_surplus_pages: promise
   * `delta` more pages. Free pages not yet promised count first; the rest
   * are surplus pages allocated now (within nr_overcommit_hugepages) and put
   * on the free list. False (ENOMEM for the caller) with nothing changed.
   */
  reserve(delta: number): boolean {
    if (!this.limited || delta === 0) return true;
    const needed = this.resv + delta - this.free;
    if (needed > 0) {
      if (this.surplus + needed > this.overcommit) return false;
      const got: number[] = [];
      for (let i = 0; i < needed; i++) {
        const h = this.fresh("gather_surplus_pages");
        if (h < 0) {
          for (const g of got) this.release(g);
          return false;
        }
        got.push(h);
      }
      for (const g of got) this.freeList.push(g);
      this.nr += needed;
      this.surplus += needed;
      this.free += needed;
    }
    this.resv += delta;
    return true;
  }

  /**
   * hugetlb_acct_memory(h, -delta) / return_unused_surplus_pages: drop
   * `delta` unconsumed reservations; free surplus pages go back to the
   * frame allocator.
   */
  unreserve(delta: number): void {
    if (!this.limited || delta === 0) return;
    if (delta > this.resv) throw new Error(`${this.name}: unreserve ${delta} > resv ${this.resv}`);
    this.resv -= delta;
    this.shrinkSurplus();
  }

  /** Free surplus pages not needed for reservations go back to the frame allocator. */
  private shrinkSurplus(): void {
    while (this.surplus > 0 && this.free > this.resv) {
      this.release(this.dequeue());
      this.nr--;
      this.surplus--;
    }
  }

  /** Make the pool limited, keeping the pages in use (as surplus pages). */
  private limit(): void {
    if (this.limited) return;
    this.limited = true;
    this.nr = this.unlimitedInUse;
    this.surplus = this.unlimitedInUse;
    this.unlimitedInUse = 0;
    this.overcommit = 0;
  }

  /**
   * set_max_huge_pages(count): grow the persistent pool (surplus pages in
   * use become persistent first, then fresh pages until one cannot be
   * allocated), or shrink it (never below what is in use or reserved: free
   * pages go back to the frame allocator, pages in use become surplus).
   */
  setMaxHugePages(count: number): void {
    this.limit();
    while (this.surplus > 0 && count > this.persistent) this.surplus--;
    while (count > this.persistent) {
      const h = this.fresh("alloc_pool_huge_folio");
      if (h < 0) break;
      this.freeList.push(h);
      this.nr++;
      this.free++;
    }
    const minCount = this.resv + this.nr - this.free;
    const target = Math.max(count, minCount);
    while (this.persistent > target && this.free > this.resv) {
      this.release(this.dequeue());
      this.nr--;
    }
    while (count < this.persistent) this.surplus++;
  }

  setOvercommit(n: number): void {
    this.limit();
    this.overcommit = n;
  }

  /** The attribute files of /sys/kernel/mm/hugepages/<name>/. */
  attr(name: HstateAttr): string {
    if (!this.limited) {
      const u = this.unlimitedInUse;
      if (name === "nr_overcommit_hugepages") return `${ULONG_MAX}\n`;
      return `${name === "nr_hugepages" || name === "surplus_hugepages" ? u : 0}\n`;
    }
    const v =
      name === "nr_hugepages"
        ? this.nr
        : name === "free_hugepages"
          ? this.free
          : name === "resv_hugepages"
            ? this.resv
            : name === "surplus_hugepages"
              ? this.surplus
              : this.overcommit;
    return `${v}\n`;
  }

  /** Violations of the pool's own invariants. */
  check(): string[] {
    const out: string[] = [];
    const n = this.name;
    if (!this.limited) return this.unlimitedInUse < 0 ? [`${n}: negative pages in use`] : out;
    if (this.freeList.length !== this.free)
      out.push(`${n}: free=${this.free} but ${this.freeList.length} listed`);
    if (this.resv > this.free) out.push(`${n}: resv=${this.resv} > free=${this.free}`);
    if (this.free > this.nr) out.push(`${n}: free=${this.free} > nr=${this.nr}`);
    if (this.surplus > this.nr || this.surplus < 0) out.push(`${n}: surplus=${this.surplus}, nr=${this.nr}`);
    return out;
  }

  /** Pages of this size in use by mappings and pins (nr - free). */
  get inUse(): number {
    return this.limited ? this.nr - this.free : this.unlimitedInUse;
  }

  /** Head pfns on the free list (the invariant checker counts them as owned by the pool). */
  freeHeads(): readonly number[] {
    return this.freeList;
  }
}

export type HstateAttr =
  | "nr_hugepages"
  | "free_hugepages"
  | "resv_hugepages"
  | "surplus_hugepages"
  | "nr_overcommit_hugepages";

export const HSTATE_ATTRS: readonly HstateAttr[] = [
  "nr_hugepages",
  "nr_overcommit_hugepages",
  "free_hugepages",
  "resv_hugepages",
  "surplus_hugepages",
];

/** Writable attributes: kstrtoul of the text; EINVAL (22) when it is not a number. 0 or -errno. */
export function writeHstateAttr(h: Hstate, name: HstateAttr, text: string): number {
  if (name !== "nr_hugepages" && name !== "nr_overcommit_hugepages") return -22;
  const s = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (!/^\+?[0-9]+$/.test(s)) return -22;
  const n = Number(s.replace("+", ""));
  if (!Number.isSafeInteger(n)) return -34; // ERANGE
  if (name === "nr_hugepages") h.setMaxHugePages(n);
  else h.setOvercommit(n);
  return 0;
}

/**
 * The reservation map of a private hugetlb mapping (HPAGE_RESV_OWNER's
 * resv_map): the mapping reserved one page per huge page it spans at mmap;
 * `consumed` holds the huge-page indices (va / page size) whose reservation
 * a fault has used. Pieces of a split VMA share it; a forked child's copy
 * has none (hugetlb_dup_vma_private).
 */
export class PrivResv {
  readonly consumed = new KeyBits();
  constructor(readonly hs: Hstate) {}

  /** Release the reservations of huge pages [k0, k1) not consumed, and forget the range. */
  release(k0: number, k1: number): void {
    let unused = 0;
    for (let k = k0; k < k1; k++) {
      if (!this.consumed.delete(k)) unused++;
    }
    this.hs.unreserve(unused);
  }
}

/** Keys per KeyBits leaf (a Uint32Array of 128 words). */
const KEY_LEAF = 4096;

/**
 * A set of huge-page indices as bits in leaves of 4096 (a Map by index /
 * 4096, the last leaf cached): has/add/delete as a Set<number>'s, without
 * hashing, so a pin that consumes 32768 reservations costs no table growth.
 */
export class KeyBits {
  private readonly dir = new Map<number, Uint32Array>();
  private lastIdx = -1;
  private lastLeaf: Uint32Array | undefined;

  has(key: number): boolean {
    const l = this.leaf(Math.floor(key / KEY_LEAF));
    if (l === undefined) return false;
    const i = key % KEY_LEAF;
    return ((l[i >>> 5] >>> (i & 31)) & 1) === 1;
  }

  add(key: number): void {
    const idx = Math.floor(key / KEY_LEAF);
    let l = this.leaf(idx);
    if (l === undefined) {
      l = new Uint32Array(KEY_LEAF / 32);
      this.dir.set(idx, l);
      this.lastIdx = idx;
      this.lastLeaf = l;
    }
    const i = key % KEY_LEAF;
    l[i >>> 5] |= 1 << (i & 31);
  }

  /** Remove key; true when it was present (as Set.delete). */
  delete(key: number): boolean {
    const l = this.leaf(Math.floor(key / KEY_LEAF));
    if (l === undefined) return false;
    const i = key % KEY_LEAF;
    const bit = 1 << (i & 31);
    if ((l[i >>> 5] & bit) === 0) return false;
    l[i >>> 5] &= ~bit;
    return true;
  }

  private leaf(idx: number): Uint32Array | undefined {
    if (idx === this.lastIdx) return this.lastLeaf;
    const l = this.dir.get(idx);
    if (l !== undefined) {
      this.lastIdx = idx;
      this.lastLeaf = l;
    }
    return l;
  }
}
