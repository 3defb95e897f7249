import type { TceWindowDebugInfo } from "../kernel/kctx.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { log2Floor, POW2 } from "../pt/bits.js";
import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import { EINVAL, ENODEV, EOPNOTSUPP, errnoName, fail } from "../uapi/errno.js";
import type { IommuDriver } from "./driver.js";
import type { IoPageTable, PtDumpEntry } from "./io-pgtable.js";
import { MappedRanges } from "./mapped-ranges.js";
import { iommuPgsizeCount, lg2ToBitmap, pgsizePick } from "./pgsize.js";
import type { Aperture, IommuDomainType, PagingUse, PtInfo } from "./types.js";

/** Longest stretch of single-leaf runs handed to the table at once (one leaf table's worth). */
const STRETCH = 512;

/**
 * struct iommu_domain: what a device (or a PASID of it) translates through.
 * Paging domains own a page table (src/pt bytes in simulated memory);
 * blocked and identity domains are per-driver singletons; nested domains
 * point at their parent (stage 2). The core's iommu_map / iommu_unmap live
 * here as map() / unmap().
 */
export class IommuDomain {
  /** The machine's domain number (reasons and invariants name domains by it): one sequence per machine. */
  readonly id: number;
  /** Driver that allocated the domain (domain->owner). */
  readonly driver: IommuDriver;
  readonly type: IommuDomainType;
  /** DMA-API default domain or a user (UNMANAGED) one; the registry marks default domains. */
  use: PagingUse | undefined;
  /** Geometry: one aperture on x86, one per DMA window on PPC64. force_aperture is always true. */
  apertures: Aperture[];
  /** pgsize_bitmap, log2 byte sizes ascending (the hot-path form). */
  pgsizesLg2: number[];
  readonly pt: IoPageTable | undefined;
  /** Stage-2 parent of a nested domain. */
  readonly parent: IommuDomain | undefined;
  /** domain->dirty_ops is set (allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING). */
  readonly dirtyOps: boolean;
  /** Dirty tracking switched on (set_dirty_tracking). */
  dirtyTracking = false;
  /** enforce_cache_coherency() succeeded: every IOPTE forces snooping. */
  enforcingCoherency = false;
  readonly nestParent: boolean;
  /** Driver-private state (mock nested iotlb array, pagetable_type...). */
  readonly priv: Record<string, unknown>;
  /** What this domain believes it mapped (units of the smallest page). */
  readonly mapped = new MappedRanges();
  /** Devices (by bdf or mock name) whose group is attached now. */
  readonly users = new Set<string>();
  freed = false;
  /** Scratch for map_pages' mapped count (the map loop allocates nothing). */
  private readonly out = { mapped: 0 };

  constructor(init: {
    driver: IommuDriver;
    type: IommuDomainType;
    use?: PagingUse;
    pt?: IoPageTable;
    apertures?: Aperture[];
    pgsizesLg2?: number[];
    parent?: IommuDomain;
    dirtyOps?: boolean;
    nestParent?: boolean;
    priv?: Record<string, unknown>;
  }) {
    this.driver = init.driver;
    this.id = init.driver.ctx.domainIds.next++;
    this.type = init.type;
    this.use = init.type === "paging" ? (init.use ?? "unmanaged") : undefined;
    this.pt = init.pt;
    this.apertures = init.apertures ?? (init.pt ? [...init.pt.apertures] : []);
    this.pgsizesLg2 = init.pgsizesLg2 ?? (init.pt ? [...init.pt.pgsizesLg2] : []);
    this.parent = init.parent;
    this.dirtyOps = init.dirtyOps ?? false;
    this.nestParent = init.nestParent ?? false;
    this.priv = init.priv ?? {};
  }

  /** pgsize_bitmap as the uapi and iommufd see it. */
  get pgsizeBitmap(): bigint {
    return lg2ToBitmap(this.pgsizesLg2);
  }

  /** Smallest page size in bytes. */
  get minPageSize(): bigint {
    return this.pgsizesLg2.length === 0 ? 0n : 1n << BigInt(this.pgsizesLg2[0]);
  }

  get isPaging(): boolean {
    return this.type === "paging";
  }

  /** True when [iova, iova+len) lies inside one aperture. */
  inAperture(iova: bigint, len: bigint): boolean {
    if (len === 0n) return false;
    const last = iova + len - 1n;
    return this.apertures.some((a) => iova >= a.start && last <= a.last);
  }

  /**
   * iommu_map(): split [iova, iova+size) into the largest pages alignment
   * and pgsize_bitmap allow, one map_pages call per run; on failure undo
   * what was mapped and throw. Checks, in the core's order: a paging
   * domain (EINVAL), map ops and a bitmap (ENODEV), iova/paddr/size aligned
   * to the smallest page (EINVAL).
   */
  map(iova: bigint, paddr: bigint, size: bigint, prot: number): void {
    this.assertLive();
    if (this.type !== "paging") fail(EINVAL, `iommu_map on a ${this.type} domain: only paging domains map`);
    const pt = this.pt;
    if (pt === undefined || this.pgsizesLg2.length === 0) {
      fail(ENODEV, "iommu_map: the domain has no map_pages or an empty pgsize_bitmap");
    }
    const unitLg2 = pt.unitLg2;
    const minLg2 = this.pgsizesLg2[0];
    const minMask = (1n << BigInt(minLg2)) - 1n;
    if (((iova | paddr | size) & minMask) !== 0n) {
      fail(
        EINVAL,
        `iommu_map: iova 0x${iova.toString(16)}, paddr 0x${paddr.toString(16)} and size 0x${size.toString(16)} ` +
          `must be aligned to the smallest page (0x${(minMask + 1n).toString(16)})`,
      );
    }
    if (size === 0n) return;
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) {
      fail(EINVAL, "map_pages: prot has neither IOMMU_READ nor IOMMU_WRITE");
    }
    const u = BigInt(unitLg2);
    this.mapUnits(pt, Number(iova >> u), Number(paddr >> u), Number(size >> u), prot);
  }

  /**
   * iommu_map() of physical runs laid end to end from `iova`: run i maps
   * runs.len[i] 4 KiB pages from runs.pfn[i] (the first run starting
   * `skip` bytes in), `length` bytes in all. Exactly one map() per run,
   * in order (same checks, same splitting, same errno and reason), on
   * numbers: iommufd maps a pinned area with it. On failure every run
   * this call mapped is unmapped before the error propagates.
   */
  mapRuns(iova: bigint, runs: PfnRuns, skip: number, length: bigint, prot: number): void {
    const pt = this.pt;
    const fast =
      !this.freed &&
      this.type === "paging" &&
      pt !== undefined &&
      pt.unitLg2 === 12 &&
      this.pgsizesLg2.length > 0 &&
      (prot & (IOMMU_READ | IOMMU_WRITE)) !== 0 &&
      skip === 0 &&
      (iova & 0xfffn) === 0n &&
      (length & 0xfffn) === 0n;
    if (!fast) {
      this.mapRunsBig(iova, runs, skip, length, prot);
      return;
    }
    const start = Number(iova >> 12n);
    let cur = start;
    let left = Number(length >> 12n);
    const minPages = POW2[this.pgsizesLg2[0] - 12];
    const bulk = pt.mapLeaves !== undefined;
    // each run is at most one more recorded run: grow the record once, not by doubling
    if (bulk) this.mapped.reserve(runs.count);
    try {
      for (let r = 0; r < runs.count && left > 0; r++) {
        const pa = runs.pfn[r];
        const n = Math.min(runs.len[r], left);
        if (bulk && r + 1 < runs.count && runs.len[r + 1] === n) {
          const e = this.leafStretch(runs, r, n, cur, left);
          if (e > r + 1) {
            const err = this.mapLeafStretch(pt, runs, r, e - r, n, cur, prot);
            const done = this.out.mapped;
            cur += done * n;
            left -= done * n;
            if (err !== 0) {
              fail(
                -err,
                `map_pages failed at iova 0x${(BigInt(cur) << 12n).toString(16)} (${errnoName(err)})`,
              );
            }
            r = e - 1;
            continue;
          }
        }
        if (minPages !== 1 && (cur % minPages !== 0 || pa % minPages !== 0 || n % minPages !== 0)) {
          // map() refuses it with the core's EINVAL and reason
          this.map(BigInt(cur) << 12n, BigInt(pa) << 12n, BigInt(n) << 12n, prot);
        } else {
          this.mapUnits(pt, cur, pa, n, prot);
        }
        cur += n;
        left -= n;
      }
    } catch (e) {
      if (cur > start) this.unmapUnits(start, cur - start);
      throw e;
    }
  }

  /**
   * End of the stretch of runs from r that are each exactly one page of a
   * supported size (n units, a power of two) with IOVA and pa aligned to
   * it, all inside `left`: for such a run iommu_pgsize picks that size,
   * count 1, so the stretch is one leaf per run. r + 1 when there is none.
   */
  private leafStretch(runs: PfnRuns, r: number, n: number, cur: number, left: number): number {
    if ((n & (n - 1)) !== 0 || n > 0x40000000 || !this.pgsizesLg2.includes(log2Floor(n) + 12)) return r + 1;
    const m = n - 1;
    // an aligned start stays aligned: each leaf advances the IOVA by n
    if ((cur <= 0x7fffffff ? cur & m : cur % n) !== 0) return r + 1;
    let e = r;
    let room = left;
    const { pfn, len } = runs;
    // at most STRETCH runs: the batch functions are then called often with short
    // loops, so V8 optimizes them as a whole early instead of only on-stack-replacing one long loop
    const count = Math.min(runs.count, r + STRETCH);
    while (e < count && room >= n && len[e] === n && (pfn[e] & m) === 0) {
      e++;
      room -= n;
    }
    return e === r ? r + 1 : e;
  }

  /**
   * Map `k` runs of one n-unit leaf each from run r at `cur` through the
   * table's batch op: the same table writes and bookkeeping as one
   * mapUnits per run. Returns 0 or the -errno of the leaf it stopped at;
   * `out.mapped` is the leaves installed and recorded (the caller raises
   * the error as mapUnits would and unmaps everything from its start in
   * one call, as the per-run loop does).
   */
  private mapLeafStretch(
    pt: IoPageTable,
    runs: PfnRuns,
    r: number,
    k: number,
    n: number,
    cur: number,
    prot: number,
  ): number {
    const out = this.out;
    out.mapped = 0;
    const err = pt.mapLeaves!(cur, runs.pfn, r, k, log2Floor(n) + 12, prot, out);
    const done = out.mapped;
    this.mapped.addLeaves(cur, n, runs.pfn, r, done, prot & (IOMMU_READ | IOMMU_WRITE));
    return err;
  }

  /** mapRuns on bigints, one map() per run (units other than 4 KiB, unaligned arguments). */
  private mapRunsBig(iova: bigint, runs: PfnRuns, skip: number, length: bigint, prot: number): void {
    let cur = iova;
    let left = length;
    let sk = BigInt(skip);
    try {
      for (let r = 0; r < runs.count && left > 0n; r++) {
        const pa = BigInt(runs.pfn[r]) * 4096n + sk;
        let len = BigInt(runs.len[r]) * 4096n - sk;
        if (len > left) len = left;
        sk = 0n;
        this.map(cur, pa, len, prot);
        cur += len;
        left -= len;
      }
    } catch (e) {
      if (cur > iova) this.unmap(iova, cur - iova);
      throw e;
    }
  }

  /** The core's split-and-map loop on unit numbers (arguments checked); undoes itself on failure. */
  private mapUnits(pt: IoPageTable, start: number, startPa: number, total: number, prot: number): void {
    if (total === 0) return;
    const unitLg2 = pt.unitLg2;
    const out = this.out;
    let cur = start;
    let pa = startPa;
    let left = total;
    let err = 0;
    while (left > 0) {
      const count = iommuPgsizeCount(this.pgsizesLg2, unitLg2, cur, pa, left);
      out.mapped = 0;
      err = pt.mapPages(cur, pa, pgsizePick, count, prot, out);
      left -= out.mapped;
      if (err !== 0) break;
      cur += out.mapped;
      pa += out.mapped;
    }
    const done = total - left;
    if (err !== 0) {
      // The core unmaps [iova, iova + mapped) itself when a driver fails midway.
      if (done > 0) this.unmapUnits(start, done);
      fail(
        -err,
        `map_pages failed at iova 0x${(BigInt(cur) << BigInt(unitLg2)).toString(16)} (${errnoName(err)})`,
      );
    }
    this.mapped.add(start, total, startPa, prot & (IOMMU_READ | IOMMU_WRITE));
  }

  /**
   * iommu_unmap(): bytes unmapped, which can exceed `size` when the range
   * ends inside a large page, and is short when it meets a hole or starts
   * inside a large page. Misaligned arguments unmap nothing (0).
   */
  unmap(iova: bigint, size: bigint): bigint {
    this.assertLive();
    if (this.type !== "paging" || this.pt === undefined) return 0n;
    const minMask = (1n << BigInt(this.pgsizesLg2[0])) - 1n;
    if (((iova | size) & minMask) !== 0n || size === 0n) return 0n;
    const unitLg2 = this.pt.unitLg2;
    const done = this.unmapUnits(Number(iova >> BigInt(unitLg2)), Number(size >> BigInt(unitLg2)));
    return BigInt(done) << BigInt(unitLg2);
  }

  private unmapUnits(iova: number, size: number): number {
    const pt = this.pt!;
    let done = 0;
    while (done < size) {
      const count = iommuPgsizeCount(this.pgsizesLg2, pt.unitLg2, iova + done, iova + done, size - done);
      const n = pt.unmapPages(iova + done, pgsizePick, count);
      if (n === 0) break;
      done += n;
    }
    this.mapped.remove(iova, done);
    return done;
  }

  /** iommu_iova_to_phys(): 0n for a hole; identity domains return the IOVA. */
  iovaToPhys(iova: bigint): bigint {
    if (this.type === "identity") return iova;
    if (this.type !== "paging" || this.pt === undefined) return 0n;
    return this.pt.iovaToPhys(iova);
  }

  /** set_dirty_tracking(); EOPNOTSUPP without dirty ops (the core checks before the driver). */
  setDirtyTracking(enable: boolean): void {
    this.assertLive();
    if (!this.dirtyOps) fail(EOPNOTSUPP, "the domain has no dirty_ops (not allocated with DIRTY_TRACKING)");
    this.driver.setDirtyTracking(this, enable);
  }

  /**
   * read_and_clear_dirty(): calls `record(iova, len)` (bytes) for each dirty
   * piece of [iova, iova+size). With `noClear` (IOMMU_DIRTY_NO_CLEAR) the
   * dirty bits stay set. EINVAL when tracking is off (drivers refuse a
   * bitmap read then).
   */
  readAndClearDirty(
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: (iova: bigint, len: bigint) => void,
  ): void {
    this.assertLive();
    if (!this.dirtyOps || this.pt === undefined) fail(EOPNOTSUPP, "the domain has no dirty_ops");
    if (!this.dirtyTracking) fail(EINVAL, "read_and_clear_dirty with dirty tracking disabled");
    const u = BigInt(this.pt.unitLg2);
    const rc = this.pt.readAndClearDirty(Number(iova >> u), Number(size >> u), noClear, (i, l) =>
      record(BigInt(i) << u, BigInt(l) << u),
    );
    if (rc !== 0) fail(-rc, "read_and_clear_dirty: range outside the table");
  }

  /** ops->enforce_cache_coherency(): true when the domain now forces snooping. */
  enforceCacheCoherency(): boolean {
    this.assertLive();
    if (this.type !== "paging") return false;
    if (this.enforcingCoherency) return true;
    this.enforcingCoherency = this.driver.enforceCacheCoherency(this);
    return this.enforcingCoherency;
  }

  /** For m.debug.hwpt: the root and top level of a paging domain's table. */
  ptInfo(): PtInfo {
    if (this.pt === undefined) fail(EINVAL, `a ${this.type} domain has no page table`);
    return this.pt.info();
  }

  /** The page table level by level (empty for tables outside simulated memory). */
  ptDump(): PtDumpEntry[] {
    return this.pt?.dump?.() ?? [];
  }

  /** For m.debug.hwpt: a domain made of several DMA windows (sPAPR TCE) reports each; others none. */
  debugWindows(): TceWindowDebugInfo[] | undefined {
    return undefined;
  }

  /** Live page-table frames. */
  frames(): number {
    return this.freed ? 0 : (this.pt?.frames() ?? 0);
  }

  /** ops->free(): returns every table frame. The caller has detached every device. */
  free(): void {
    if (this.freed) return;
    if (this.users.size > 0) throw new Error(`domain ${this.id} freed while attached to ${[...this.users]}`);
    this.freed = true;
    this.pt?.destroy();
    this.mapped.clear();
    this.driver.domainFreed(this);
  }

  private assertLive(): void {
    if (this.freed) throw new Error(`domain ${this.id} used after free`);
  }
}
