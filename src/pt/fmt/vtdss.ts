import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import { pfnFrom12, pfnHi12, pfnLo12 } from "../bits.js";
import type { InitState, PtFormatDef, PtFormatImpl } from "../types.js";
import { IOMMU_READ, IOMMU_WRITE } from "../types.js";
import { paHex, sizeName } from "./common.js";

/*
 * Intel VT-d second stage (fmt/vtdss.h; VT-d spec 3.7, 9.8). No present bit:
 * an entry is empty only when all 64 bits are 0. R 0, W 1, PS 7 (leaves at
 * levels 1-2), A 8, D 9, SNP 11, address 51:12.
 */
export const VTD_R = 1;
export const VTD_W = 2;
export const VTD_PS = 1 << 7;
export const VTD_A = 1 << 8;
export const VTD_D = 1 << 9;
export const VTD_SNP = 1 << 11;

class Vtdss implements PtFormatImpl {
  readonly name = "vtdss" as const;
  readonly bigEndian = false;
  readonly dirtyLo = VTD_D;
  readonly dirtyHi = 0;
  readonly addrAt12 = true;
  lo = 0;
  hi = 0;
  attrLo = 0;
  attrHi = 0;
  constructor(
    private readonly snp: boolean,
    private readonly forceWriteable: boolean,
  ) {}
  isTable(lo: number, _hi: number, level: number): boolean {
    return level > 0 && (lo & VTD_PS) === 0;
  }
  childPfn(lo: number, hi: number): number {
    return pfnFrom12(lo, hi);
  }
  leafShift(_lo: number, _hi: number, level: number): number {
    return 9 * level;
  }
  leafPfn(lo: number, hi: number): number {
    return pfnFrom12(lo, hi);
  }
  encTable(child: number): void {
    this.lo = (pfnLo12(child) | VTD_R | VTD_W) >>> 0;
    this.hi = pfnHi12(child);
  }
  encLeaf(pfn: number, _shift: number, level: number): void {
    this.lo = (pfnLo12(pfn) | this.attrLo | (level > 0 ? VTD_PS : 0)) >>> 0;
    this.hi = pfnHi12(pfn);
  }
  setProt(prot: number): number {
    let lo = 0;
    if (prot & IOMMU_READ) lo |= VTD_R;
    if (prot & IOMMU_WRITE) lo |= VTD_W;
    if (this.snp) lo |= VTD_SNP;
    // ERRATA_772415_SPR17: read-only second-stage mappings are refused
    if (this.forceWriteable && !(lo & VTD_W)) return -EINVAL;
    if (!(lo & (VTD_R | VTD_W))) return -EINVAL;
    this.attrLo = lo;
    return 0;
  }
  canHaveLeaf(level: number): boolean {
    return level <= 2;
  }
  possibleSizes(level: number): readonly number[] {
    return level <= 2 ? [12 + 9 * level] : [];
  }
  describe(lo: number, hi: number, level: number): string {
    if (lo === 0 && hi === 0) return "empty";
    if (this.isTable(lo, hi, level)) return `TABLE -> ${paHex(this.childPfn(lo, hi))}`;
    const f: string[] = [];
    if (lo & VTD_R) f.push("R");
    if (lo & VTD_W) f.push("W");
    if (lo & VTD_PS) f.push("PS");
    if (lo & VTD_SNP) f.push("SNP");
    if (lo & VTD_A) f.push("A");
    if (lo & VTD_D) f.push("D");
    return `LEAF ${sizeName(12 + 9 * level)} pa=${paHex(this.leafPfn(lo, hi))} ${f.join(" ")}`;
  }
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint> {
    return { ssptptr: BigInt(rootPfn) << 12n, aw: topLevel - 1 };
  }
}

export const vtdss: PtFormatDef = {
  name: "vtdss",
  granuleLg2: 12,
  maxVaLg2: 57,
  maxOaLg2: 52,
  maxTopLevel: 4,
  supported: ["FLUSH_RANGE", "VTDSS_FORCE_COHERENCE", "VTDSS_FORCE_WRITEABLE", "DMA_INCOHERENT"],
  forced: [],
  own: ["VTDSS_FORCE_COHERENCE", "VTDSS_FORCE_WRITEABLE"],
  fmtInit(cfg, st: InitState) {
    const va = cfg.hwMaxVaszLg2;
    if (va > 57) fail(EOPNOTSUPP, `vtdss: hw_max_vasz_lg2 ${va} > 57`);
    else if (va >= 49) st.topLevel = 4;
    else if (va >= 40) st.topLevel = 3;
    else if (va >= 31) st.topLevel = 2;
    else fail(EOPNOTSUPP, `vtdss: hw_max_vasz_lg2 ${va} < 31 (needs at least a 3-level table)`);
    st.maxVaLg2 = va;
    st.maxOaLg2 = Math.min(52, cfg.hwMaxOaszLg2);
  },
  create(_cfg, _f, st) {
    return new Vtdss(st.feature("VTDSS_FORCE_COHERENCE"), st.feature("VTDSS_FORCE_WRITEABLE"));
  },
};
