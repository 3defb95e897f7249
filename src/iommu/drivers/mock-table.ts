import type { FaultInject } from "../../hw/fault-inject.js";
import type { KernelLog } from "../../kernel/printk.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../pt/types.js";
import { ENOENT } from "../../uapi/errno.js";
import type { IoPageTable, WalkResult } from "../io-pgtable.js";
import type { Aperture, PtInfo } from "../types.js";

/** MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2 (selftest.c). */
export const MOCK_IO_PAGE_SIZE = 2048;
export const MOCK_IO_PAGE_LG2 = 11;
/** MOCK_HUGE_PAGE_SIZE = 512 * MOCK_IO_PAGE_SIZE (1 MiB). */
export const MOCK_HUGE_PAGE_LG2 = 20;

// Per-entry metadata bits, kept beside the pfn like the xarray value's top bits.
const START = 1; // MOCK_PFN_START_IOVA: first IOVA of a map_pages call
const LAST = 2; // MOCK_PFN_LAST_IOVA: last IOVA of a map_pages call
const DIRTY = 4; // MOCK_PFN_DIRTY_IOVA
const HUGE = 8; // MOCK_PFN_HUGE_IOVA: mapped as part of a huge page

/**
 * The selftest mock's page table as selftest.c kept it through 6.18: an
 * xarray from IOVA / MOCK_IO_PAGE_SIZE to (paddr / MOCK_IO_PAGE_SIZE) plus
 * flags. (Newer kernels replace it with generic_pt's AMDv1 "mock" variant,
 * a 2 KiB-granule AMDv1; src/pt has no 2 KiB granule, so this is the most
 * faithful table available.) It lives in kernel memory, not in page-table
 * frames: mock domains hold no ptFrames, and device DMA through a mock
 * domain reads this map instead of table bytes (the mock has no hardware).
 *
 * The kernel's WARN_ONs (unmap not starting or ending where a map did,
 * mapping over a present entry) become printk warnings and TAINT_WARN.
 */
export class MockTable implements IoPageTable {
  readonly unitLg2 = MOCK_IO_PAGE_LG2;
  readonly format = "amdv1_mock" as const;
  readonly hasDirty = true;
  /** Index -> paddr index; flags kept separately (both exact numbers). */
  private readonly pfns = new Map<number, number>();
  private readonly meta = new Map<number, number>();

  constructor(
    readonly pgsizesLg2: readonly number[],
    readonly apertures: readonly Aperture[],
    private readonly faults: FaultInject,
    private readonly klog: KernelLog,
    private readonly prots = new Map<number, number>(),
  ) {}

  get size(): number {
    return this.pfns.size;
  }

  mapPages(
    iova: number,
    pa: number,
    pgLg2: number,
    count: number,
    prot: number,
    out: { mapped: number },
  ): number {
    // selftest.c has its own fail point here (iommufd_should_fail), returning ENOENT.
    if (this.faults.hit("iommufd_should_fail:mock_map_pages")) return -ENOENT;
    const per = 2 ** (pgLg2 - MOCK_IO_PAGE_LG2);
    const n = per * count;
    const huge = pgLg2 !== MOCK_IO_PAGE_LG2 ? HUGE : 0;
    for (let k = 0; k < n; k++) {
      const i = iova + k;
      if (this.pfns.has(i))
        this.warn(`mock map_pages over a present IOVA 0x${(i * MOCK_IO_PAGE_SIZE).toString(16)}`);
      let f = huge;
      if (k === 0) f |= START;
      if (k === n - 1) f |= LAST;
      this.pfns.set(i, pa + k);
      this.meta.set(i, f);
      this.prots.set(i, prot & (IOMMU_READ | IOMMU_WRITE));
    }
    out.mapped += n;
    return 0;
  }

  unmapPages(iova: number, pgLg2: number, count: number): number {
    const n = 2 ** (pgLg2 - MOCK_IO_PAGE_LG2) * count;
    // The strict start/last check only holds without huge pages: the core
    // splits runs between the two sizes at points that need not match.
    const strict = !this.pgsizesLg2.includes(MOCK_HUGE_PAGE_LG2);
    for (let k = 0; k < n; k++) {
      const i = iova + k;
      const f = this.meta.get(i);
      if (strict && f !== undefined) {
        if (k === 0 && (f & START) === 0)
          this.warn("mock unmap_pages does not start where a map_pages started");
        if (k === n - 1 && (f & LAST) === 0)
          this.warn("mock unmap_pages does not end where a map_pages ended");
      }
      this.pfns.delete(i);
      this.meta.delete(i);
      this.prots.delete(i);
    }
    // The mock reports the whole request as unmapped, present or not.
    return n;
  }

  iovaToPhys(iova: bigint): bigint {
    const i = Number(iova >> BigInt(MOCK_IO_PAGE_LG2));
    const p = this.pfns.get(i);
    if (p === undefined) {
      this.warn("mock iova_to_phys of an unmapped IOVA");
      return 0n;
    }
    return BigInt(p) << BigInt(MOCK_IO_PAGE_LG2);
  }

  readAndClearDirty(
    iova: number,
    len: number,
    noClear: boolean,
    record: (iova: number, len: number) => void,
  ): number {
    const end = iova + len;
    let cur = iova;
    while (cur < end) {
      if (!this.pfns.has(cur)) {
        cur++;
        continue;
      }
      // A huge entry is reported (and cleaned) as its whole 1 MiB page.
      const span = (this.meta.get(cur)! & HUGE) !== 0 ? 2 ** (MOCK_HUGE_PAGE_LG2 - MOCK_IO_PAGE_LG2) : 1;
      const head = cur - (cur % span);
      let dirty = false;
      for (let k = 0; k < span; k++) {
        const f = this.meta.get(head + k);
        if (f === undefined || (f & DIRTY) === 0) continue;
        dirty = true;
        if (!noClear) this.meta.set(head + k, f & ~DIRTY);
      }
      if (dirty) record(cur, span);
      cur += span;
    }
    return 0;
  }

  setDirty(iova: number): number {
    const f = this.meta.get(iova);
    if (f === undefined) return -ENOENT;
    this.meta.set(iova, f | DIRTY);
    return 0;
  }

  translate(iova: bigint, write: boolean): WalkResult {
    const i = Number(iova >> BigInt(MOCK_IO_PAGE_LG2));
    const p = this.pfns.get(i);
    if (p === undefined) return { ok: false, reason: "not-present" };
    const prot = this.prots.get(i)!;
    if (write && (prot & IOMMU_WRITE) === 0) return { ok: false, reason: "write-protected" };
    if (!write && (prot & IOMMU_READ) === 0) return { ok: false, reason: "read-protected" };
    const off = Number(iova & BigInt(MOCK_IO_PAGE_SIZE - 1));
    return { ok: true, pa: p * MOCK_IO_PAGE_SIZE + off, left: MOCK_IO_PAGE_SIZE - off, prot };
  }

  leaves(visit: (iova: number, pa: number, len: number, prot: number) => void): void {
    for (const i of [...this.pfns.keys()].sort((a, b) => a - b))
      visit(i, this.pfns.get(i)!, 1, this.prots.get(i)!);
  }

  info(): PtInfo {
    return { format: "amdv1_mock", rootPhys: 0n, topLevel: 0 };
  }

  frames(): number {
    return 0;
  }

  destroy(): void {
    if (this.pfns.size !== 0) this.warn("mock domain freed with IOVAs still mapped");
    this.pfns.clear();
    this.meta.clear();
    this.prots.clear();
  }

  /** Test helper: corrupt an entry (points it elsewhere), as a stray kernel write would. */
  corrupt(iova: number, pa: number): void {
    this.pfns.set(iova, pa);
  }

  private warn(msg: string): void {
    this.klog.addTaint("TAINT_WARN", `WARNING: ${msg}`);
  }
}
