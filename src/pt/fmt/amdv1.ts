import { EINVAL, fail } from "../../uapi/errno.js";
import { ctz32, pfnFrom12, pfnHi12, pfnLo12 } from "../bits.js";
import type { PtFeature } from "../features.js";
import type { InitState, PtConfig, PtFormatDef, PtFormatImpl } from "../types.js";
import { IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE } from "../types.js";
import { paHex, sizeName, sizeRange, smeHalves } from "./common.js";

/*
 * AMD IOMMU v1 page table (fmt/amdv1.h; AMD IOMMU spec 2.2.3).
 * Bits: PR 0, A 5, D 6, NextLevel 11:9, OA 51:12, FC 60, IR 61, IW 62.
 * A table pointer's NextLevel is the generic level of the entry holding it;
 * NextLevel 0 is a leaf of the level's own size, 7 a leaf whose size is
 * encoded by a run of 1s in the OA field (address bits 12..s-2 set).
 */
export const AMDV1_PR = 1;
export const AMDV1_A = 1 << 5;
export const AMDV1_D = 1 << 6;
/** In the high word. */
export const AMDV1_FC_HI = 1 << 28;
export const AMDV1_IR_HI = 1 << 29;
export const AMDV1_IW_HI = 1 << 30;

export class Amdv1 implements PtFormatImpl {
  readonly name: "amdv1" | "amdv1_mock" = "amdv1";
  readonly bigEndian = false;
  readonly dirtyLo = AMDV1_D;
  readonly dirtyHi = 0;
  readonly addrAt12 = true;
  lo = 0;
  hi = 0;
  attrLo = 0;
  attrHi = 0;
  /** log2 bytes of the granule: the unit of OA fields and leaf sizes. */
  protected readonly unitLg2: number = 12;
  protected readonly smeLo: number;
  protected readonly smeHi: number;
  private readonly fc: boolean;
  private readonly encrypt: boolean;
  private leafSmeLo = 0;
  private leafSmeHi = 0;

  constructor(cfg: PtConfig, st: InitState) {
    this.encrypt = st.feature("AMDV1_ENCRYPT_TABLES");
    [this.smeLo, this.smeHi] = this.encrypt ? smeHalves(cfg) : [0, 0];
    this.fc = st.feature("AMDV1_FORCE_COHERENCE");
  }

  isTable(lo: number, _hi: number, level: number): boolean {
    const nl = (lo >>> 9) & 7;
    return level > 0 && nl !== 0 && nl !== 7;
  }
  childPfn(lo: number, hi: number): number {
    return pfnFrom12(lo & ~this.smeLo, hi & ~this.smeHi);
  }
  leafShift(lo: number, hi: number, level: number): number {
    if (((lo >>> 9) & 7) !== 7) return 9 * level;
    return trailingOnes(lo & ~this.smeLo, hi & ~this.smeHi) + 1;
  }
  leafPfn(lo: number, hi: number, _level: number): number {
    const f = pfnFrom12(lo & ~this.smeLo, hi & ~this.smeHi);
    if (((lo >>> 9) & 7) !== 7) return f;
    return f - (2 ** trailingOnes(lo & ~this.smeLo, hi & ~this.smeHi) - 1);
  }
  encTable(child: number, level: number): void {
    this.lo = (pfnLo12(child) | AMDV1_PR | (level << 9) | this.smeLo) >>> 0;
    this.hi = (pfnHi12(child) | AMDV1_IR_HI | AMDV1_IW_HI | this.smeHi) >>> 0;
  }
  encLeaf(pfn: number, shift: number, level: number): void {
    let nl = 0;
    if (shift !== 9 * level) {
      nl = 7;
      pfn += 2 ** (shift - 1) - 1;
    }
    this.lo = (pfnLo12(pfn) | AMDV1_PR | (nl << 9) | this.attrLo | this.leafSmeLo) >>> 0;
    this.hi = (pfnHi12(pfn) | this.attrHi | this.leafSmeHi) >>> 0;
  }
  setProt(prot: number): number {
    let hi = 0;
    if (prot & IOMMU_READ) hi |= AMDV1_IR_HI;
    if (prot & IOMMU_WRITE) hi |= AMDV1_IW_HI;
    if (this.fc) hi |= AMDV1_FC_HI;
    this.attrLo = 0;
    this.attrHi = hi >>> 0;
    // the newer amdv1.h leaves MMIO mappings unencrypted
    const mmio = (prot & IOMMU_MMIO) !== 0;
    this.leafSmeLo = mmio ? 0 : this.smeLo;
    this.leafSmeHi = mmio ? 0 : this.smeHi;
    return 0;
  }
  canHaveLeaf(level: number): boolean {
    return level < 5;
  }
  possibleSizes(level: number): readonly number[] {
    return AMDV1_SIZES[level] ?? [];
  }
  describe(lo: number, hi: number, level: number): string {
    if ((lo & AMDV1_PR) === 0) return lo === 0 && hi === 0 ? "empty" : "not present";
    const nl = (lo >>> 9) & 7;
    if (this.isTable(lo, hi, level)) return `TABLE NL=${nl} -> ${paHex(this.childPfn(lo, hi))}`;
    return `LEAF ${this.leafText(lo, hi, level)}`;
  }
  /** Size, NextLevel, output address and flags of a leaf. */
  protected leafText(lo: number, hi: number, level: number): string {
    const nl = (lo >>> 9) & 7;
    const f: string[] = [];
    if (hi & AMDV1_IR_HI) f.push("IR");
    if (hi & AMDV1_IW_HI) f.push("IW");
    if (hi & AMDV1_FC_HI) f.push("FC");
    if (lo & AMDV1_A) f.push("A");
    if (lo & AMDV1_D) f.push("D");
    const s = this.leafShift(lo, hi, level) + this.unitLg2;
    const pa = `0x${(this.leafPfn(lo, hi, level) * 2 ** this.unitLg2).toString(16)}`;
    return `${sizeName(s)} NL=${nl} pa=${pa} ${f.join(" ")}`;
  }
  hwInfo(rootPfn: number, topLevel: number): Record<string, number | bigint> {
    return { host_pt_root: BigInt(rootPfn) << 12n, mode: topLevel + 1 };
  }
}

/** Trailing 1s of the OA field (address bits 12 and up). */
function trailingOnes(lo: number, hi: number): number {
  const a = (lo >>> 12) & 0xfffff;
  if (a !== 0xfffff) return ctz32(~a);
  return 20 + ctz32(~(hi & 0xfffff));
}

/** GENMASK(min(51, i+8), i) per level, without 512 GiB (a HW erratum); none at level 5. */
const AMDV1_SIZES: readonly (readonly number[])[] = [0, 1, 2, 3, 4].map((l) =>
  sizeRange(12 + 9 * l, Math.min(51, 12 + 9 * l + 8), [39]),
);

const SUPPORTED: PtFeature[] = [
  "FULL_VA",
  "DYNAMIC_TOP",
  "FLUSH_RANGE",
  "FLUSH_RANGE_NO_GAPS",
  "AMDV1_ENCRYPT_TABLES",
  "AMDV1_FORCE_COHERENCE",
];

export const amdv1: PtFormatDef = {
  name: "amdv1",
  granuleLg2: 12,
  maxVaLg2: 64,
  maxOaLg2: 52,
  maxTopLevel: 5,
  supported: SUPPORTED,
  forced: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
  own: ["AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
  fmtInit(cfg, st) {
    const start = cfg.startingLevel ?? 0;
    if (start === 0 || start > 5) fail(EINVAL, `amdv1: starting_level ${start} is not 1..5`);
    st.topLevel = start;
    let va = 64;
    if (!st.feature("DYNAMIC_TOP") && start !== 5) va = 12 + 9 * (start + 1);
    st.maxVaLg2 = Math.min(va, cfg.hwMaxVaszLg2);
    st.maxOaLg2 = Math.min(52, cfg.hwMaxOaszLg2);
  },
  create(cfg, _f, st) {
    return new Amdv1(cfg, st);
  },
};
