import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { IommuWalkCtx } from "../hw/iommu-walker.js";
import type { PhysMem } from "../hw/phys-mem.js";
import {
  EADDRINUSE,
  EINVAL,
  ENOENT,
  ENOMEM,
  ENXIO,
  EOPNOTSUPP,
  EOVERFLOW,
  ERANGE,
  fail,
} from "../uapi/errno.js";
import { bswap32, ctzNum, hex64, log2Floor, POW2, toBig } from "./bits.js";
import { effectiveSupported, isPtFeature, type PtFeature, ptFeature } from "./features.js";
import { amdv1 } from "./fmt/amdv1.js";
import { amdv1Mock } from "./fmt/amdv1-mock.js";
import { riscv } from "./fmt/riscv.js";
import { spaprTce, tceShape } from "./fmt/spapr-tce.js";
import { vtdss } from "./fmt/vtdss.js";
import { x8664 } from "./fmt/x86-64.js";
import {
  type FormatName,
  type InitState,
  IOMMU_DIRTY_NO_CLEAR,
  IOMMU_READ,
  IOMMU_WRITE,
  type PtConfig,
  type PtFormatDef,
  type PtFormatImpl,
  type PtGeometry,
} from "./types.js";

export const PT_FORMATS: Readonly<Record<FormatName, PtFormatDef>> = {
  amdv1,
  amdv1_mock: amdv1Mock,
  vtdss,
  x86_64: x8664,
  riscv,
  spapr_tce: spaprTce,
};

export interface PtEnv {
  mem: PhysMem;
  alloc: FrameAllocator;
}

/** What m.debug.hwpt() reports, and what the HW walker needs. */
export interface PtInfo {
  format: FormatName;
  rootPfn: number;
  rootPhys: bigint;
  /** generic_pt level of the root (AMD mode = topLevel + 1). */
  topLevel: number;
  /** Format-specific register values (DTE mode and root, VT-d aw, iosatp mode, TCE it_*). */
  hw: Record<string, number | bigint>;
}

/** The iommu_domain geometry and pgsize_bitmap the table offers. */
export interface PtDomainGeometry {
  apertureStart: bigint;
  apertureEnd: bigint;
  forceAperture: true;
  pgsizeBitmap: bigint;
}

export interface DumpEntry {
  level: number;
  index: number;
  /** PA of the table holding the entry. */
  tablePhys: bigint;
  raw: bigint;
  text: string;
}

/** Called for each dirty leaf piece: first IOVA pfn and number of pfns (table units). */
export type DirtyRecord = (iovaPfn: number, npfn: number) => void;

/** Called for each leaf by forEachLeaf: first IOVA pfn, first output pfn and pfns it spans (table units). */
export type LeafVisit = (iovaPfn: number, pfn: number, npfn: number) => void;

const ZERO_WORDS = new Uint32Array(1024);
/** Slots of the level-0 table cache used by iova_to_phys (a power of 2). */
const TLB_SLOTS = 1024;
/** The lookup cache of a table before its first lookup: tags -1 match no IOVA. */
const NO_TLB_TAG = new Float64Array(TLB_SLOTS).fill(-1);
const NO_TLB_GEN = new Uint32Array(TLB_SLOTS);
const NO_TLB_U: (Uint32Array | null)[] = new Array(TLB_SLOTS).fill(null);

/**
 * One generic_pt page table (drivers/iommu/generic_pt/iommu_pt.h): the walk,
 * range iteration, table allocation and freeing are here; the bit layouts
 * come from the format (PtFormatImpl). Tables are real frames in PhysMem.
 *
 * Addresses are page-frame numbers in the table's unit (`unitLg2`: the
 * format's granule, 4 KiB for all but amdv1_mock's 2 KiB; JS numbers below
 * 2^(64 - unitLg2)); table frames are 4 KiB PhysMem frames whatever the
 * unit. Inside, an IOVA pfn becomes a "relative" pfn rp: the index into the
 * table's own VA span (minus the TCE bus offset; the upper half of a
 * sign-extended space folded down under 2^vaBits).
 */
export class PageTable {
  /**
   * Calls that may have written the table (map, unmap, dirty bits,
   * destroy): the invariant check re-reads a table only when this moved.
   */
  writes = 0;
  readonly format: FormatName;
  readonly fmt: PtFormatImpl;
  readonly features: ReadonlySet<PtFeature>;
  readonly maxVaLg2: number;
  readonly maxOaLg2: number;
  readonly maxTopLevel: number;
  /** log2 bytes of the unit IOVA/PA pfns, sizes in pfns and shifts count in. */
  readonly unitLg2: number;
  /** Table frames held now (the kernel's NR_SECONDARY_PAGETABLE share). */
  tableFrames = 0;
  /** The rule behind the last negative return. */
  lastError = "";

  private readonly mem: PhysMem;
  private readonly alloc: FrameAllocator;
  private readonly site: string;
  private readonly be: boolean;
  private readonly g0: number;
  private readonly unitBytes: number;
  /** Units in 2^64 bytes: IOVA pfns stay below it. */
  private readonly pfnLimit: number;
  private readonly bits: number;
  private readonly imask: number;
  private readonly entries: number;
  private readonly tableFramesEach: number;
  private readonly shiftOf: number[];
  private readonly vaBits: number;
  private readonly oaLimitPfn: number;
  private readonly vaBasePfn: number;
  private readonly windowPfns: number;
  private readonly signExtend: boolean;
  private readonly dynamicTop: boolean;
  private readonly changeTop: ((rootPfn: number, topLevel: number) => void) | undefined;
  private readonly smeMask: bigint;
  /** sizeOk[lg2] = 1 when 2^lg2 is in pgsize_bitmap; levelOf[lg2] = the level holding it. */
  private readonly sizeOk = new Uint8Array(66);
  private readonly levelOf = new Int8Array(66).fill(-1);
  private pgsizeBitmap: bigint;
  private topPfn: number;
  private topLevel: number;
  private destroyed = false;

  // entry load scratch
  private eLo = 0;
  private eHi = 0;
  // walk state
  private wRp = 0;
  private wPa = 0;
  private wDone = 0;
  private wStop = false;
  private wLeafLevel = 0;
  private wLeafShift = 0;
  private wItems = 1;
  // last table used at the leaf level: a cached Uint32Array for the fast paths
  private cU32: Uint32Array | null = null;
  private cPfn = -1;
  private cLevel = -1;
  private cBase = 0;
  private cEnd = 0;
  /** Shift (4 KiB units) of the cached table's items; the fast paths need it <= 23. */
  private cShift = 0;
  /** Bytes of one item of the cached table (the only size the map fast path installs). */
  private cSize = 0;
  /** Pfns of one item of the cached table, minus one. */
  private cMask = 0;
  /** Tables may be cached (see setCache). */
  private readonly cacheOk: boolean;
  /** Leaf template (pfn 0) for lastProt at cLevel, when fmt.addrAt12; tplLevel -1 = stale. */
  private tplLo = 0;
  private tplHi = 0;
  private tplLevel = -1;
  /** prot whose attributes fmt holds now (set_prot runs once per distinct prot). */
  private lastProt = -1;
  /**
   * Level-0 table cache for lookups: slot = (iova pfn >> 9) & (TLB_SLOTS-1).
   * A JS-side shortcut over the bytes, never a second copy of them: freeing any
   * table bumps tlbGenNow, which invalidates every slot at once.
   */
  // (shared empty arrays until the first lookup fills a slot: a table that is
  // never looked up, e.g. each fuzzer HWPT, allocates none of its 20 KiB)
  private tlbTag = NO_TLB_TAG;
  private tlbGen = NO_TLB_GEN;
  private tlbU = NO_TLB_U;
  private tlbGenNow = 1;
  private readonly tlbOk: boolean;
  /** Pfns covered by the current top (pt_check_range against the top). */
  private coverTop = 0;
  /** No sign extension and no bus offset: rp === iova pfn. */
  private readonly plainVa: boolean;

  constructor(env: PtEnv, def: PtFormatDef, cfg: PtConfig, st: InitState, geo: PtGeometry) {
    this.mem = env.mem;
    this.alloc = env.alloc;
    this.site = cfg.allocSite ?? "pt_table_alloc";
    this.format = def.name;
    this.features = st.features;
    this.fmt = def.create(cfg, st.features, st);
    this.be = this.fmt.bigEndian;
    this.maxVaLg2 = geo.maxVaLg2;
    this.maxOaLg2 = geo.maxOaLg2;
    this.maxTopLevel = geo.maxTopLevel;
    this.unitLg2 = geo.unitLg2;
    this.unitBytes = POW2[geo.unitLg2];
    this.pfnLimit = POW2[64 - geo.unitLg2];
    this.g0 = geo.granuleShift;
    this.bits = geo.levelBits;
    this.entries = 1 << geo.levelBits;
    this.imask = this.entries - 1;
    this.tableFramesEach = 1 << (geo.tableLg2 - 12);
    this.shiftOf = [];
    for (let l = 0; l <= Math.max(geo.maxTopLevel, geo.topLevel) + 1; l++)
      this.shiftOf.push(this.g0 + this.bits * l);
    this.vaBits = geo.maxVaLg2 - geo.unitLg2;
    this.oaLimitPfn = POW2[geo.maxOaLg2 - geo.unitLg2];
    this.vaBasePfn = geo.vaBasePfn;
    this.windowPfns = geo.windowPfns;
    this.signExtend = geo.signExtend;
    this.dynamicTop = geo.dynamicTop;
    this.changeTop = cfg.changeTop;
    const enc = st.features.has("AMDV1_ENCRYPT_TABLES") || st.features.has("X86_64_AMD_ENCRYPT_TABLES");
    this.smeMask = enc ? (cfg.smeMask ?? 0n) : 0n;
    this.topLevel = geo.topLevel;
    this.plainVa = !geo.signExtend && geo.vaBasePfn === 0;
    this.tlbOk =
      this.plainVa && geo.granuleShift === 0 && geo.levelBits === 9 && !this.be && geo.tableLg2 === 12;
    this.cacheOk = this.plainVa && !this.be && geo.tableLg2 === 12 && geo.levelBits + 18 <= 32;
    this.coverTop = this.cover(this.topLevel);
    this.pgsizeBitmap = this.buildSizes();
    const top = this.allocTable();
    if (top < 0) fail(ENOMEM, `${this.format}: cannot allocate the top table`);
    this.topPfn = top;
  }

  // ---------------------------------------------------------------- info

  info(): PtInfo {
    return {
      format: this.format,
      rootPfn: this.topPfn,
      rootPhys: BigInt(this.topPfn) << 12n,
      topLevel: this.topLevel,
      hw: this.fmt.hwInfo(this.topPfn, this.topLevel),
    };
  }

  /** The context the HW walker needs: what a DTE / context entry / iosatp / TVE holds. */
  walkCtx(dirtyTracking = false): IommuWalkCtx {
    const ctx: IommuWalkCtx = {
      format: this.format,
      rootPfn: this.topPfn,
      topLevel: this.topLevel,
      unitLg2: this.unitLg2,
      vaLg2: this.maxVaLg2,
      signExtend: this.signExtend,
      dirtyTracking,
      smeMask: this.smeMask,
    };
    if (this.format === "spapr_tce") {
      const hw = this.fmt.hwInfo(this.topPfn, this.topLevel);
      ctx.tce = {
        pageShift: Number(hw.it_page_shift),
        levelBits: this.bits,
        itOffset: Number(hw.it_offset),
        itSize: Number(hw.it_size),
      };
    }
    return ctx;
  }

  geometry(): PtDomainGeometry {
    let start = 0n;
    let end: bigint;
    const u = BigInt(this.unitLg2);
    if (this.windowPfns > 0) {
      start = BigInt(this.vaBasePfn) << u;
      end = start + (BigInt(this.windowPfns) << u) - 1n;
    } else {
      let lg2 = this.maxVaLg2;
      if (!this.dynamicTop) lg2 = Math.min(lg2, this.shiftOf[this.topLevel] + this.bits + this.unitLg2);
      if (this.signExtend) lg2 -= 1;
      end = (1n << BigInt(lg2)) - 1n;
    }
    return { apertureStart: start, apertureEnd: end, forceAperture: true, pgsizeBitmap: this.pgsizeBitmap };
  }

  get pgsize(): bigint {
    return this.pgsizeBitmap;
  }

  /**
   * A driver overriding domain->pgsize_bitmap after init (the selftest mock
   * keeps 2 KiB, or 2 KiB | 1 MiB): map_pages' pt_compute_best_pgsize picks
   * leaf sizes from the domain's bitmap, so the table installs only these.
   * Sizes the format cannot hold are refused (EINVAL, nothing changed).
   */
  limitPgsizes(sizesLg2: readonly number[]): void {
    for (const s of sizesLg2)
      if (s < 0 || s > 65 || this.sizeOk[s] !== 1)
        fail(EINVAL, `${this.format}: page size 2^${s} is not in the table's pgsize_bitmap`);
    let bm = 0n;
    const keep = new Set(sizesLg2);
    for (let s = 0; s < this.sizeOk.length; s++) {
      if (this.sizeOk[s] === 1 && keep.has(s)) bm |= 1n << BigInt(s);
      else this.sizeOk[s] = 0;
    }
    this.pgsizeBitmap = bm;
  }

  /** Whether pt_feature() is true for this table (force-enabled features included). */
  hasFeature(f: PtFeature): boolean {
    return this.features.has(f);
  }

  // ---------------------------------------------------------------- map

  /**
   * map_pages: install leaves for [iovaPfn, +pgsize*pgcount) -> paPfn.
   * Returns bytes mapped, or -errno. Unlike the kernel op, a failure part way
   * unmaps what this call installed (what the iommu core does for its caller).
   */
  mapPages(iovaPfn: number, paPfn: number, pgsize: number, pgcount: number, prot: number): number {
    this.writes++;
    // Fast path: one leaf of the cached table's item size, into an empty slot.
    // Every check of the full path holds by construction: prot was accepted
    // before, the size is in the bitmap and aligned (so it is the best size),
    // and the cached table lies inside the checked range.
    if (pgcount === 1 && pgsize === this.cSize && prot === this.lastProt) {
      const mask = this.cMask;
      if (
        iovaPfn >= this.cBase &&
        iovaPfn < this.cEnd &&
        paPfn + mask < this.oaLimitPfn &&
        ((iovaPfn | paPfn) & mask) === 0
      ) {
        const u = this.cU32!;
        const w = ((iovaPfn - this.cBase) >>> this.cShift) << 1;
        if ((u[w] | u[w + 1]) === 0) {
          if (this.tplLevel !== this.cLevel) {
            const fmt = this.fmt;
            if (!fmt.addrAt12) {
              fmt.encLeaf(paPfn, this.cShift, this.cLevel);
              u[w + 1] = fmt.hi;
              u[w] = fmt.lo;
              return pgsize;
            }
            fmt.encLeaf(0, this.cShift, this.cLevel);
            // int32 so the fields stay small integers (the stored bits are the same)
            this.tplLo = fmt.lo | 0;
            this.tplHi = fmt.hi | 0;
            this.tplLevel = this.cLevel;
          }
          u[w + 1] = (paPfn < 4294967296 ? paPfn >>> 20 : paPfn / 1048576) | this.tplHi;
          u[w] = (paPfn << 12) | this.tplLo;
          return pgsize;
        }
      }
    }
    return this.mapSlow(iovaPfn, paPfn, pgsize, pgcount, prot);
  }

  /**
   * A run of `count` leaves of one size at consecutive IOVAs from iovaPfn,
   * leaf i mapping pfns[from + i]: exactly mapPages(iovaPfn + i * span,
   * pfns[from + i], pgsize, 1, prot) for i = 0, 1, ... until one fails.
   * Returns the leaves installed; when fewer than `count`, the next leaf's
   * mapPages failed with `lastMapErr` (-errno, `lastError` its rule) and
   * the leaves before it stay mapped (the caller owns their undo).
   * Leaves landing in the cached table are stored straight from the leaf
   * template; everything else goes through mapPages.
   */
  mapLeaves(
    iovaPfn: number,
    pfns: Float64Array,
    from: number,
    count: number,
    pgsize: number,
    prot: number,
  ): number {
    this.writes++;
    const span = pgsize / this.unitBytes;
    let iova = iovaPfn;
    let i = 0;
    while (i < count) {
      if (
        pgsize === this.cSize &&
        prot === this.lastProt &&
        iova >= this.cBase &&
        iova < this.cEnd &&
        (this.tplLevel === this.cLevel || this.leafTemplate())
      ) {
        const u = this.cU32!;
        const mask = this.cMask;
        const sh = this.cShift;
        const base = this.cBase;
        const end = this.cEnd;
        const lim = this.oaLimitPfn;
        const tLo = this.tplLo;
        const tHi = this.tplHi;
        while (i < count && iova < end) {
          const pa = pfns[from + i];
          if (pa + mask >= lim || ((iova | pa) & mask) !== 0) break;
          const w = ((iova - base) >>> sh) << 1;
          if ((u[w] | u[w + 1]) !== 0) break;
          u[w + 1] = (pa < 4294967296 ? pa >>> 20 : pa / 1048576) | tHi;
          u[w] = (pa << 12) | tLo;
          i++;
          iova += span;
        }
        if (i === count) break;
        if (iova >= end) continue;
      }
      // outside the cached table, or a leaf the shortcut does not take: the full map_pages
      // (mapSlow, not mapPages: its shortcut is the loop above, and the bench's direct
      // mapPages calls keep their own small-integer type feedback)
      const r = this.mapSlow(iova, pfns[from + i], pgsize, 1, prot);
      if (r < 0) {
        this.lastMapErr = r;
        return i;
      }
      i++;
      iova += span;
    }
    return count;
  }

  /** The -errno of the leaf mapLeaves stopped at. */
  lastMapErr = 0;

  /** Set the leaf template for the cached table (as mapPages' shortcut does); false when the format has none. */
  private leafTemplate(): boolean {
    const fmt = this.fmt;
    if (!fmt.addrAt12) return false;
    fmt.encLeaf(0, this.cShift, this.cLevel);
    this.tplLo = fmt.lo | 0;
    this.tplHi = fmt.hi | 0;
    this.tplLevel = this.cLevel;
    return true;
  }

  private mapSlow(iovaPfn: number, paPfn: number, pgsize: number, pgcount: number, prot: number): number {
    if (this.destroyed) throw new Error("page table used after destroy");
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0)
      return this.err(EINVAL, "map_pages: prot has neither IOMMU_READ nor IOMMU_WRITE");
    if (paPfn >= this.oaLimitPfn)
      return this.err(ERANGE, `map_pages: paddr >= 2^${this.maxOaLg2} (max_oasz_lg2)`);
    const len = pgsize * pgcount;
    if (len === 0) return this.err(EINVAL, "map_pages: length 0");
    const unit = this.unitLg2;
    const lenPfn = len / this.unitBytes;
    if (iovaPfn + lenPfn > this.pfnLimit)
      return this.err(EOVERFLOW, "map_pages: iova + len - 1 overflows 64 bits");
    if (prot !== this.lastProt) {
      this.lastProt = -1;
      this.tplLevel = -1;
      const pe = this.fmt.setProt(prot);
      if (pe < 0) return this.err(-pe, `${this.format} set_prot refused prot 0x${prot.toString(16)}`);
      this.lastProt = prot;
    }

    // pt_compute_best_pgsize: one leaf size for the whole call
    let lg2: number;
    if (pgcount === 1 && pgsize === this.unitBytes && this.sizeOk[unit] === 1) lg2 = unit;
    else {
      if (lenPfn < 1) return this.err(ENXIO, "map_pages: no page size fits");
      let m = log2Floor(Math.floor(lenPfn));
      const a = ctzNum(iovaPfn);
      const b = ctzNum(paPfn);
      if (a < m) m = a;
      if (b < m) m = b;
      lg2 = -1;
      for (let s = Math.min(m + unit, 65); s >= unit; s--) {
        if (this.sizeOk[s] === 1) {
          lg2 = s;
          break;
        }
      }
      if (lg2 < 0)
        return this.err(ENXIO, "map_pages: no size in pgsize_bitmap fits the alignment of iova/paddr");
    }
    const shift = lg2 - unit;
    const span = POW2[shift];
    if (lenPfn % span !== 0)
      return this.err(EINVAL, `map_pages: length is not a multiple of the chosen ${2 ** lg2}-byte leaf`);
    if (paPfn + lenPfn > this.oaLimitPfn)
      return this.err(ERANGE, `map_pages: paddr + len beyond 2^${this.maxOaLg2} (max_oasz_lg2)`);
    const rp = this.toRel(iovaPfn, lenPfn);
    if (rp < 0) return this.err(ERANGE, "map_pages: IOVA range outside the table's VA (pt_check_range)");
    const leafLevel = this.levelOf[lg2];
    const end = rp + lenPfn;

    if (end > this.coverTop || leafLevel > this.topLevel) {
      if (!this.dynamicTop) return this.err(ERANGE, "map_pages: IOVA range beyond the top table");
      const r = this.increaseTop(end, leafLevel);
      if (r < 0) return r;
    }
    this.wRp = rp;
    this.wPa = paPfn;
    this.wDone = 0;
    this.wLeafLevel = leafLevel;
    this.wLeafShift = shift;
    this.wItems = POW2[shift - this.shiftOf[leafLevel]];
    const r = this.mapWalk(this.topPfn, this.topLevel, end);
    if (r < 0) {
      const done = this.wDone;
      if (done > 0) this.unmapRel(rp, rp + done);
      return r;
    }
    return len;
  }

  /** mapPages with bigint addresses (unit alignment checked as the kernel does). */
  mapPagesBig(iova: bigint, paddr: bigint, pgsize: number | bigint, pgcount: number, prot: number): number {
    this.writes++;
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0)
      return this.err(EINVAL, "map_pages: prot has neither IOMMU_READ nor IOMMU_WRITE");
    if (paddr >> BigInt(this.maxOaLg2) !== 0n)
      return this.err(ERANGE, `map_pages: paddr >= 2^${this.maxOaLg2} (max_oasz_lg2)`);
    const len = BigInt(pgsize) * BigInt(pgcount);
    if (len === 0n) return this.err(EINVAL, "map_pages: length 0");
    if (iova + len - 1n > 0xffffffffffffffffn)
      return this.err(EOVERFLOW, "map_pages: iova + len - 1 overflows");
    const u = BigInt(this.unitLg2);
    if ((iova | paddr) & ((1n << u) - 1n))
      return this.err(ENXIO, "map_pages: iova/paddr not aligned to any page size");
    return this.mapPages(Number(iova >> u), Number(paddr >> u), Number(pgsize), pgcount, prot);
  }

  private mapWalk(tpfn: number, level: number, end: number): number {
    const fmt = this.fmt;
    const s = this.shiftOf[level];
    const span = POW2[s];
    let i = this.idx(this.wRp, level);
    if (level === this.wLeafLevel) {
      const n = this.wItems;
      const leafSpan = POW2[this.wLeafShift];
      while (this.wRp < end && i < this.entries) {
        const r = this.clearContig(tpfn, i, level, n);
        if (r < 0) return r;
        fmt.encLeaf(this.wPa, this.wLeafShift, level);
        const lo = fmt.lo;
        const hi = fmt.hi;
        for (let k = 0; k < n; k++) {
          const j = i + k;
          this.st(this.words(tpfn, j), (j & 511) << 1, lo, hi);
        }
        this.setCache(tpfn, level, this.wRp - i * span);
        i += n;
        this.wRp += leafSpan;
        this.wPa += leafSpan;
        this.wDone += leafSpan;
      }
      return 0;
    }
    while (this.wRp < end && i < this.entries) {
      const u = this.words(tpfn, i);
      const w = (i & 511) << 1;
      this.ld(u, w);
      let child: number;
      if ((this.eLo | this.eHi) === 0) {
        child = this.allocTable();
        if (child < 0) return this.err(ENOMEM, "map_pages: table allocation failed");
        fmt.encTable(child, level);
        this.st(u, w, fmt.lo, fmt.hi);
      } else if (!fmt.isTable(this.eLo, this.eHi, level)) {
        return this.err(EADDRINUSE, `map_pages: a level-${level} leaf covers the IOVA`);
      } else {
        child = fmt.childPfn(this.eLo, this.eHi);
      }
      const r = this.mapWalk(child, level - 1, end);
      if (r < 0) return r;
      i++;
    }
    return 0;
  }

  /**
   * clear_contig: the n target items must hold no leaf; tables that hold no
   * leaf at any depth are detached and freed so a larger page can replace them.
   */
  private clearContig(tpfn: number, i: number, level: number, n: number): number {
    let tables = 0;
    for (let k = 0; k < n; k++) {
      const j = i + k;
      this.ld(this.words(tpfn, j), (j & 511) << 1);
      if ((this.eLo | this.eHi) === 0) continue;
      if (level === 0 || !this.fmt.isTable(this.eLo, this.eHi, level))
        return this.err(EADDRINUSE, `map_pages: a leaf is already mapped at level ${level}`);
      if (this.hasLeaves(this.fmt.childPfn(this.eLo, this.eHi), level - 1))
        return this.err(EADDRINUSE, `map_pages: a lower table under level ${level} still maps pages`);
      tables++;
    }
    if (tables === 0) return 0;
    for (let k = 0; k < n; k++) {
      const j = i + k;
      const u = this.words(tpfn, j);
      const w = (j & 511) << 1;
      this.ld(u, w);
      if ((this.eLo | this.eHi) === 0) continue;
      const child = this.fmt.childPfn(this.eLo, this.eHi);
      this.st(u, w, 0, 0);
      this.freeTree(child, level - 1);
    }
    return 0;
  }

  private hasLeaves(tpfn: number, level: number): boolean {
    for (let i = 0; i < this.entries; i++) {
      this.ld(this.rwords(tpfn, i), (i & 511) << 1);
      if ((this.eLo | this.eHi) === 0) continue;
      if (level === 0 || !this.fmt.isTable(this.eLo, this.eHi, level)) return true;
      if (this.hasLeaves(this.fmt.childPfn(this.eLo, this.eHi), level - 1)) return true;
    }
    return false;
  }

  /** increase_top: add levels until [0, end) fits and the leaf level exists; publish once. */
  private increaseTop(end: number, leafLevel: number): number {
    let level = this.topLevel;
    let pfn = this.topPfn;
    const fresh: number[] = [];
    while (end > this.cover(level) || leafLevel > level) {
      const nl = level + 1;
      if (nl > this.maxTopLevel || this.shiftOf[nl] + this.unitLg2 >= this.maxVaLg2) {
        for (const f of fresh) this.freeTable(f);
        return this.err(ERANGE, "map_pages: the table cannot grow to cover the IOVA");
      }
      const t = this.allocTable();
      if (t < 0) {
        for (const f of fresh) this.freeTable(f);
        return this.err(ENOMEM, "map_pages: allocation of a new top table failed");
      }
      this.fmt.encTable(pfn, nl);
      this.st(this.mem.frameU32(t), 0, this.fmt.lo, this.fmt.hi);
      fresh.push(t);
      pfn = t;
      level = nl;
    }
    // driver_ops->change_top programs the HW root first; only then is top_of_table written
    this.changeTop?.(pfn, level);
    this.topPfn = pfn;
    this.topLevel = level;
    this.coverTop = this.cover(level);
    return 0;
  }

  // ---------------------------------------------------------------- unmap

  /**
   * unmap_pages: bytes unmapped. Removes whole leaves only, stops at a hole or
   * when the range starts inside a larger leaf, frees tables whose whole span
   * lies inside the range.
   */
  unmapPages(iovaPfn: number, pgsize: number, pgcount: number): number {
    this.writes++;
    if (pgcount === 1 && pgsize === this.cSize && iovaPfn >= this.cBase && iovaPfn < this.cEnd) {
      const u = this.cU32!;
      const w = ((iovaPfn - this.cBase) >>> this.cShift) << 1;
      if ((iovaPfn & this.cMask) === 0) {
        const lo = u[w];
        const hi = u[w + 1];
        if ((lo | hi) === 0) return 0;
        const lvl = this.cLevel;
        const fmt = this.fmt;
        if ((lvl === 0 || !fmt.isTable(lo, hi, lvl)) && fmt.leafShift(lo, hi, lvl) === this.cShift) {
          u[w] = 0;
          u[w + 1] = 0;
          return pgsize;
        }
      }
    }
    return this.unmapSlow(iovaPfn, pgsize, pgcount);
  }

  private unmapSlow(iovaPfn: number, pgsize: number, pgcount: number): number {
    if (this.destroyed) throw new Error("page table used after destroy");
    const len = pgsize * pgcount;
    const lenPfn = len / this.unitBytes;
    if (!(lenPfn >= 1) || !Number.isInteger(lenPfn)) return 0;
    const rp = this.toRel(iovaPfn, lenPfn);
    if (rp < 0 || rp + lenPfn > this.coverTop) return 0;
    return this.unmapRel(rp, rp + lenPfn) * this.unitBytes;
  }

  unmapPagesBig(iova: bigint, pgsize: number | bigint, pgcount: number): bigint {
    this.writes++;
    const u = BigInt(this.unitLg2);
    if (iova & ((1n << u) - 1n)) return 0n;
    return BigInt(this.unmapPages(Number(iova >> u), Number(pgsize), pgcount));
  }

  private unmapRel(rp: number, end: number): number {
    this.wRp = rp;
    this.wDone = 0;
    this.wStop = false;
    this.unmapWalk(this.topPfn, this.topLevel, end);
    return this.wDone;
  }

  private unmapWalk(tpfn: number, level: number, end: number): void {
    const fmt = this.fmt;
    const s = this.shiftOf[level];
    const span = POW2[s];
    let i = this.idx(this.wRp, level);
    while (this.wRp < end && i < this.entries) {
      const u = this.words(tpfn, i);
      const w = (i & 511) << 1;
      this.ld(u, w);
      if ((this.eLo | this.eHi) === 0) {
        this.wStop = true;
        return;
      }
      if (level === 0 || !fmt.isTable(this.eLo, this.eHi, level)) {
        const ls = fmt.leafShift(this.eLo, this.eHi, level);
        const lspan = POW2[ls];
        if (this.wRp % lspan !== 0) {
          this.wStop = true;
          return;
        }
        const n = POW2[ls - s];
        for (let k = 0; k < n; k++) {
          const j = i + k;
          this.st(this.words(tpfn, j), (j & 511) << 1, 0, 0);
        }
        this.setCache(tpfn, level, this.wRp - i * span);
        i += n;
        this.wRp += lspan;
        this.wDone += lspan;
        continue;
      }
      const itemStart = this.wRp - (this.wRp % span);
      const fully = this.wRp === itemStart && end >= itemStart + span;
      const child = fmt.childPfn(this.eLo, this.eHi);
      this.unmapWalk(child, level - 1, Math.min(end, itemStart + span));
      if (this.wStop) return;
      if (fully) {
        this.st(u, w, 0, 0);
        this.freeTable(child);
      }
      i++;
    }
  }

  // ---------------------------------------------------------------- lookups

  /** iova_to_phys as a pfn: the PA pfn, -1 when unmapped, -2 when outside the table's range. */
  iovaToPhysPfn(iovaPfn: number): number {
    if (iovaPfn >= this.cBase && iovaPfn < this.cEnd) {
      const u = this.cU32!;
      const w = ((iovaPfn - this.cBase) >>> this.cShift) << 1;
      const lo = u[w];
      const hi = u[w + 1];
      if ((lo | hi) === 0) return -1;
      const lvl = this.cLevel;
      const fmt = this.fmt;
      if (lvl === 0 || !fmt.isTable(lo, hi, lvl)) {
        const ls = fmt.leafShift(lo, hi, lvl);
        const pfn = fmt.leafPfn(lo, hi, lvl);
        if (ls === 0) return pfn;
        return pfn + (ls <= 31 ? iovaPfn & (POW2[ls] - 1) : iovaPfn % POW2[ls]);
      }
    }
    if (this.tlbOk) {
      const tag = iovaPfn < 4294967296 ? iovaPfn >>> 9 : Math.floor(iovaPfn / 512);
      const slot = tag & (TLB_SLOTS - 1);
      if (this.tlbTag[slot] === tag && this.tlbGen[slot] === this.tlbGenNow) {
        const u = this.tlbU[slot]!;
        const w = (iovaPfn & 511) << 1;
        const lo = u[w];
        const hi = u[w + 1];
        if ((lo | hi) === 0) return -1;
        const fmt = this.fmt;
        const ls = fmt.leafShift(lo, hi, 0);
        const pfn = fmt.leafPfn(lo, hi, 0);
        return ls === 0 ? pfn : pfn + (iovaPfn & (POW2[ls] - 1));
      }
    }
    return this.lookupWalk(iovaPfn);
  }

  private lookupWalk(iovaPfn: number): number {
    let rp = iovaPfn;
    if (!this.plainVa) rp = this.toRel(iovaPfn, 1);
    if (rp < 0 || rp >= this.coverTop) return -2;
    const fmt = this.fmt;
    const be = this.be;
    const mem = this.mem;
    const bits = this.bits;
    let tpfn = this.topPfn;
    let level = this.topLevel;
    for (;;) {
      const s = this.shiftOf[level];
      const i = s + bits <= 32 ? (rp >>> s) & this.imask : Math.floor(rp / POW2[s]) % this.entries;
      const u = mem.peekU32(tpfn + (i >>> 9));
      if (u === undefined) return -1;
      const w = (i & 511) << 1;
      const lo = be ? bswap32(u[w + 1]) : u[w];
      const hi = be ? bswap32(u[w]) : u[w + 1];
      if (level === 0 && this.tlbOk) {
        if (this.tlbTag === NO_TLB_TAG) {
          this.tlbTag = new Float64Array(TLB_SLOTS).fill(-1);
          this.tlbGen = new Uint32Array(TLB_SLOTS);
          this.tlbU = new Array(TLB_SLOTS).fill(null);
        }
        const tag = rp < 4294967296 ? rp >>> 9 : Math.floor(rp / 512);
        const slot = tag & (TLB_SLOTS - 1);
        this.tlbTag[slot] = tag;
        this.tlbGen[slot] = this.tlbGenNow;
        this.tlbU[slot] = u;
      }
      if ((lo | hi) === 0) return -1;
      if (level === 0 || !fmt.isTable(lo, hi, level)) {
        const ls = fmt.leafShift(lo, hi, level);
        const pfn = fmt.leafPfn(lo, hi, level);
        if (ls === 0) return pfn;
        return pfn + (ls <= 31 ? rp & (POW2[ls] - 1) : rp % POW2[ls]);
      }
      tpfn = fmt.childPfn(lo, hi);
      level--;
    }
  }

  /**
   * iova_to_phys with bigints: 0 when unmapped. Outside the current range it
   * returns the kernel's errno cast to phys_addr_t (-ERANGE as u64), the quirk
   * of iommu_pt.h 152c862c.
   */
  iovaToPhys(iova: bigint): bigint {
    const u = BigInt(this.unitLg2);
    const r = this.iovaToPhysPfn(Number(iova >> u));
    if (r === -1) return 0n;
    if (r === -2) return (1n << 64n) - BigInt(ERANGE);
    return (BigInt(r) << u) | (iova & ((1n << u) - 1n));
  }

  // ---------------------------------------------------------------- dirty

  /**
   * read_and_clear_dirty over [iovaPfn, +npfn): `record` gets each dirty
   * leaf's piece inside the range. Without IOMMU_DIRTY_NO_CLEAR the D bit is
   * cleared in every item of a dirty leaf. 0 or -errno.
   */
  readAndClearDirty(iovaPfn: number, npfn: number, flags: number, record: DirtyRecord): number {
    this.writes++;
    if (this.fmt.dirtyLo === 0 && this.fmt.dirtyHi === 0)
      return this.err(EOPNOTSUPP, `${this.format} has no dirty tracking`);
    const rp = this.toRel(iovaPfn, npfn);
    if (rp < 0 || npfn <= 0) return this.err(ERANGE, "read_and_clear_dirty: range outside the table");
    const end = Math.min(rp + npfn, this.cover(this.topLevel));
    this.dirtyWalk(this.topPfn, this.topLevel, rp, end, (flags & IOMMU_DIRTY_NO_CLEAR) === 0, record);
    return 0;
  }

  private dirtyWalk(
    tpfn: number,
    level: number,
    from: number,
    end: number,
    clear: boolean,
    rec: DirtyRecord,
  ) {
    const fmt = this.fmt;
    const s = this.shiftOf[level];
    const span = POW2[s];
    let pos = from;
    let i = this.idx(pos, level);
    while (pos < end && i < this.entries) {
      const itemStart = pos - (pos % span);
      this.ld(this.rwords(tpfn, i), (i & 511) << 1);
      if ((this.eLo | this.eHi) === 0) {
        pos = itemStart + span;
        i++;
        continue;
      }
      if (level > 0 && fmt.isTable(this.eLo, this.eHi, level)) {
        this.dirtyWalk(
          fmt.childPfn(this.eLo, this.eHi),
          level - 1,
          pos,
          Math.min(end, itemStart + span),
          clear,
          rec,
        );
        pos = itemStart + span;
        i++;
        continue;
      }
      const ls = fmt.leafShift(this.eLo, this.eHi, level);
      const n = POW2[ls - s];
      const first = i - (i % n);
      const leafStart = pos - (pos % POW2[ls]);
      let dirty = false;
      for (let k = 0; k < n; k++) {
        const j = first + k;
        this.ld(this.rwords(tpfn, j), (j & 511) << 1);
        if ((this.eLo & fmt.dirtyLo) !== 0 || (this.eHi & fmt.dirtyHi) !== 0) dirty = true;
      }
      const leafEnd = leafStart + POW2[ls];
      if (dirty) {
        const a = Math.max(leafStart, from);
        rec(this.fromRel(a), Math.min(leafEnd, end) - a);
        if (clear) {
          for (let k = 0; k < n; k++) {
            const j = first + k;
            const u = this.words(tpfn, j);
            const w = (j & 511) << 1;
            this.ld(u, w);
            this.st(u, w, this.eLo & ~fmt.dirtyLo, this.eHi & ~fmt.dirtyHi);
          }
        }
      }
      pos = leafEnd;
      i = first + n;
    }
  }

  /** The test hook set_dirty: mark the leaf item covering iovaPfn dirty. 0, -ENOENT or -EOPNOTSUPP. */
  setDirty(iovaPfn: number): number {
    this.writes++;
    if (this.fmt.dirtyLo === 0 && this.fmt.dirtyHi === 0)
      return this.err(EOPNOTSUPP, `${this.format} has no dirty tracking`);
    const loc = this.findLeaf(iovaPfn);
    if (loc === null) return this.err(ENOENT, "set_dirty: IOVA not mapped");
    const [u, w] = loc;
    this.ld(u, w);
    this.st(u, w, this.eLo | this.fmt.dirtyLo, this.eHi | this.fmt.dirtyHi);
    return 0;
  }

  /** The raw leaf entry covering iovaPfn and its level, or null (for tests and inspect). */
  leafEntry(iovaPfn: number): { level: number; raw: bigint; tablePfn: number; index: number } | null {
    const rp = this.toRel(iovaPfn, 1);
    if (rp < 0 || rp >= this.cover(this.topLevel)) return null;
    let tpfn = this.topPfn;
    let level = this.topLevel;
    for (;;) {
      const i = this.idx(rp, level);
      this.ld(this.rwords(tpfn, i), (i & 511) << 1);
      if ((this.eLo | this.eHi) === 0) return null;
      if (level === 0 || !this.fmt.isTable(this.eLo, this.eHi, level))
        return { level, raw: toBig(this.eLo, this.eHi), tablePfn: tpfn, index: i };
      tpfn = this.fmt.childPfn(this.eLo, this.eHi);
      level--;
    }
  }

  private findLeaf(iovaPfn: number): [Uint32Array, number] | null {
    const e = this.leafEntry(iovaPfn);
    if (e === null) return null;
    return [this.words(e.tablePfn, e.index), (e.index & 511) << 1];
  }

  // ---------------------------------------------------------------- dump, destroy

  /**
   * Every leaf, in IOVA order, read from the table bytes; a contiguous
   * leaf's replicas are one visit. Allocates nothing and skips table frames
   * never written, so a sparse many-frame table (a TCE window) costs a
   * lookup per 512 entries: the invariant checkers read every domain
   * through it after each fuzzer step.
   */
  forEachLeaf(visit: LeafVisit): void {
    if (this.destroyed) return;
    this.leafWalk(this.topPfn, this.topLevel, 0, visit);
  }

  private leafWalk(tpfn: number, level: number, base: number, visit: LeafVisit): void {
    const fmt = this.fmt;
    const s = this.shiftOf[level];
    const span = POW2[s];
    const entries = this.entries;
    let i = 0;
    while (i < entries) {
      const u = this.mem.peekU32(tpfn + (i >>> 9));
      const stop = Math.min(entries, (i | 511) + 1);
      if (u === undefined) {
        i = stop;
        continue;
      }
      while (i < stop) {
        // skip the empty entries in a tight loop over the frame's words
        let w = (i & 511) << 1;
        const wEnd = w + ((stop - i) << 1);
        while (
          w + 8 <= wEnd &&
          (u[w] | u[w + 1] | u[w + 2] | u[w + 3] | u[w + 4] | u[w + 5] | u[w + 6] | u[w + 7]) === 0
        )
          w += 8;
        while (w < wEnd && (u[w] | u[w + 1]) === 0) w += 2;
        i += (w - ((i & 511) << 1)) >> 1;
        if (w >= wEnd) break;
        this.ld(u, w);
        const lo = this.eLo;
        const hi = this.eHi;
        const pos = base + i * span;
        if (level > 0 && fmt.isTable(lo, hi, level)) {
          this.leafWalk(fmt.childPfn(lo, hi), level - 1, pos, visit);
          i++;
          continue;
        }
        const ls = fmt.leafShift(lo, hi, level);
        const n = ls > s ? POW2[ls - s] : 1;
        const first = i - (i % n);
        const len = POW2[ls];
        visit(this.fromRel(base + first * span), fmt.leafPfn(lo, hi, level), len);
        i = first + n;
      }
    }
  }

  /** Every non-empty entry, depth first from the root: raw value and decoded meaning. */
  dump(): DumpEntry[] {
    const out: DumpEntry[] = [];
    const walk = (tpfn: number, level: number) => {
      for (let i = 0; i < this.entries; i++) {
        // a table frame never written holds no entry (a sparse TCE window spans many frames)
        if ((i & 511) === 0 && this.mem.peekU32(tpfn + (i >>> 9)) === undefined) {
          i += 511;
          continue;
        }
        this.ld(this.rwords(tpfn, i), (i & 511) << 1);
        const lo = this.eLo;
        const hi = this.eHi;
        if ((lo | hi) === 0) continue;
        out.push({
          level,
          index: i,
          tablePhys: BigInt(tpfn) << 12n,
          raw: toBig(lo, hi),
          text: this.fmt.describe(lo, hi, level),
        });
        if (level > 0 && this.fmt.isTable(lo, hi, level)) walk(this.fmt.childPfn(lo, hi), level - 1);
      }
    };
    walk(this.topPfn, this.topLevel);
    return out;
  }

  /** dump() as text lines, indented by depth. */
  dumpText(): string {
    const lines = [
      `${this.format} root=0x${(this.topPfn * 4096).toString(16)} top_level=${this.topLevel} tables=${this.tableFrames}`,
    ];
    for (const e of this.dump()) {
      const [lo, hi] = [Number(e.raw & 0xffffffffn), Number(e.raw >> 32n)];
      lines.push(
        `${"  ".repeat(this.topLevel - e.level + 1)}L${e.level}[${e.index.toString().padStart(3, "0")}] ${hex64(lo, hi)} ${e.text}`,
      );
    }
    return lines.join("\n");
  }

  /** pt_iommu_deinit: free every table frame. Idempotent. */
  destroy(): void {
    this.writes++;
    if (this.destroyed) return;
    this.freeTree(this.topPfn, this.topLevel);
    this.destroyed = true;
    this.cBase = this.cEnd = 0;
    this.cSize = 0;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  // ---------------------------------------------------------------- internals

  private err(errno: number, reason: string): number {
    this.lastError = reason;
    return -errno;
  }

  /** 2^x pfns covered by a table at `level` (capped by the VA size). */
  private cover(level: number): number {
    const b = Math.min(this.shiftOf[level] + this.bits, this.vaBits);
    if (this.windowPfns > 0) return this.windowPfns;
    return POW2[b];
  }

  /** IOVA pfn range -> relative pfn, or -1 when pt_check_range fails. */
  private toRel(iovaPfn: number, n: number): number {
    if (this.signExtend) {
      const half = POW2[this.vaBits - 1];
      if (iovaPfn + n <= half) return iovaPfn;
      const lim = this.pfnLimit;
      if (iovaPfn >= lim - half && iovaPfn + n <= lim) return iovaPfn - lim + POW2[this.vaBits];
      return -1;
    }
    const rp = iovaPfn - this.vaBasePfn;
    if (rp < 0) return -1;
    const lim = this.windowPfns > 0 ? this.windowPfns : POW2[this.vaBits];
    if (rp + n > lim) return -1;
    return rp;
  }

  private fromRel(rp: number): number {
    if (this.signExtend && rp >= POW2[this.vaBits - 1]) return rp + this.pfnLimit - POW2[this.vaBits];
    return rp + this.vaBasePfn;
  }

  private idx(rp: number, level: number): number {
    const s = this.shiftOf[level];
    if (s + this.bits <= 32) return (rp >>> s) & this.imask;
    return Math.floor(rp / POW2[s]) % this.entries;
  }

  /** The frame holding entry i of a table (for writing). */
  private words(tpfn: number, i: number): Uint32Array {
    return this.mem.frameU32(tpfn + (i >>> 9));
  }

  /** The frame holding entry i of a table (for reading; zeros when untouched). */
  private rwords(tpfn: number, i: number): Uint32Array {
    return this.mem.peekU32(tpfn + (i >>> 9)) ?? ZERO_WORDS;
  }

  private ld(u: Uint32Array, w: number): void {
    if (this.be) {
      this.eLo = bswap32(u[w + 1]);
      this.eHi = bswap32(u[w]);
    } else {
      this.eLo = u[w];
      this.eHi = u[w + 1];
    }
  }

  private st(u: Uint32Array, w: number, lo: number, hi: number): void {
    if (this.be) {
      u[w] = bswap32(hi);
      u[w + 1] = bswap32(lo);
    } else {
      u[w + 1] = hi;
      u[w] = lo;
    }
  }

  /**
   * Make tpfn (at `level`, first relative pfn `base`) the cached table. Only
   * plain little-endian one-frame tables whose items are at most 1 GiB and
   * whose span ends below 2^31 pfns qualify, so every cached quantity is a
   * small integer (V8 keeps the fields untagged and the fast paths need no
   * float math or byte swaps); the rest always take the full paths.
   */
  private setCache(tpfn: number, level: number, base: number): void {
    if (this.cPfn === tpfn || !this.cacheOk) return;
    const sh = this.shiftOf[level];
    if (sh > 18 || base + this.entries * POW2[sh] > 0x7fffffff || tpfn > 0x7fffffff) return;
    this.cU32 = this.mem.frameU32(tpfn);
    this.cPfn = tpfn;
    this.cLevel = level;
    this.tplLevel = -1;
    this.cShift = sh;
    this.cMask = (1 << sh) - 1;
    this.cSize = (1 << sh) * this.unitBytes;
    this.cBase = base | 0;
    this.cEnd = (base + this.entries * (1 << sh)) | 0;
  }

  private allocTable(): number {
    const n = this.tableFramesEach;
    let pfn: number;
    if (n === 1) pfn = this.alloc.alloc4k(this.site);
    else if (n <= 512) pfn = this.alloc.alloc2m(this.site);
    else return -1;
    if (pfn < 0) return -1;
    this.tableFrames += n <= 1 ? 1 : 512;
    return pfn;
  }

  private freeTable(pfn: number): void {
    this.tlbGenNow++;
    if (pfn === this.cPfn) {
      this.cPfn = -1;
      this.cLevel = -1;
      this.cU32 = null;
      this.cBase = this.cEnd = 0;
      this.cSize = 0;
    }
    if (this.tableFramesEach === 1) {
      this.alloc.free4k(pfn);
      this.tableFrames--;
    } else {
      this.alloc.free2m(pfn);
      this.tableFrames -= 512;
    }
  }

  /** Free a table and every table below it. */
  private freeTree(tpfn: number, level: number): void {
    if (level > 0) {
      for (let i = 0; i < this.entries; i++) {
        this.ld(this.rwords(tpfn, i), (i & 511) << 1);
        if ((this.eLo | this.eHi) === 0) continue;
        if (this.fmt.isTable(this.eLo, this.eHi, level))
          this.freeTree(this.fmt.childPfn(this.eLo, this.eHi), level - 1);
      }
    }
    this.freeTable(tpfn);
  }

  /** pgsize_bitmap (get_info) and the level of each size. */
  private buildSizes(): bigint {
    const last = this.dynamicTop ? this.maxTopLevel : this.topLevel;
    let bm = 0n;
    for (let l = 0; l <= last; l++) {
      if (this.dynamicTop && this.shiftOf[l] + this.unitLg2 >= this.maxVaLg2) break;
      for (const s of this.fmt.possibleSizes(l)) {
        if (s >= this.maxOaLg2) continue;
        this.sizeOk[s] = 1;
        this.levelOf[s] = l;
        bm |= 1n << BigInt(s);
      }
    }
    return bm;
  }
}

// -------------------------------------------------------------------- init

/**
 * pt_iommu_<fmt>_init: the kernel's checks in the kernel's order
 * (iommu_pt.h). Throws KernelError with the kernel's errno.
 */
export function createPageTable(env: PtEnv, format: FormatName, cfg: PtConfig): PageTable {
  const def = PT_FORMATS[format];
  if (def === undefined) fail(EINVAL, `unknown page-table format ${format}`);
  const debug = cfg.debugGenericPt === true;
  const supported = effectiveSupported(def, debug);
  const features = new Set<PtFeature>();
  let unknown = "";
  for (const f of cfg.features ?? []) {
    if (isPtFeature(f)) features.add(f);
    else unknown = f;
  }
  const st: InitState = {
    features,
    supported,
    forced: def.forced,
    maxVaLg2: 0,
    maxOaLg2: 0,
    topLevel: 0,
    feature: (f) => ptFeature(f, features, supported, def.forced),
  };

  if (format === "spapr_tce") return createTce(env, cfg, st, unknown);

  // 1. VA/OA sizes
  if (cfg.hwMaxVaszLg2 > def.maxVaLg2 || !cfg.hwMaxVaszLg2 || !cfg.hwMaxOaszLg2)
    fail(
      EINVAL,
      `${format}: hw_max_vasz_lg2 ${cfg.hwMaxVaszLg2} / hw_max_oasz_lg2 ${cfg.hwMaxOaszLg2} invalid`,
    );
  // 2. copied from the cfg
  st.maxVaLg2 = cfg.hwMaxVaszLg2;
  st.maxOaLg2 = cfg.hwMaxOaszLg2;
  // 3. fmt_init
  def.fmtInit(cfg, st);
  // 4.
  if (cfg.hwMaxOaszLg2 > def.maxOaLg2)
    fail(EINVAL, `${format}: hw_max_oasz_lg2 ${cfg.hwMaxOaszLg2} > ${def.maxOaLg2}`);
  // 5. pt_init_common
  if (st.topLevel > def.maxTopLevel) fail(EINVAL, `${format}: top level ${st.topLevel} > ${def.maxTopLevel}`);
  const topCover = def.granuleLg2 + 9 * (st.topLevel + 1);
  if (st.topLevel === def.maxTopLevel || topCover >= st.maxVaLg2) features.delete("DYNAMIC_TOP");
  if (Math.min(topCover, st.maxVaLg2) >= 64) features.add("FULL_VA");
  for (const f of features)
    if (!supported.has(f)) fail(EOPNOTSUPP, `${format}: feature ${f} is not supported by this format`);
  if (unknown) fail(EOPNOTSUPP, `${format}: unknown feature ${unknown}`);
  if (!debug)
    for (const f of def.forced)
      if (!features.has(f)) fail(EOPNOTSUPP, `${format}: force-enabled feature ${f} was not requested`);
  st.maxOaLg2 = st.maxOaLg2 === 0 ? def.maxOaLg2 : Math.min(st.maxOaLg2, def.maxOaLg2);
  // 6.
  const dynamicTop = st.feature("DYNAMIC_TOP");
  if (dynamicTop && cfg.driverHasChangeTop === false)
    fail(EINVAL, `${format}: DYNAMIC_TOP needs driver_ops change_top and get_top_lock`);
  // 7.
  const se = st.feature("SIGN_EXTEND");
  if (se && (st.feature("FULL_VA") || dynamicTop))
    fail(EINVAL, `${format}: SIGN_EXTEND with FULL_VA or DYNAMIC_TOP`);
  // 8.
  if (st.feature("DMA_INCOHERENT") && cfg.hasIommuDevice === false)
    fail(EINVAL, `${format}: DMA_INCOHERENT without an iommu_device`);
  // 10. top table (in the constructor)
  const resolved = new Set<PtFeature>();
  for (const f of [...features, ...def.forced]) if (st.feature(f)) resolved.add(f);
  st.features = resolved;
  return new PageTable(env, def, cfg, st, {
    // the unit is the granule: every generic_pt format's level-0 item is one unit
    unitLg2: def.granuleLg2,
    granuleShift: 0,
    levelBits: 9,
    topLevel: st.topLevel,
    maxTopLevel: dynamicTop ? def.maxTopLevel : st.topLevel,
    maxVaLg2: st.maxVaLg2,
    maxOaLg2: st.maxOaLg2,
    signExtend: se,
    dynamicTop,
    vaBasePfn: 0,
    windowPfns: 0,
    tableLg2: 12,
  });
}

function createTce(env: PtEnv, cfg: PtConfig, st: InitState, unknown: string): PageTable {
  if (unknown) fail(EOPNOTSUPP, `spapr_tce: unknown feature ${unknown}`);
  spaprTce.fmtInit(cfg, st);
  const s = tceShape(cfg);
  const g0 = s.pageShift - 12;
  const bits = s.levelShift - 3;
  return new PageTable(env, spaprTce, cfg, st, {
    unitLg2: 12,
    granuleShift: g0,
    levelBits: bits,
    topLevel: s.levels - 1,
    maxTopLevel: s.levels - 1,
    maxVaLg2: Math.min(64, s.pageShift + bits * s.levels),
    maxOaLg2: 52,
    signExtend: false,
    dynamicTop: false,
    vaBasePfn: s.busOffsetPfn,
    windowPfns: s.itSize * 2 ** g0,
    tableLg2: s.levelShift,
  });
}
