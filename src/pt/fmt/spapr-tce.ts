import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
/** The kernel PAGE_SHIFT (pages are 4 KiB everywhere in the model). */
import { PAGE_SHIFT as KERNEL_PAGE_SHIFT } from "../../uapi/linux.js";
import { bswap32, pfnFrom12, pfnHi12, pfnLo12 } from "../bits.js";
import type { PtConfig, PtFormatDef, PtFormatImpl } from "../types.js";
import { IOMMU_WRITE } from "../types.js";
import { paHex, sizeName } from "./common.js";

/*
 * PPC64 TCE tables (asm/tce.h; powernv/pci-ioda-tce.c). Each TCE is a
 * big-endian u64: TCE_PCI_READ 0x1, TCE_PCI_WRITE 0x2, host address in bits
 * page_shift..63. powernv always sets READ and adds WRITE unless the
 * direction is DMA_TO_DEVICE. An indirect (multi-level, IODA2) entry is the
 * next level's address | READ | WRITE.
 */
export const TCE_PCI_READ = 1;
export const TCE_PCI_WRITE = 2;
/** POWERNV_IOMMU_MAX_LEVELS */
export const TCE_MAX_LEVELS = 5;

export { bswap32 };

/** The table shape pnv_pci_ioda2_table_alloc_pages computes. */
export interface TceShape {
  pageShift: number;
  levels: number;
  /** log2 bytes of each level's table (level_shift). */
  levelShift: number;
  /** it_size: TCEs the window has. */
  itSize: number;
  /** it_offset: bus_offset >> page_shift. */
  itOffset: number;
  busOffsetPfn: number;
}

export function tceShape(cfg: PtConfig): TceShape {
  const pageShift = cfg.pageShift ?? 12;
  const levels = cfg.levels ?? 1;
  const win = cfg.windowSize ?? 0n;
  const bus = cfg.busOffset ?? 0n;
  if (levels < 1 || levels > TCE_MAX_LEVELS || !Number.isInteger(levels))
    fail(EINVAL, `spapr_tce: levels ${levels} is not 1..${TCE_MAX_LEVELS}`);
  if (win <= 0n || (win & (win - 1n)) !== 0n)
    fail(EINVAL, `spapr_tce: window size ${win} is not a power of 2`);
  if (pageShift < 12 || pageShift > 40) fail(EINVAL, `spapr_tce: page shift ${pageShift} not supported`);
  const winLg2 = win.toString(2).length - 1;
  const entriesShift = winLg2 - pageShift;
  if (entriesShift < 0) fail(EINVAL, "spapr_tce: window smaller than one IOMMU page");
  const bits = Math.ceil(entriesShift / levels);
  const levelShift = Math.max(bits + 3, KERNEL_PAGE_SHIFT);
  if ((levelShift - 3) * levels + pageShift >= 60)
    fail(EINVAL, "spapr_tce: (level_shift - 3) * levels + page_shift >= 60");
  if (bus & ((1n << BigInt(pageShift)) - 1n)) fail(EINVAL, "spapr_tce: bus offset not page aligned");
  const tableLg2 = Math.max(entriesShift + 3, KERNEL_PAGE_SHIFT);
  return {
    pageShift,
    levels,
    levelShift,
    itSize: 2 ** (tableLg2 - 3),
    itOffset: Number(bus >> BigInt(pageShift)),
    busOffsetPfn: Number(bus >> 12n),
  };
}

class SpaprTce implements PtFormatImpl {
  readonly name = "spapr_tce" as const;
  readonly bigEndian = true;
  readonly dirtyLo = 0;
  readonly dirtyHi = 0;
  readonly addrAt12 = false;
  lo = 0;
  hi = 0;
  attrLo = 0;
  attrHi = 0;
  constructor(private readonly shape: TceShape) {}
  isTable(_lo: number, _hi: number, level: number): boolean {
    return level > 0;
  }
  childPfn(lo: number, hi: number): number {
    return pfnFrom12(lo, hi);
  }
  leafShift(): number {
    return this.shape.pageShift - 12;
  }
  leafPfn(lo: number, hi: number): number {
    const p = pfnFrom12(lo, hi);
    return p - (p % 2 ** (this.shape.pageShift - 12));
  }
  encTable(child: number): void {
    this.lo = (pfnLo12(child) | TCE_PCI_READ | TCE_PCI_WRITE) >>> 0;
    this.hi = pfnHi12(child);
  }
  encLeaf(pfn: number): void {
    this.lo = (pfnLo12(pfn) | this.attrLo) >>> 0;
    this.hi = pfnHi12(pfn);
  }
  setProt(prot: number): number {
    this.attrLo = TCE_PCI_READ | (prot & IOMMU_WRITE ? TCE_PCI_WRITE : 0);
    return 0;
  }
  canHaveLeaf(level: number): boolean {
    return level === 0;
  }
  possibleSizes(level: number): readonly number[] {
    return level === 0 ? [this.shape.pageShift] : [];
  }
  describe(lo: number, hi: number, level: number): string {
    if (lo === 0 && hi === 0) return "empty";
    if (level > 0) return `INDIRECT -> ${paHex(this.childPfn(lo, hi))}`;
    const dir = ["NONE", "TO_DEVICE(R)", "FROM_DEVICE(W)", "BIDIRECTIONAL(RW)"][lo & 3];
    return `TCE ${sizeName(this.shape.pageShift)} pa=${paHex(this.leafPfn(lo, hi))} ${dir}`;
  }
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint> {
    const s = this.shape;
    return {
      tce_table_pa: BigInt(rootPfn) << 12n,
      it_offset: s.itOffset,
      it_size: s.itSize,
      it_page_shift: s.pageShift,
      it_level_size: 2 ** (s.levelShift - 3),
      it_indirect_levels: topLevel,
    };
  }
}

export const spaprTce: PtFormatDef & { shape(cfg: PtConfig): TceShape } = {
  name: "spapr_tce",
  granuleLg2: 12,
  maxVaLg2: 64,
  maxOaLg2: 52,
  maxTopLevel: TCE_MAX_LEVELS - 1,
  supported: [],
  forced: [],
  own: [],
  shape: tceShape,
  fmtInit(cfg, st) {
    if (st.features.size > 0) fail(EOPNOTSUPP, "spapr_tce: TCE tables have no generic_pt features");
    const s = tceShape(cfg);
    st.topLevel = s.levels - 1;
  },
  create(cfg) {
    return new SpaprTce(tceShape(cfg));
  },
};
