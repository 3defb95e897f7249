import { EINVAL, fail } from "../../uapi/errno.js";
import { pfnFrom12, pfnHi12, pfnLo12 } from "../bits.js";
import type { PtFormatDef } from "../types.js";
import { AMDV1_IR_HI, AMDV1_IW_HI, AMDV1_PR, Amdv1 } from "./amdv1.js";
import { paHex, sizeRange } from "./common.js";

/*
 * The iommufd selftest's AMDv1 variant (fmt/iommu_mock.c: amdv1.h built
 * with AMDV1_IOMMUFD_SELFTEST, PT_FMT_VARIANT mock). Same entry bits as
 * AMDv1, but a 2 KiB granule so the selftest exercises an IO page smaller
 * than the CPU page:
 * - PT_GRANULE_LG2SZ 11, PT_TABLEMEM_LG2SZ 12 (tables are still 4 KiB of
 *   512 entries), so level L items are 2^(11 + 9L) bytes;
 * - PT_MAX_VA_ADDRESS_LG2 56, PT_MAX_OUTPUT_ADDRESS_LG2 51,
 *   PT_MAX_TOP_LEVEL 4 (level 4 holds tables only);
 * - the OA field (bits 51:12) holds address >> PT_GRANULE_LG2SZ, for leaves
 *   and table pointers alike, so a table at PA t is stored as t >> 11 and
 *   a leaf's PA bit 11 lands in entry bit 12;
 * - a contiguous (NextLevel 7) leaf of 2^s bytes sets the low s - 12 bits of
 *   that field (2^(s - 11 - 1) - 1 OR'ed into PA >> 11);
 * - PT_SUPPORTED_FEATURES 0: no DYNAMIC_TOP, no SME C-bit, no FC (only a
 *   CONFIG_DEBUG_GENERIC_PT build offers AMDv1's own features);
 * - no hw_info (the variant defines no pt_iommu_fmt_hw_info: nothing
 *   programs a DTE with it).
 * The engine counts this table's addresses in 2 KiB units.
 */
export const AMDV1_MOCK_GRANULE_LG2 = 11;
export const AMDV1_MOCK_MAX_VA_LG2 = 56;
export const AMDV1_MOCK_MAX_OA_LG2 = 51;
export const AMDV1_MOCK_MAX_TOP_LEVEL = 4;

class Amdv1Mock extends Amdv1 {
  override readonly name = "amdv1_mock" as const;
  protected override readonly unitLg2 = AMDV1_MOCK_GRANULE_LG2;

  /** The OA field counts 2 KiB units; tables are 4 KiB frames (an even field). */
  override childPfn(lo: number, hi: number): number {
    return pfnFrom12(lo & ~this.smeLo, hi & ~this.smeHi) / 2;
  }
  override encTable(child: number, level: number): void {
    const f = child * 2;
    this.lo = (pfnLo12(f) | AMDV1_PR | (level << 9) | this.smeLo) >>> 0;
    this.hi = (pfnHi12(f) | AMDV1_IR_HI | AMDV1_IW_HI | this.smeHi) >>> 0;
  }
  /** amdv1pt_can_have_leaf: the top-most level (4 here) holds tables only. */
  override canHaveLeaf(level: number): boolean {
    return level < AMDV1_MOCK_MAX_TOP_LEVEL;
  }
  override possibleSizes(level: number): readonly number[] {
    return MOCK_SIZES[level] ?? [];
  }
  override describe(lo: number, hi: number, level: number): string {
    if ((lo & AMDV1_PR) === 0) return lo === 0 && hi === 0 ? "empty" : "not present";
    const nl = (lo >>> 9) & 7;
    if (this.isTable(lo, hi, level)) return `TABLE NL=${nl} -> ${paHex(this.childPfn(lo, hi))}`;
    return `LEAF ${this.leafText(lo, hi, level)}`;
  }
  /** The variant has no hw_info: nothing to program. */
  override hwInfo(): Record<string, number | bigint> {
    return {};
  }
}

/** GENMASK(min(51, isz + 8), isz) & ~SZ_512G per level 0..3, isz = 11 + 9 * level. */
const MOCK_SIZES: readonly (readonly number[])[] = [0, 1, 2, 3].map((l) =>
  sizeRange(11 + 9 * l, Math.min(51, 11 + 9 * l + 8), [39]),
);

export const amdv1Mock: PtFormatDef = {
  name: "amdv1_mock",
  granuleLg2: AMDV1_MOCK_GRANULE_LG2,
  maxVaLg2: AMDV1_MOCK_MAX_VA_LG2,
  maxOaLg2: AMDV1_MOCK_MAX_OA_LG2,
  maxTopLevel: AMDV1_MOCK_MAX_TOP_LEVEL,
  supported: [],
  forced: [],
  own: ["AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
  /** amdv1pt_iommu_fmt_init with the mock's limits. */
  fmtInit(cfg, st) {
    const start = cfg.startingLevel ?? 0;
    if (start === 0 || start > AMDV1_MOCK_MAX_TOP_LEVEL)
      fail(EINVAL, `amdv1_mock: starting_level ${start} is not 1..${AMDV1_MOCK_MAX_TOP_LEVEL}`);
    st.topLevel = start;
    let va = AMDV1_MOCK_MAX_VA_LG2;
    if (!st.feature("DYNAMIC_TOP") && start !== AMDV1_MOCK_MAX_TOP_LEVEL)
      va = AMDV1_MOCK_GRANULE_LG2 + 9 * (start + 1);
    st.maxVaLg2 = Math.min(va, cfg.hwMaxVaszLg2);
    st.maxOaLg2 = Math.min(AMDV1_MOCK_MAX_OA_LG2, cfg.hwMaxOaszLg2);
  },
  create(cfg, _f, st) {
    return new Amdv1Mock(cfg, st);
  },
};
