import { FaultInject } from "../../src/hw/fault-inject.js";
import { FrameAllocator } from "../../src/hw/frame-alloc.js";
import { PhysMem } from "../../src/hw/phys-mem.js";
import { createPageTable, type PageTable } from "../../src/pt/engine.js";
import type { FormatName, PtConfig } from "../../src/pt/types.js";

export function makeEnv(seed = 7) {
  const mem = new PhysMem(4n << 30n, [[0, (4 * 2 ** 30) / 4096]]);
  const faults = new FaultInject();
  const alloc = new FrameAllocator(mem, seed, faults);
  return { mem, alloc, faults };
}

export interface FmtCase {
  label: string;
  format: FormatName;
  cfg: PtConfig;
  /** first IOVA pfn of the window the generic tests use (in the table's unit, pt.unitLg2) */
  vaPfn: number;
  /** how many pfns (table units: 4 KiB, 2 KiB for amdv1_mock) of VA the window has */
  vaPfns: number;
  dirty: boolean;
  /** whether a write-only or read-only leaf still allows reads (x86, TCE) */
  readAlways: boolean;
}

export const NOIOMMU: PtConfig = {
  hwMaxVaszLg2: 64,
  hwMaxOaszLg2: 52,
  startingLevel: 2,
  features: ["DYNAMIC_TOP", "AMDV1_ENCRYPT_TABLES", "AMDV1_FORCE_COHERENCE"],
};

/** The selftest mock's cfg (mock_domain_alloc_pgtable, MOCK_IOMMUPT_DEFAULT). */
export const MOCK_CFG: PtConfig = { hwMaxVaszLg2: 56, hwMaxOaszLg2: 51, startingLevel: 2 };

export const CASES: FmtCase[] = [
  {
    label: "amdv1_mock selftest (2 KiB granule)",
    format: "amdv1_mock",
    cfg: MOCK_CFG,
    vaPfn: 0,
    vaPfns: 2 ** 27,
    dirty: true,
    readAlways: false,
  },
  {
    label: "amdv1_mock starting level 4 (56-bit VA)",
    format: "amdv1_mock",
    cfg: { ...MOCK_CFG, startingLevel: 4 },
    vaPfn: 0,
    vaPfns: 2 ** 45,
    dirty: true,
    readAlways: false,
  },
  {
    label: "amdv1 noiommu",
    format: "amdv1",
    cfg: NOIOMMU,
    vaPfn: 0,
    vaPfns: 2 ** 40,
    dirty: true,
    readAlways: false,
  },
  {
    label: "vtdss 48",
    format: "vtdss",
    cfg: { hwMaxVaszLg2: 48, hwMaxOaszLg2: 52 },
    vaPfn: 0,
    vaPfns: 2 ** 36,
    dirty: true,
    readAlways: false,
  },
  {
    label: "x86_64 48 SE",
    format: "x86_64",
    cfg: { hwMaxVaszLg2: 48, hwMaxOaszLg2: 52, features: ["SIGN_EXTEND"] },
    vaPfn: 0,
    vaPfns: 2 ** 35,
    dirty: false,
    readAlways: true,
  },
  {
    label: "riscv sv39 napot",
    format: "riscv",
    cfg: { hwMaxVaszLg2: 39, hwMaxOaszLg2: 56, features: ["DETAILED_GATHER", "RISCV_SVNAPOT_64K"] },
    vaPfn: 0,
    vaPfns: 2 ** 27,
    dirty: false,
    readAlways: false,
  },
  {
    label: "spapr_tce 2-level 4K",
    format: "spapr_tce",
    cfg: { hwMaxVaszLg2: 64, hwMaxOaszLg2: 52, pageShift: 12, windowSize: 1n << 30n, levels: 2 },
    vaPfn: 0,
    vaPfns: 2 ** 18,
    dirty: false,
    readAlways: true,
  },
  {
    label: "spapr_tce 3-level 64K at 2^59",
    format: "spapr_tce",
    cfg: {
      hwMaxVaszLg2: 64,
      hwMaxOaszLg2: 52,
      pageShift: 16,
      windowSize: 1n << 40n,
      levels: 3,
      busOffset: 1n << 59n,
    },
    vaPfn: 2 ** 47,
    vaPfns: 2 ** 28,
    dirty: false,
    readAlways: true,
  },
];

export function make(c: FmtCase, env = makeEnv()): { pt: PageTable; env: ReturnType<typeof makeEnv> } {
  return { pt: createPageTable(env, c.format, c.cfg), env };
}

/** The page sizes (log2 bytes) of a table's pgsize_bitmap. */
export function sizesOf(pt: PageTable): number[] {
  const out: number[] = [];
  const bm = pt.geometry().pgsizeBitmap;
  for (let s = 0; s < 64; s++) if ((bm >> BigInt(s)) & 1n) out.push(s);
  return out;
}

/** errno of a KernelError thrown by fn, or 0. */
export function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    return (e as { errno?: number }).errno ?? -1;
  }
  return 0;
}
