import type { KernelCtx, TceWindowDebugInfo } from "../../kernel/kctx.js";
import type { PfnRuns } from "../../mm/pfn-runs.js";
import { IOMMU_READ, IOMMU_WRITE } from "../../pt/types.js";
import { EINVAL, EOPNOTSUPP, fail } from "../../uapi/errno.js";
import { IOMMU_HW_INFO_TYPE_DEFAULT } from "../../uapi/iommufd.js";
import { copyStructFromUser, decode, encode } from "../../uapi/struct.js";
import type { IommuDevice } from "../device.js";
import { dmaSegments } from "../dma-segments.js";
import { IommuDomain } from "../domain.js";
import type { IommuUserData } from "../driver.js";
import type { IommuGroup } from "../group.js";
import { type SpaprMachineOptions, SpaprPlatform, SpaprTableGroup } from "../spapr-platform.js";
import type { TceTable } from "../spapr-tce-table.js";
import {
  IOMMU_HW_INFO_SPAPR_TCE_DDW,
  IOMMU_HW_INFO_TYPE_SPAPR_TCE,
  IOMMU_HWPT_DATA_SPAPR_TCE,
  iommu_hw_info_spapr_tce,
  iommu_hwpt_spapr_tce,
  SPAPR_MAX_WINDOWS,
  type SpaprWindowSpec,
} from "../spapr-uapi.js";
import { TceWindowSet } from "../spapr-windows.js";
import type { DmaTranslation, HwInfo, IommuCap, ResvRegion } from "../types.js";
import { DriverBase } from "./common.js";

/** The RFC's paging domain: one 1 GiB window of 4 KiB TCEs at bus address 0, one level. */
export const SPAPR_DEFAULT_PAGING_WINDOW: SpaprWindowSpec = {
  startAddr: 0n,
  windowSize: 1n << 30n,
  pageShift: 12,
  levels: 1,
};

/** What a TCE grants for a prot: WRITE comes with READ. */
function tceProt(prot: number): number {
  return prot & IOMMU_WRITE ? prot | IOMMU_READ : prot;
}

/**
 * A paging domain of TCE windows. Every TCE the model writes is readable
 * (src/pt's spapr_tce format, as pnv_tce_xchg forces READ with WRITE), so
 * the domain records WRITE as READ|WRITE: what it believes matches the bytes.
 */
class SpaprTceDomain extends IommuDomain {
  override map(iova: bigint, paddr: bigint, size: bigint, prot: number): void {
    super.map(iova, paddr, size, tceProt(prot));
  }

  override mapRuns(iova: bigint, runs: PfnRuns, skip: number, length: bigint, prot: number): void {
    super.mapRuns(iova, runs, skip, length, tceProt(prot));
  }

  /** The domain's windows, ascending. */
  get windows(): readonly TceTable[] {
    return (this.pt as TceWindowSet).tables;
  }

  override debugWindows(): TceWindowDebugInfo[] {
    const p = (this.driver as SpaprTceIommuDriver).platform;
    return this.windows.map((t) => t.debugInfo(p.slotOf(t.start)));
  }
}

/**
 * arch/powerpc/kernel/iommu.c spapr_tce_iommu_ops with the PPC64 IOMMUFD
 * RFC and Jason Gunthorpe's review applied:
 * - a static PLATFORM default domain (the arch DMA ops own the PE's tables;
 *   the kernel's bypass window at 1<<59 on powernv);
 * - a static BLOCKED domain whose attach never fails: it takes ownership of
 *   the table_group (the kernel's windows go away) and leaves the TVEs to
 *   the owner (the legacy VFIO container programs them);
 * - PAGING domains from domain_alloc_paging, each with its own windows
 *   (driver data at IOMMU_HWPT_ALLOC, or the RFC's 1 GiB default) and an
 *   aperture per window.
 * Device DMA is translated by the PE's TVEs: whichever tables the group's
 * current domain puts there, read by the hardware walker.
 */
export class SpaprTceIommuDriver extends DriverBase {
  readonly name = "spapr" as const;
  readonly platform: SpaprPlatform;
  override readonly platformDomain: IommuDomain;
  private readonly tableGroups = new Map<number, SpaprTableGroup>();

  constructor(ctx: KernelCtx, opts: SpaprMachineOptions = {}) {
    super(ctx, false);
    this.platform = new SpaprPlatform(ctx.phys, ctx.frames, opts);
    this.platformDomain = new IommuDomain({ driver: this, type: "platform" });
  }

  /** Windows a legacy VFIO container owns live outside any domain: count them too. */
  override counters(): Record<string, number> {
    return { spaprTceTableFrames: this.platform.ownerTableFrames() };
  }

  /** iommu_group_get_iommudata(): the PE behind an iommu_group. */
  tableGroup(group: IommuGroup): SpaprTableGroup {
    let tg = this.tableGroups.get(group.id);
    if (tg === undefined) {
      tg = new SpaprTableGroup(group.id, this.platform);
      this.tableGroups.set(group.id, tg);
    }
    return tg;
  }

  /** spapr_tce_iommu_capable(): only CACHE_COHERENCY. */
  capable(_dev: IommuDevice, cap: IommuCap): boolean {
    return cap === "CACHE_COHERENCY";
  }

  /** No get_resv_regions: the gaps between windows come from the aperture list. */
  resvRegions(_dev: IommuDevice): ResvRegion[] {
    return [];
  }

  /** hw_info (model extension): the PE's window slots, page sizes and levels. */
  hwInfo(_dev: IommuDevice, reqType: number): HwInfo {
    if (reqType !== IOMMU_HW_INFO_TYPE_DEFAULT && reqType !== IOMMU_HW_INFO_TYPE_SPAPR_TCE) {
      fail(EOPNOTSUPP, `sPAPR TCE reports only IOMMU_HW_INFO_TYPE_SPAPR_TCE (asked for type ${reqType})`);
    }
    const p = this.platform;
    return {
      type: IOMMU_HW_INFO_TYPE_SPAPR_TCE,
      data: encode(iommu_hw_info_spapr_tce, {
        flags: IOMMU_HW_INFO_SPAPR_TCE_DDW,
        max_dynamic_windows_supported: p.maxWindows,
        pgsizes: p.pgsizes,
        max_levels: p.maxLevels,
        dma32_window_start: p.tce32Start,
        dma32_window_size: p.tce32Size,
        dma64_window_start: p.ddwStart,
      }),
    };
  }

  /**
   * domain_alloc_paging_flags(): no HWPT flags are supported (EOPNOTSUPP);
   * driver data must be IOMMU_HWPT_DATA_SPAPR_TCE (EOPNOTSUPP otherwise).
   * Without data: the RFC's single 1 GiB 4 KiB window at 0.
   */
  allocPaging(_dev: IommuDevice | undefined, flags: number, userData?: IommuUserData): IommuDomain {
    if (flags !== 0)
      fail(EOPNOTSUPP, `sPAPR TCE paging domains take no HWPT flags (got 0x${flags.toString(16)})`);
    let specs = [SPAPR_DEFAULT_PAGING_WINDOW];
    if (userData !== undefined) {
      if (userData.type !== IOMMU_HWPT_DATA_SPAPR_TCE) {
        fail(
          EOPNOTSUPP,
          `sPAPR TCE takes only IOMMU_HWPT_DATA_SPAPR_TCE driver data (got type ${userData.type})`,
        );
      }
      specs = this.parseWindows(userData.bytes);
    }
    const tables: TceTable[] = [];
    try {
      for (const s of specs) {
        tables.push(
          this.platform.createTable(this.platform.slotOf(s.startAddr), s.pageShift, s.windowSize, s.levels),
        );
      }
    } catch (e) {
      for (const t of tables) t.destroy();
      throw e;
    }
    for (const t of tables) t.domainOwned = true;
    const pt = new TceWindowSet(tables);
    return this.track(new SpaprTceDomain({ driver: this, type: "paging", pt }));
  }

  /**
   * struct iommu_hwpt_spapr_tce, copied as iommu_copy_struct_from_user
   * does (short: EINVAL; a non-zero tail: E2BIG), then each window checked
   * against the platform: the slot's start address, a page size in
   * pgsizes, levels within max_levels, no slot used twice (EINVAL).
   */
  private parseWindows(bytes: Uint8Array): SpaprWindowSpec[] {
    const def = iommu_hwpt_spapr_tce;
    if (bytes.length < def.size) {
      fail(EINVAL, `iommu_hwpt_spapr_tce: data_len ${bytes.length} is below its size ${def.size}`);
    }
    const c = copyStructFromUser(def.size, bytes, def.name);
    if (!c.ok) fail(c.errno, c.reason);
    const v = decode(def, c.kbuf);
    const n = Number(v.num_windows);
    if (v.__reserved !== 0n) fail(EINVAL, "iommu_hwpt_spapr_tce: __reserved must be 0");
    if (n < 1 || n > SPAPR_MAX_WINDOWS) fail(EINVAL, `num_windows ${n} is not 1..${SPAPR_MAX_WINDOWS}`);
    const p = this.platform;
    const used = new Set<number>();
    const out: SpaprWindowSpec[] = [];
    for (let i = 0; i < n; i++) {
      const w = (k: "start_addr" | "window_size" | "page_shift" | "levels" | "flags" | "__reserved") =>
        v[`windows[${i}].${k}`];
      if (w("flags") !== 0n || w("__reserved") !== 0n)
        fail(EINVAL, `windows[${i}]: flags and __reserved must be 0`);
      const spec: SpaprWindowSpec = {
        startAddr: w("start_addr"),
        windowSize: w("window_size"),
        pageShift: Number(w("page_shift")),
        levels: Number(w("levels")),
      };
      const slot = p.slotOf(spec.startAddr);
      if (slot < 0) {
        fail(
          EINVAL,
          `windows[${i}].start_addr 0x${spec.startAddr.toString(16)} is neither window slot ` +
            `(0x${p.tce32Start.toString(16)} or 0x${p.ddwStart.toString(16)}): the platform picks bus addresses`,
        );
      }
      if (used.has(slot)) fail(EINVAL, `windows[${i}]: slot ${slot} is already described`);
      used.add(slot);
      if (spec.pageShift >= 64 || (p.pgsizes & (1n << BigInt(spec.pageShift))) === 0n) {
        fail(
          EINVAL,
          `windows[${i}]: 2^${spec.pageShift} is not in the platform's pgsizes 0x${p.pgsizes.toString(16)}`,
        );
      }
      out.push(spec);
    }
    return out;
  }

  /** The PLATFORM domain is every group's default (ops->default_domain). */
  defaultDomainType(_dev: IommuDevice): "platform" {
    return "platform";
  }

  /**
   * attach_dev(): BLOCKED and PLATFORM never fail (ownership of the
   * table_group moves with them); a paging domain's windows must be slots
   * this PHB has, which holds for every domain this driver built.
   */
  attachDev(domain: IommuDomain, _dev: IommuDevice): void {
    if (domain.type !== "paging") return;
    for (const t of (domain as SpaprTceDomain).windows) {
      if (this.platform.slotOf(t.start) < 0)
        fail(EINVAL, `window at 0x${t.start.toString(16)} is not a slot of this PHB`);
    }
  }

  enforceCacheCoherency(_domain: IommuDomain): boolean {
    return false;
  }

  /**
   * What the PE's TVEs do with a DMA: the windows of the group's paging
   * domain, the owner's windows while blocked, or the kernel's while on
   * the platform domain (powernv: the 64-bit bypass window at 1<<59 maps
   * all of RAM; the kernel's 32-bit table maps nothing the model uses).
   */
  dmaTranslate(dev: IommuDevice, iova: bigint, len: number, write: boolean): DmaTranslation {
    const d = dev.group.domain;
    if (d.type === "platform") return this.platformTranslate(iova, len);
    const windows =
      d.type === "paging" ? (d as SpaprTceDomain).windows : this.tableGroup(dev.group).windows();
    if (windows.length === 0) return { ok: false, addr: iova, reason: "blocked" };
    return dmaSegments(iova, len, (cur) => {
      const t = windows.find((w) => w.contains(cur));
      return t === undefined ? { ok: false, reason: "out-of-range" } : t.translate(cur, write);
    });
  }

  private platformTranslate(iova: bigint, len: number): DmaTranslation {
    const p = this.platform;
    if (p.kind === "powernv" && iova >= p.ddwStart) {
      const pa = iova - p.ddwStart;
      let top = 1n;
      while (top < this.ctx.phys.limitBytes) top <<= 1n;
      if (pa + BigInt(len) <= top) return { ok: true, segments: [{ pa: Number(pa), len }] };
      return { ok: false, addr: iova, reason: "out-of-range" };
    }
    if (iova >= p.tce32Start && iova < p.tce32Start + p.tce32Size) {
      return { ok: false, addr: iova, reason: "not-present" };
    }
    return { ok: false, addr: iova, reason: "out-of-range" };
  }
}
