import { EINVAL, fail } from "../../uapi/errno.js";
import { pfnFrom12, pfnHi12, pfnLo12 } from "../bits.js";
import type { PtConfig, PtFormatDef, PtFormatImpl } from "../types.js";
import { IOMMU_WRITE } from "../types.js";
import { paHex, sizeName, smeHalves } from "./common.js";

/*
 * x86-64 first stage / AMD v2 (fmt/x86_64.h; SDM 4.4). P 0, R/W 1, U/S 2,
 * A 5, D 6, PS 7 (leaves at levels 1-2), address 51:12, XD 63. A and D are
 * pre-set (D only on writable leaves); there is no way to say "no read".
 */
export const X86_P = 1;
export const X86_RW = 2;
export const X86_US = 4;
export const X86_A = 1 << 5;
export const X86_D = 1 << 6;
export const X86_PS = 1 << 7;
export const X86_XD_HI = 1 << 31;

class X8664 implements PtFormatImpl {
  readonly name = "x86_64" as const;
  readonly bigEndian = false;
  readonly dirtyLo = 0;
  readonly dirtyHi = 0;
  readonly addrAt12 = true;
  lo = 0;
  hi = 0;
  attrLo = 0;
  attrHi = 0;
  private readonly smeLo: number;
  private readonly smeHi: number;
  constructor(cfg: PtConfig, encrypt: boolean) {
    [this.smeLo, this.smeHi] = encrypt ? smeHalves(cfg) : [0, 0];
  }
  isTable(lo: number, _hi: number, level: number): boolean {
    return level > 0 && (lo & X86_PS) === 0;
  }
  childPfn(lo: number, hi: number): number {
    return pfnFrom12(lo & ~this.smeLo, hi & ~this.smeHi);
  }
  leafShift(_lo: number, _hi: number, level: number): number {
    return 9 * level;
  }
  leafPfn(lo: number, hi: number): number {
    return pfnFrom12(lo & ~this.smeLo, hi & ~this.smeHi);
  }
  encTable(child: number): void {
    this.lo = (pfnLo12(child) | X86_P | X86_RW | X86_US | X86_A | this.smeLo) >>> 0;
    this.hi = (pfnHi12(child) | this.smeHi) >>> 0;
  }
  encLeaf(pfn: number, _shift: number, level: number): void {
    this.lo = (pfnLo12(pfn) | this.attrLo | (level > 0 ? X86_PS : 0) | this.smeLo) >>> 0;
    this.hi = (pfnHi12(pfn) | this.smeHi) >>> 0;
  }
  setProt(prot: number): number {
    let lo = X86_P | X86_US | X86_A;
    if (prot & IOMMU_WRITE) lo |= X86_RW | X86_D;
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
    if ((lo & X86_P) === 0) return lo === 0 && hi === 0 ? "empty" : "not present";
    if (this.isTable(lo, hi, level)) return `TABLE -> ${paHex(this.childPfn(lo, hi))}`;
    const f: string[] = ["P"];
    if (lo & X86_RW) f.push("RW");
    if (lo & X86_US) f.push("US");
    if (lo & X86_A) f.push("A");
    if (lo & X86_D) f.push("D");
    if (lo & X86_PS) f.push("PS");
    if (hi & X86_XD_HI) f.push("XD");
    return `LEAF ${sizeName(12 + 9 * level)} pa=${paHex(this.leafPfn(lo, hi))} ${f.join(" ")}`;
  }
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint> {
    return { gcr3_pt: BigInt(rootPfn) << 12n, levels: topLevel + 1 };
  }
}

export const x8664: PtFormatDef = {
  name: "x86_64",
  granuleLg2: 12,
  maxVaLg2: 57,
  maxOaLg2: 52,
  maxTopLevel: 4,
  supported: ["SIGN_EXTEND", "FLUSH_RANGE", "FLUSH_RANGE_NO_GAPS", "X86_64_AMD_ENCRYPT_TABLES"],
  forced: [],
  own: ["X86_64_AMD_ENCRYPT_TABLES"],
  fmtInit(cfg, st) {
    const va = cfg.hwMaxVaszLg2;
    if (va < 31 || va > 57) fail(EINVAL, `x86_64: hw_max_vasz_lg2 ${va} is not 31..57`);
    st.topLevel = Math.floor((va - 31) / 9) + 2;
    st.maxVaLg2 = va;
    st.maxOaLg2 = Math.min(52, cfg.hwMaxOaszLg2);
  },
  create(cfg, _f, st) {
    return new X8664(cfg, st.feature("X86_64_AMD_ENCRYPT_TABLES"));
  },
};
