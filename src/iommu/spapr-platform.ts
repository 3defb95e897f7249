import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";
import { TCE_MAX_LEVELS } from "../pt/fmt/spapr-tce.js";
import { EINVAL, EPERM, fail } from "../uapi/errno.js";
import { lg2ToBitmap } from "./pgsize.js";
import { TceTable } from "./spapr-tce-table.js";
import { SPAPR_MAX_WINDOWS } from "./spapr-uapi.js";

/** Machine option `spapr: { platform, pgsizes }` (DESIGN.md "The PPC64 machine"). */
export interface SpaprMachineOptions {
  /**
   * "powernv" (default): bare-metal IODA2 PHB, the 64-bit window at 1<<59
   * (TVE#1 is selected by PCI address bit 59), up to 5 TCE levels.
   * "pseries": a PAPR guest's PHB as QEMU offers it with
   * dma64_win_addr=4 GiB: the 64-bit window at 4 GiB, one level.
   */
  platform?: "powernv" | "pseries";
  /**
   * IOMMU page sizes as log2 bytes (the device tree's
   * ibm,supported-tce-sizes). Default 4K, 64K, 16M; POWER9 reports
   * 4K, 64K, 2M, 1G; POWER8 adds 256M.
   */
  pgsizes?: number[];
}

const GIB = 1n << 30n;
/** TCE page sizes a PHB can have (pnv_ioda_parse_tce_sizes accepts what the DT lists). */
const KNOWN_PGSIZES = [12, 16, 21, 24, 28, 30];

/**
 * What every PE of the machine's PHB reports (struct iommu_table_group's
 * properties), fixed at boot.
 */
export class SpaprPlatform {
  readonly kind: "powernv" | "pseries";
  /** tce32_start: the default (32-bit) window's bus address. */
  readonly tce32Start = 0n;
  /**
   * tce32_size. powernv uses m32_pci_base (commonly 2 GiB) and QEMU's
   * pseries 1 GiB; the model takes 1 GiB for both so the one-level 4 KiB
   * default table is one 2 MiB allocation (the largest src/pt allocates).
   */
  readonly tce32Size = GIB;
  /** Bus address of window slot 1 (pe->tce_bypass_base / the DDW start). */
  readonly ddwStart: bigint;
  readonly pgsizesLg2: readonly number[];
  /** max_dynamic_windows_supported = IOMMU_TABLE_GROUP_MAX_TABLES. */
  readonly maxWindows: number = SPAPR_MAX_WINDOWS;
  /** max_levels: POWERNV_IOMMU_MAX_LEVELS, or 1 where the hypervisor builds the table. */
  readonly maxLevels: number;
  private readonly liveTables = new Set<TceTable>();

  constructor(
    readonly mem: PhysMem,
    readonly alloc: FrameAllocator,
    opts: SpaprMachineOptions = {},
  ) {
    this.kind = opts.platform ?? "powernv";
    if (this.kind !== "powernv" && this.kind !== "pseries")
      throw new Error(`unknown spapr platform ${this.kind}`);
    this.ddwStart = this.kind === "powernv" ? 1n << 59n : 4n * GIB;
    this.maxLevels = this.kind === "powernv" ? TCE_MAX_LEVELS : 1;
    const sizes = [...new Set(opts.pgsizes ?? [12, 16, 24])].sort((a, b) => a - b);
    for (const s of sizes) {
      if (!KNOWN_PGSIZES.includes(s)) throw new Error(`spapr pgsizes: 2^${s} is not a TCE page size`);
    }
    if (sizes[0] !== 12) throw new Error("spapr pgsizes must include 4 KiB (2^12)");
    this.pgsizesLg2 = sizes;
  }

  /** table_group->pgsizes: bit n set = 2^n-byte IOMMU pages. */
  get pgsizes(): bigint {
    return lg2ToBitmap(this.pgsizesLg2);
  }

  /** Bus address of window slot `num` (create_table: num ? tce_bypass_base : tce32_start). */
  slotStart(num: number): bigint {
    return num === 0 ? this.tce32Start : this.ddwStart;
  }

  /** The slot a window starting at `start` occupies, or -1. */
  slotOf(start: bigint): number {
    if (start === this.tce32Start) return 0;
    if (start === this.ddwStart) return 1;
    return -1;
  }

  /** Highest end a slot's window may reach (slot 0 stays below slot 1 and 4 GiB). */
  slotLimit(num: number): bigint {
    if (num === 0) return this.ddwStart < 4n * GIB ? this.ddwStart : 4n * GIB;
    return 1n << 64n;
  }

  /**
   * ops->get_table_size (pnv_pci_ioda2_get_table_size): bytes the tables of
   * such a window take, twice (the hardware table and the userspace-address
   * copy). 0 when the shape is invalid. Charged to locked_vm by VFIO.
   */
  getTableSize(pageShift: number, windowSize: bigint, levels: number): bigint {
    if (
      levels < 1 ||
      levels > this.maxLevels ||
      windowSize <= 0n ||
      (windowSize & (windowSize - 1n)) !== 0n
    ) {
      return 0n;
    }
    const windowShift = windowSize.toString(2).length - 1;
    let entriesShift = windowShift - pageShift;
    if (entriesShift < 0) return 0n;
    let tceTableSize = 1n << BigInt(Math.max(12, entriesShift + 3));
    entriesShift = Math.floor((entriesShift + levels - 1) / levels);
    const direct = 1n << BigInt(Math.max(entriesShift + 3, 12));
    let bytes = 0n;
    for (let l = levels; l > 0; l--) {
      bytes += ((tceTableSize + direct - 1n) / direct) * direct;
      tceTableSize = (tceTableSize / direct) << 3n;
      if (tceTableSize < direct) tceTableSize = direct;
    }
    return bytes + bytes;
  }

  /**
   * ops->create_table for slot `num`: a TCE table at the slot's bus
   * address. EINVAL for a shape the platform refuses (levels, sizes,
   * a window crossing into the next slot); ENOMEM when memory runs out.
   */
  createTable(num: number, pageShift: number, windowSize: bigint, levels: number): TceTable {
    if (num < 0 || num >= this.maxWindows) fail(EPERM, `window slot ${num} does not exist`);
    if (levels < 1 || levels > this.maxLevels) {
      fail(EINVAL, `levels ${levels} is not 1..${this.maxLevels} (max_levels of this ${this.kind} PHB)`);
    }
    if (windowSize <= 0n || (windowSize & (windowSize - 1n)) !== 0n) {
      fail(EINVAL, `window size 0x${windowSize.toString(16)} is not a power of 2`);
    }
    if (windowSize < 1n << BigInt(pageShift)) {
      fail(EINVAL, `window size 0x${windowSize.toString(16)} is smaller than one 2^${pageShift} IOMMU page`);
    }
    const start = this.slotStart(num);
    if (start + windowSize > this.slotLimit(num)) {
      fail(
        EINVAL,
        `a 0x${windowSize.toString(16)}-byte window at 0x${start.toString(16)} would run past 0x${this.slotLimit(num).toString(16)}`,
      );
    }
    const t = new TceTable(this.mem, this.alloc, start, pageShift, windowSize, levels);
    this.liveTables.add(t);
    return t;
  }

  /** Table frames of live tables no paging domain owns (a VFIO container's windows), for leak counters. */
  ownerTableFrames(): number {
    let n = 0;
    for (const t of this.liveTables) {
      if (t.destroyed) this.liveTables.delete(t);
      else if (!t.domainOwned) n += t.frames();
    }
    return n;
  }
}

/**
 * struct iommu_table_group of one PE (one iommu_group): the tables an
 * external owner (the legacy VFIO sPAPR container) programmed into its two
 * TVEs. Which tables the hardware uses depends on the group's domain
 * (see SpaprTceIommuDriver.dmaTranslate): a paging domain's own windows,
 * these while the group is blocked (owned), the kernel's while on the
 * platform domain.
 */
export class SpaprTableGroup {
  /** table_group->tables[]: set_window / unset_window by the owner. */
  readonly tables: (TceTable | undefined)[] = new Array(SPAPR_MAX_WINDOWS).fill(undefined);

  constructor(
    readonly id: number,
    readonly platform: SpaprPlatform,
  ) {}

  /** ops->set_window: program slot `num` with `tbl` (opal_pci_map_pe_dma_window). */
  setWindow(num: number, tbl: TceTable): void {
    if (this.tables[num] !== undefined && this.tables[num] !== tbl) {
      throw new Error(`PE ${this.id}: window ${num} is already set`);
    }
    this.tables[num] = tbl;
  }

  /** ops->unset_window. */
  unsetWindow(num: number): void {
    this.tables[num] = undefined;
  }

  /** The windows programmed now, in slot order. */
  windows(): TceTable[] {
    return this.tables.filter((t): t is TceTable => t !== undefined);
  }
}
