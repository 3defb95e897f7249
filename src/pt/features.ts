/**
 * generic_pt features, kept by name (include/linux/generic_pt/common.h
 * `enum pt_features`). Bit numbers moved between kernel versions (the newer
 * common.h inserts DETAILED_GATHER at bit 6), so the model never uses them:
 * a format lists the names it supports and the names it force-enables.
 */
export const COMMON_FEATURES = [
  "DMA_INCOHERENT",
  "FULL_VA",
  "DYNAMIC_TOP",
  "SIGN_EXTEND",
  "FLUSH_RANGE",
  "FLUSH_RANGE_NO_GAPS",
  "DETAILED_GATHER",
] as const;

export const FORMAT_FEATURES = [
  "AMDV1_ENCRYPT_TABLES",
  "AMDV1_FORCE_COHERENCE",
  "VTDSS_FORCE_COHERENCE",
  "VTDSS_FORCE_WRITEABLE",
  "X86_64_AMD_ENCRYPT_TABLES",
  "RISCV_SVNAPOT_64K",
  "RISCV_SVPBMT",
] as const;

export type PtFeature = (typeof COMMON_FEATURES)[number] | (typeof FORMAT_FEATURES)[number];

export const ALL_FEATURES: readonly PtFeature[] = [...COMMON_FEATURES, ...FORMAT_FEATURES];

export function isPtFeature(s: string): s is PtFeature {
  return (ALL_FEATURES as readonly string[]).includes(s);
}

/** What a format declares (PT_SUPPORTED_FEATURES / PT_FORCE_ENABLED_FEATURES). */
export interface FeatureSets {
  readonly supported: readonly PtFeature[];
  readonly forced: readonly PtFeature[];
  /** The format's own feature names (for the CONFIG_DEBUG_GENERIC_PT "all supported" rebuild). */
  readonly own: readonly PtFeature[];
}

/**
 * The supported set as built: CONFIG_DEBUG_GENERIC_PT rebuilds every format
 * with all features supported, except DMA_INCOHERENT (kept only if already
 * supported) and the SIGN_EXTEND / DYNAMIC_TOP+FULL_VA exclusion (pt_defs.h).
 */
export function effectiveSupported(sets: FeatureSets, debug: boolean): Set<PtFeature> {
  if (!debug) return new Set(sets.supported);
  const s = new Set<PtFeature>([...COMMON_FEATURES, ...sets.own]);
  if (!sets.supported.includes("DMA_INCOHERENT")) s.delete("DMA_INCOHERENT");
  if (sets.supported.includes("SIGN_EXTEND")) {
    s.delete("DYNAMIC_TOP");
    s.delete("FULL_VA");
  } else {
    s.delete("SIGN_EXTEND");
  }
  return s;
}

/**
 * pt_feature(): force-enabled wins; otherwise the feature must be supported
 * and requested.
 */
export function ptFeature(
  f: PtFeature,
  features: ReadonlySet<PtFeature>,
  supported: ReadonlySet<PtFeature>,
  forced: readonly PtFeature[],
): boolean {
  if (forced.includes(f)) return true;
  if (!supported.has(f)) return false;
  return features.has(f);
}
