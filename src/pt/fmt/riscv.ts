import { EINVAL, fail } from "../../uapi/errno.js";
import type { PtFormatDef, PtFormatImpl } from "../types.js";
import { IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE } from "../types.js";
import { paHex, sizeName } from "./common.js";

/*
 * RISC-V Sv39/Sv48/Sv57 (fmt/riscv.h; privileged spec ch. 12, Svnapot ch. 13).
 * V 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7, PPN 53:10, PBMT 62:61, N 63.
 * A pointer has R=W=X=0; any of them makes a leaf, allowed at every level.
 */
export const RV_V = 1;
export const RV_R = 2;
export const RV_W = 4;
export const RV_X = 8;
export const RV_U = 16;
export const RV_G = 32;
export const RV_A = 64;
export const RV_D = 128;
export const RV_N_HI = 1 << 31;

function ppnLo(pfn: number): number {
  return (pfn << 10) >>> 0;
}
function ppnHi(pfn: number): number {
  return (pfn / 4194304) >>> 0;
}
function ppnOf(lo: number, hi: number): number {
  return (hi & 0x3fffff) * 4194304 + (lo >>> 10);
}

class Riscv implements PtFormatImpl {
  readonly name = "riscv" as const;
  readonly bigEndian = false;
  readonly dirtyLo = 0;
  readonly dirtyHi = 0;
  readonly addrAt12 = false;
  lo = 0;
  hi = 0;
  attrLo = 0;
  attrHi = 0;
  constructor(private readonly napot: boolean) {}
  isTable(lo: number, _hi: number, level: number): boolean {
    return level > 0 && (lo & (RV_R | RV_W | RV_X)) === 0;
  }
  childPfn(lo: number, hi: number): number {
    return ppnOf(lo, hi);
  }
  leafShift(_lo: number, hi: number, level: number): number {
    if (level === 0 && hi & RV_N_HI) return 4;
    return 9 * level;
  }
  leafPfn(lo: number, hi: number, level: number): number {
    const p = ppnOf(lo, hi);
    if (level === 0 && hi & RV_N_HI) return p - (p & 15);
    return p;
  }
  encTable(child: number): void {
    this.lo = (ppnLo(child) | RV_V) >>> 0;
    this.hi = ppnHi(child);
  }
  encLeaf(pfn: number, shift: number): void {
    let hi = 0;
    if (shift === 4) {
      // Svnapot 64 KiB: ppn[3:0] = 1000b and N, repeated in all 16 items
      pfn += 8;
      hi = RV_N_HI;
    }
    this.lo = (ppnLo(pfn) | this.attrLo) >>> 0;
    this.hi = (ppnHi(pfn) | hi) >>> 0;
  }
  setProt(prot: number): number {
    let lo = RV_V | RV_A | RV_U;
    if (prot & IOMMU_WRITE) lo |= RV_W | RV_R | RV_D;
    if (prot & IOMMU_READ) lo |= RV_R;
    if (!(prot & IOMMU_NOEXEC)) lo |= RV_X;
    this.attrLo = lo;
    return 0;
  }
  canHaveLeaf(): boolean {
    return true;
  }
  possibleSizes(level: number): readonly number[] {
    if (level === 0) return this.napot ? [12, 16] : [12];
    return [12 + 9 * level];
  }
  describe(lo: number, hi: number, level: number): string {
    if ((lo & RV_V) === 0) return lo === 0 && hi === 0 ? "empty" : "not valid";
    if (this.isTable(lo, hi, level)) return `TABLE -> ${paHex(this.childPfn(lo, hi))}`;
    const f: string[] = [];
    const names = ["V", "R", "W", "X", "U", "G", "A", "D"];
    for (let b = 0; b < 8; b++) if (lo & (1 << b)) f.push(names[b]);
    if (hi & RV_N_HI) f.push("N");
    const s = this.leafShift(lo, hi, level) + 12;
    return `LEAF ${sizeName(s)} pa=${paHex(this.leafPfn(lo, hi, level))} ${f.join(" ")}`;
  }
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint> {
    return { ppn: rootPfn, fsc_iosatp_mode: topLevel + 6 };
  }
}

export const riscv: PtFormatDef = {
  name: "riscv",
  granuleLg2: 12,
  maxVaLg2: 57,
  maxOaLg2: 56,
  maxTopLevel: 4,
  // riscv64 as of the DETAILED_GATHER kernels: that feature is also forced
  supported: ["SIGN_EXTEND", "FLUSH_RANGE", "RISCV_SVNAPOT_64K", "DETAILED_GATHER"],
  forced: ["DETAILED_GATHER"],
  own: ["RISCV_SVNAPOT_64K", "RISCV_SVPBMT"],
  fmtInit(cfg, st) {
    const va = cfg.hwMaxVaszLg2;
    if (va !== 39 && va !== 48 && va !== 57) fail(EINVAL, `riscv: hw_max_vasz_lg2 ${va} is not 39, 48 or 57`);
    st.topLevel = (va - 39) / 9 + 2;
    st.maxVaLg2 = va;
    st.maxOaLg2 = Math.min(56, cfg.hwMaxOaszLg2);
  },
  create(_cfg, _f, st) {
    return new Riscv(st.feature("RISCV_SVNAPOT_64K"));
  },
};
