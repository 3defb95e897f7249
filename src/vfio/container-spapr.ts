import { SpaprTceIommuDriver } from "../iommu/drivers/spapr.js";
import type { IommuGroup } from "../iommu/group.js";
import type { SpaprTableGroup } from "../iommu/spapr-platform.js";
import type { TceTable } from "../iommu/spapr-tce-table.js";
import type { KernelCtx, TceWindowDebugInfo } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { accountMmLockedVm } from "../mm/locked-vm.js";
import type { MmStruct } from "../mm/mm-struct.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import {
  EBUSY,
  EFAULT,
  EINVAL,
  ENODEV,
  ENOENT,
  ENOMEM,
  ENOSPC,
  ENOTTY,
  ENXIO,
  EPERM,
  fail,
  rethrowWith,
} from "../uapi/errno.js";
import { PAGE_SHIFT } from "../uapi/linux.js";
import { offsetOfEnd } from "../uapi/struct.js";
import {
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_EEH_PE_OP,
  VFIO_IOMMU_DISABLE,
  VFIO_IOMMU_ENABLE,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_SPAPR_INFO_DDW,
  VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
  VFIO_IOMMU_SPAPR_TCE_CREATE,
  VFIO_IOMMU_SPAPR_TCE_GET_INFO,
  VFIO_IOMMU_SPAPR_TCE_REMOVE,
  VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SPAPR_TCE_IOMMU,
  VFIO_SPAPR_TCE_v2_IOMMU,
  vfio_iommu_spapr_register_memory,
  vfio_iommu_spapr_tce_create,
  vfio_iommu_spapr_tce_info,
  vfio_iommu_spapr_tce_remove,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from "../uapi/vfio.js";
import type { VfioIommuBackend, VfioIommuDriver } from "./container.js";
import { runsView, type SpaprTceDebugInfo, type VfioBackendDebugInfo } from "./debug-view.js";
import {
  type MmIommuMem,
  type MmIommuRegistry,
  mmIommuMappedDec,
  mmIommuMappedInc,
  mmIommuUaToHpa,
} from "./spapr-prereg.js";
import { vfioCopyInStruct } from "./uaccess.js";

const MAX_TABLES = 2;

/** A TCE as a direction (enum dma_data_direction) turned into IOMMU prot bits. */
type Prot = number;

function hex(x: bigint | number): string {
  return `0x${x.toString(16)}`;
}

/**
 * struct tce_container (drivers/vfio/vfio_iommu_spapr_tce.c): the legacy
 * VFIO container's sPAPR TCE backend, v1 (VFIO_SPAPR_TCE_IOMMU: ENABLE
 * charges the whole 32-bit window, MAP_DMA pins page by page) or v2
 * (VFIO_SPAPR_TCE_v2_IOMMU: memory pre-registered per mm, windows created
 * and removed by the user). Its windows are TCE tables it programs into
 * every attached group's table_group (the PE's TVEs) while the groups sit
 * on the BLOCKED domain.
 */
export class SpaprTceContainer implements VfioIommuBackend {
  private enabled = false;
  private defWindowPending = false;
  /** Pages ENABLE charged (v1). */
  private lockedPages = 0;
  /** container->mm: set by the first ioctl that needs one; others are EPERM. */
  private mm: MmStruct | null = null;
  readonly tables: (TceTable | undefined)[] = new Array(MAX_TABLES).fill(undefined);
  /** it_allocated_size of each table, in pages (uncharged when the table goes). */
  private readonly tablePages = new Map<TceTable, number>();
  readonly groups: IommuGroup[] = [];
  /** container->prereg_list. */
  private readonly prereg: MmIommuMem[] = [];
  /** Regions unregistered while TCEs still pointed into them (the kernel orphans them). */
  private readonly orphans: MmIommuMem[] = [];
  /** it_userspace: the user address behind each v2 TCE. */
  private readonly pua = new Map<TceTable, Map<number, bigint>>();
  /** v1: 4 KiB pages pinned for TCEs. */
  private v1Pinned = 0;

  constructor(
    private readonly k: KernelCtx,
    /** The machine's pre-registered regions (mm_iommu_*). */
    private readonly mmIommu: MmIommuRegistry,
    readonly v2: boolean,
  ) {}

  /** v1 TCE pins; pre-registered regions belong to the mm and are counted once each (allMmIommuRegions). */
  pinnedPages(): number {
    return this.v1Pinned;
  }

  /** The container's own charges: the v1 32-bit window and the TCE tables it created (prereg is per mm). */
  forEachLockedVm(cb: (mm: object, pages: number) => void): void {
    if (this.mm === null) return;
    let n = this.lockedPages;
    for (const p of this.tablePages.values()) n += p;
    cb(this.mm, n);
  }

  /** m.debug: the windows, their TCEs as runs (with the user address v2 recorded) and the registered memory. */
  debugInfo(): VfioBackendDebugInfo {
    const windows: TceWindowDebugInfo[] = [];
    const mappings: SpaprTceDebugInfo["mappings"] = [];
    this.tables.forEach((t, slot) => {
      if (t === undefined) return;
      windows.push(t.debugInfo(slot));
      if (mappings.length >= 4096) return;
      const pua = this.pua.get(t);
      const tceBytes = 1n << BigInt(t.pageShift);
      const perTce = 2 ** (t.pageShift - PAGE_SHIFT);
      t.leaves((unit) => {
        if (mappings.length >= 4096) return;
        const entry = unit / perTce;
        const e = t.get(entry);
        if (e === undefined) return;
        const iova = BigInt(entry) << BigInt(t.pageShift);
        const ua = pua?.get(entry);
        const prev = mappings.at(-1);
        if (
          prev !== undefined &&
          prev.slot === slot &&
          prev.last + 1n === iova &&
          prev.prot === e.prot &&
          // v2: one run per stretch of user memory; v1 records no user address: contiguous host pages
          (ua === undefined
            ? prev.ua === undefined && prev.pfn + Number((iova - prev.iova) >> BigInt(PAGE_SHIFT)) === e.pfn
            : prev.ua !== undefined && prev.ua + (iova - prev.iova) === ua)
        ) {
          prev.last += tceBytes;
          return;
        }
        mappings.push({ slot, iova, last: iova + tceBytes - 1n, prot: e.prot, pfn: e.pfn, ua });
      });
    });
    return {
      spapr: {
        v2: this.v2,
        enabled: this.enabled,
        windows,
        mappings,
        prereg: this.prereg.map((m) => ({
          ua: m.ua,
          size: BigInt(m.entries) << BigInt(PAGE_SHIFT),
          tces: Math.max(0, m.mapped - 1),
          pinnedRuns: runsView(m.runs),
        })),
      },
    };
  }

  // --- groups ---------------------------------------------------------------

  private tableGroupOf(group: IommuGroup): SpaprTableGroup | undefined {
    return group.driver instanceof SpaprTceIommuDriver ? group.driver.tableGroup(group) : undefined;
  }

  /** tce_iommu_attach_group(). */
  attachGroup(group: IommuGroup): void {
    const tg = this.tableGroupOf(group);
    if (tg === undefined) fail(ENODEV, `iommu_group ${group.id} has no sPAPR table_group`);
    if (this.v2 && tg.platform.maxWindows === 0) {
      fail(EINVAL, "a v2 container needs a platform with dynamic DMA windows");
    }
    if (!this.v2 && this.groups.length > 0) {
      fail(EBUSY, "a v1 container reuses the PE's tables and takes one group only");
    }
    if (this.groups.includes(group)) fail(EBUSY, `iommu_group ${group.id} is already attached`);
    // take_ownership (the group is on the BLOCKED domain already), then every existing window.
    for (let i = 0; i < MAX_TABLES; i++) {
      const t = this.tables[i];
      if (t !== undefined) tg.setWindow(i, t);
    }
    if (this.groups.length === 0 && this.tables[0] === undefined) this.defWindowPending = true;
    this.groups.push(group);
  }

  /** tce_iommu_detach_group(): the group's TVEs are unset; the tables stay with the container. */
  detachGroup(group: IommuGroup): void {
    const i = this.groups.indexOf(group);
    if (i < 0) return;
    this.groups.splice(i, 1);
    const tg = this.tableGroupOf(group)!;
    for (let n = 0; n < MAX_TABLES; n++) if (this.tables[n] !== undefined) tg.unsetWindow(n);
  }

  /** tce_iommu_release(): groups, windows (cleared and freed), registrations, ENABLE's charge. */
  release(): void {
    while (this.groups.length > 0) this.detachGroup(this.groups[0]);
    for (let n = 0; n < MAX_TABLES; n++) {
      const t = this.tables[n];
      if (t === undefined) continue;
      this.clear(t, t.itOffset, t.itSize);
      this.freeTable(t);
      this.tables[n] = undefined;
    }
    for (const mem of [...this.prereg]) this.preregFree(mem);
    const mm = this.mm;
    for (const mem of this.orphans.splice(0)) {
      // The kernel keeps an orphaned region pinned until the mm dies (and
      // WARNs then); the model frees it here so nothing outlives its owner.
      if (mm !== null && mem.mapped === 1 && this.mmIommu.put(mm, mem) === 0) {
        this.k.klog.printk(
          "warn",
          `mm_iommu: freed region 0x${mem.ua.toString(16)} left registered by UNREGISTER_MEMORY`,
        );
      }
    }
    this.disable();
  }

  // --- ioctls ---------------------------------------------------------------

  ioctl(task: Task, cmd: number, arg: bigint): number {
    if (cmd === VFIO_CHECK_EXTENSION) return spaprCheckExtension(Number(arg));
    const mm = task.mm as unknown as MmStruct;
    if (this.mm !== null && this.mm !== mm) {
      fail(EPERM, "the container belongs to another process's mm (tce_iommu_ioctl)");
    }
    switch (cmd) {
      case VFIO_IOMMU_SPAPR_TCE_GET_INFO:
        return this.getInfo(task, arg);
      case VFIO_IOMMU_MAP_DMA:
        return this.mapDma(task, arg);
      case VFIO_IOMMU_UNMAP_DMA:
        return this.unmapDma(task, arg);
      case VFIO_IOMMU_SPAPR_REGISTER_MEMORY:
        if (this.v2) return this.registerMemory(task, arg);
        break;
      case VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY:
        if (this.v2) return this.unregisterMemory(task, arg);
        break;
      case VFIO_IOMMU_ENABLE:
        if (!this.v2) return this.enable(task);
        break;
      case VFIO_IOMMU_DISABLE:
        if (!this.v2) {
          this.disable();
          return 0;
        }
        break;
      case VFIO_IOMMU_SPAPR_TCE_CREATE:
        if (this.v2) return this.create(task, arg);
        break;
      case VFIO_IOMMU_SPAPR_TCE_REMOVE:
        if (this.v2) return this.remove(task, arg);
        break;
      case VFIO_EEH_PE_OP:
        return fail(ENOTTY, "VFIO_EEH_PE_OP: EEH is not modelled");
    }
    return fail(
      ENOTTY,
      `the sPAPR TCE ${this.v2 ? "v2" : "v1"} container has no ioctl 0x${(cmd >>> 0).toString(16)} (v1: ENABLE/DISABLE; v2: REGISTER/UNREGISTER_MEMORY, TCE_CREATE/REMOVE)`,
    );
  }

  /** tce_iommu_mm_set(). */
  private mmSet(task: Task): MmStruct {
    const mm = task.mm as unknown as MmStruct;
    if (this.mm !== null && this.mm !== mm) fail(EPERM, "the container is bound to another mm");
    this.mm = mm;
    return mm;
  }

  private firstTableGroup(): SpaprTableGroup | undefined {
    return this.groups.length === 0 ? undefined : this.tableGroupOf(this.groups[0]);
  }

  /** VFIO_IOMMU_SPAPR_TCE_GET_INFO: ENXIO with no group; minsz 16; the ddw block only when argsz covers it. */
  private getInfo(task: Task, arg: bigint): number {
    const tg = this.firstTableGroup();
    if (tg === undefined) fail(ENXIO, "VFIO_IOMMU_SPAPR_TCE_GET_INFO: no group attached");
    const minsz = offsetOfEnd(vfio_iommu_spapr_tce_info, "dma32_window_size");
    const ddwsz = offsetOfEnd(vfio_iommu_spapr_tce_info, "ddw.levels");
    const {
      s: info,
      buf,
      argsz,
    } = vfioCopyInStruct(task, arg, vfio_iommu_spapr_tce_info, minsz, "VFIO_IOMMU_SPAPR_TCE_GET_INFO");
    const p = tg.platform;
    info.flags = 0;
    info.dma32_window_start = Number(p.tce32Start);
    info.dma32_window_size = Number(p.tce32Size);
    buf.fill(0, minsz, ddwsz);
    if (p.maxWindows > 0 && this.v2) {
      info.flags = VFIO_IOMMU_SPAPR_INFO_DDW;
      info["ddw.pgsizes"] = p.pgsizes;
      info["ddw.max_dynamic_windows_supported"] = p.maxWindows;
      info["ddw.levels"] = p.maxLevels;
    }
    task.copyToUser(arg, buf.subarray(0, argsz >= ddwsz ? ddwsz : minsz));
    return 0;
  }

  /** VFIO_IOMMU_ENABLE (v1): charge the whole 32-bit window to locked_vm. */
  private enable(task: Task): number {
    if (this.enabled) fail(EBUSY, "VFIO_IOMMU_ENABLE: already enabled");
    const tg = this.firstTableGroup();
    if (tg === undefined) fail(ENODEV, "VFIO_IOMMU_ENABLE: no group attached (the charge is per window)");
    if (tg.platform.tce32Size === 0n) fail(EPERM, "VFIO_IOMMU_ENABLE: the PE has no 32-bit window");
    const mm = this.mmSet(task);
    const pages = Number(tg.platform.tce32Size >> BigInt(PAGE_SHIFT));
    if (accountMmLockedVm(mm, pages, true) !== 0) {
      fail(ENOMEM, `VFIO_IOMMU_ENABLE: the 32-bit window's ${pages} pages are over RLIMIT_MEMLOCK`);
    }
    this.lockedPages = pages;
    this.enabled = true;
    return 0;
  }

  private disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    if (this.mm !== null) accountMmLockedVm(this.mm, this.lockedPages, false);
    this.lockedPages = 0;
  }

  /** The window holding bus address `ioba` (tce_iommu_find_table). */
  private findTable(ioba: bigint): number {
    for (let i = 0; i < MAX_TABLES; i++) {
      const t = this.tables[i];
      if (t === undefined) continue;
      const entry = ioba >> BigInt(t.pageShift);
      if (entry >= BigInt(t.itOffset) && entry < BigInt(t.itOffset + t.itSize)) return i;
    }
    return -1;
  }

  /**
   * VFIO_IOMMU_MAP_DMA, in the kernel's order: EPERM before ENABLE (v1) or
   * REGISTER_MEMORY (v2); minsz 32; flags beyond READ|WRITE EINVAL; the
   * pending default window is created; no window holds iova: ENXIO; size or
   * vaddr off the window's page size: EINVAL; neither READ nor WRITE:
   * EINVAL. An iova off the page size makes iommu_tce_put_param_check's
   * `||` evaluate to 1, which the ioctl returns as is.
   */
  private mapDma(task: Task, arg: bigint): number {
    if (!this.enabled) {
      fail(EPERM, `VFIO_IOMMU_MAP_DMA: ${this.v2 ? "no memory registered yet" : "VFIO_IOMMU_ENABLE first"}`);
    }
    const { s: map } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_dma_map,
      offsetOfEnd(vfio_iommu_type1_dma_map, "size"),
      "VFIO_IOMMU_MAP_DMA",
    );
    const { flags, vaddr, iova, size } = map;
    if ((flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) !== 0) {
      fail(EINVAL, `VFIO_IOMMU_MAP_DMA: flags 0x${flags.toString(16)} beyond READ|WRITE`);
    }
    this.createDefaultWindow();
    const num = this.findTable(iova);
    if (num < 0) fail(ENXIO, `VFIO_IOMMU_MAP_DMA: no DMA window holds iova ${hex(iova)}`);
    const t = this.tables[num]!;
    const mask = (1n << BigInt(t.pageShift)) - 1n;
    if ((size & mask) !== 0n || (vaddr & mask) !== 0n) {
      fail(
        EINVAL,
        `VFIO_IOMMU_MAP_DMA: size and vaddr must be aligned to the window's ${hex(mask + 1n)} pages`,
      );
    }
    let prot: Prot = 0;
    if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
    if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
    if (prot === 0) fail(EINVAL, "VFIO_IOMMU_MAP_DMA: neither READ nor WRITE (DMA_NONE)");
    if ((iova & mask) !== 0n) {
      this.k.klog.printk("info", `iommu_tce_put_param_check: ioba ${hex(iova)} unaligned; MAP_DMA returns 1`);
      return 1;
    }
    const pages = Number(size >> BigInt(t.pageShift));
    const entry = Number(iova >> BigInt(t.pageShift));
    this.checkEnd(t, entry, pages, "VFIO_IOMMU_MAP_DMA");
    if (this.v2) this.buildV2(t, entry, vaddr, pages, prot);
    else this.build(task, t, entry, vaddr, pages, prot);
    return 0;
  }

  /**
   * The kernel checks only the first page against the window end
   * (iommu_tce_check_ioba ignores npages) and would write TCEs past
   * it_size; the model refuses instead (docs/ppc64.md).
   */
  private checkEnd(t: TceTable, entry: number, pages: number, what: string): void {
    if (entry + pages > t.itOffset + t.itSize) {
      fail(EINVAL, `${what}: the range runs past the window's end (the kernel would write beyond it_size)`);
    }
  }

  /** VFIO_IOMMU_UNMAP_DMA: as MAP for the window and size; flags must be 0; nothing is written back. */
  private unmapDma(task: Task, arg: bigint): number {
    if (!this.enabled) fail(EPERM, "VFIO_IOMMU_UNMAP_DMA: the container is not enabled");
    const { s: unmap } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_dma_unmap,
      offsetOfEnd(vfio_iommu_type1_dma_unmap, "size"),
      "VFIO_IOMMU_UNMAP_DMA",
    );
    if (unmap.flags !== 0) fail(EINVAL, "VFIO_IOMMU_UNMAP_DMA: no flags are supported");
    const { iova, size } = unmap;
    this.createDefaultWindow();
    const num = this.findTable(iova);
    if (num < 0) fail(ENXIO, `VFIO_IOMMU_UNMAP_DMA: no DMA window holds iova ${hex(iova)}`);
    const t = this.tables[num]!;
    const mask = (1n << BigInt(t.pageShift)) - 1n;
    if ((size & mask) !== 0n) fail(EINVAL, `VFIO_IOMMU_UNMAP_DMA: size not a multiple of ${hex(mask + 1n)}`);
    if ((iova & mask) !== 0n) {
      this.k.klog.printk(
        "info",
        `iommu_tce_clear_param_check: ioba ${hex(iova)} unaligned; UNMAP_DMA returns 1`,
      );
      return 1;
    }
    const pages = Number(size >> BigInt(t.pageShift));
    const entry = Number(iova >> BigInt(t.pageShift));
    this.checkEnd(t, entry, pages, "VFIO_IOMMU_UNMAP_DMA");
    this.clear(t, entry, pages);
    return 0;
  }

  // --- TCEs -----------------------------------------------------------------

  /** iommu_tce_xchg_no_kill: write a TCE, returning what the entry held (cleared first). */
  private xchg(t: TceTable, entry: number, pfn: number, prot: Prot): number | undefined {
    const old = t.clear(entry);
    const r = t.map(entry, pfn, 1, prot);
    if (r < 0) {
      if (old !== undefined) t.map(entry, old.pfn, 1, old.prot);
      fail(-r, `TCE write at entry ${entry} failed`);
    }
    return old?.pfn;
  }

  /** tce_iommu_build (v1): pin each IOMMU page's first 4 KiB page, check its folio covers the TCE. */
  private build(task: Task, t: TceTable, entry: number, vaddr: bigint, pages: number, prot: Prot): void {
    const mm = task.mm as unknown as MmStruct;
    const write = (prot & IOMMU_WRITE) !== 0;
    let i = 0;
    try {
      for (; i < pages; i++) {
        const ua = vaddr + (BigInt(i) << BigInt(t.pageShift));
        let runs: PfnRuns;
        try {
          runs = mm.pinUserPages(ua, 1, write, "tce_iommu_use_page");
        } catch (e) {
          rethrowWith(e, "tce_iommu_use_page: pin_user_pages_fast failed: ", EFAULT);
        }
        const pfn = runs.pfn[0];
        const v = mm.vmas.find(Number(ua));
        if ((v?.pageSize ?? 4096) < 2 ** t.pageShift) {
          mm.unpinUserPages(runs);
          fail(
            EPERM,
            `the page at ${hex(ua)} is smaller than the window's ${2 ** t.pageShift}-byte TCE (tce_page_is_contained)`,
          );
        }
        this.v1Pinned++;
        let old: number | undefined;
        try {
          old = this.xchg(t, entry + i, pfn, prot);
        } catch (e) {
          mm.unpinUserPages(runs);
          this.v1Pinned--;
          throw e;
        }
        if (old !== undefined) {
          mm.unpinRange(old, 1);
          this.v1Pinned--;
        }
      }
    } catch (e) {
      this.clear(t, entry, i);
      throw e;
    }
  }

  /** tce_iommu_build_v2: every page must lie in pre-registered memory of a large enough page shift. */
  private buildV2(t: TceTable, entry: number, vaddr: bigint, pages: number, prot: Prot): void {
    const mm = this.mm!;
    const shift = t.pageShift;
    const pua = this.puaOf(t);
    let i = 0;
    try {
      for (; i < pages; i++) {
        const ua = vaddr + (BigInt(i) << BigInt(shift));
        const mem = this.mmIommu.lookup(mm, ua, 1n << BigInt(shift));
        if (mem === undefined)
          fail(EINVAL, `${hex(ua)} is not in pre-registered memory (REGISTER_MEMORY first)`);
        const pfn = mmIommuUaToHpa(mem, ua, shift);
        if (pfn < 0) {
          fail(
            EINVAL,
            `the registered region at ${hex(mem.ua)} cannot back 2^${shift}-byte TCEs (its page shift is ${mem.pageshift})`,
          );
        }
        const idx = Number((ua - mem.ua) >> BigInt(PAGE_SHIFT));
        if (mem.folioShift[idx] < shift) {
          fail(EPERM, `the page at ${hex(ua)} is smaller than the window's TCE (tce_page_is_contained)`);
        }
        if (mmIommuMappedInc(mem) < 0)
          fail(ENXIO, `the registered region at ${hex(mem.ua)} is being released`);
        let old: number | undefined;
        try {
          old = this.xchg(t, entry + i, pfn, prot);
        } catch (e) {
          mmIommuMappedDec(mem);
          throw e;
        }
        if (old !== undefined) this.unusePageV2(t, entry + i);
        pua.set(entry + i, ua);
      }
    } catch (e) {
      this.clear(t, entry, i);
      throw e;
    }
  }

  private puaOf(t: TceTable): Map<number, bigint> {
    let m = this.pua.get(t);
    if (m === undefined) {
      m = new Map();
      this.pua.set(t, m);
    }
    return m;
  }

  /** tce_iommu_unuse_page_v2: the region behind the entry loses one mapping. */
  private unusePageV2(t: TceTable, entry: number): void {
    const pua = this.puaOf(t);
    const ua = pua.get(entry);
    if (ua === undefined || this.mm === null) return;
    const mem = this.mmIommu.lookup(this.mm, ua, 1n << BigInt(t.pageShift));
    if (mem !== undefined) mmIommuMappedDec(mem);
    pua.delete(entry);
  }

  /** tce_iommu_clear: every TCE in the range goes; v1 unpins, v2 drops the region's mapping count. */
  private clear(t: TceTable, entry: number, pages: number): void {
    for (const e of t.present(entry, pages)) {
      const old = t.clear(e);
      if (old === undefined) continue;
      if (this.v2) this.unusePageV2(t, e);
      else {
        this.mm?.unpinRange(old.pfn, 1);
        this.v1Pinned--;
      }
    }
  }

  // --- windows --------------------------------------------------------------

  /** tce_iommu_create_default_window: 4 KiB pages, tce32_size, one level, at bus address 0. */
  private createDefaultWindow(): void {
    if (!this.defWindowPending) return;
    const tg = this.firstTableGroup();
    if (tg === undefined) fail(ENODEV, "no group to create the default window for");
    this.createWindow(PAGE_SHIFT, tg.platform.tce32Size, 1);
    this.defWindowPending = false;
  }

  /**
   * tce_iommu_create_window: first free slot (ENOSPC), a page size the PE
   * supports (EINVAL), get_table_size (0: EINVAL), the table's size charged
   * to locked_vm (ENOMEM), the platform's table, programmed into every
   * group. Returns the platform's start address.
   */
  private createWindow(pageShift: number, windowSize: bigint, levels: number): bigint {
    const num = this.tables.indexOf(undefined);
    if (num < 0) fail(ENOSPC, "both DMA window slots are in use (IOMMU_TABLE_GROUP_MAX_TABLES)");
    const tg = this.firstTableGroup();
    if (tg === undefined) fail(EINVAL, "no group");
    const p = tg.platform;
    if (pageShift >= 64 || (p.pgsizes & (1n << BigInt(pageShift))) === 0n) {
      fail(EINVAL, `2^${pageShift}-byte pages are not in the PE's pgsizes ${hex(p.pgsizes)}`);
    }
    const bytes = p.getTableSize(pageShift, windowSize, levels);
    if (bytes === 0n) {
      fail(
        EINVAL,
        `get_table_size refused page_shift ${pageShift}, window ${hex(windowSize)}, levels ${levels}`,
      );
    }
    const mm = this.mm;
    const pages = Number(bytes >> BigInt(PAGE_SHIFT));
    if (mm !== null && accountMmLockedVm(mm, pages, true) !== 0) {
      fail(ENOMEM, `the window's ${pages}-page TCE tables are over RLIMIT_MEMLOCK`);
    }
    let t: TceTable;
    try {
      t = p.createTable(num, pageShift, windowSize, levels);
    } catch (e) {
      // The kernel leaves the charge in place here (tce_iommu_create_table); the model undoes it.
      if (mm !== null) accountMmLockedVm(mm, pages, false);
      throw e;
    }
    this.tablePages.set(t, mm !== null ? pages : 0);
    for (const g of this.groups) this.tableGroupOf(g)!.setWindow(num, t);
    this.tables[num] = t;
    return t.start;
  }

  private freeTable(t: TceTable): void {
    const pages = this.tablePages.get(t) ?? 0;
    this.tablePages.delete(t);
    this.pua.delete(t);
    t.destroy();
    if (this.mm !== null && pages > 0) accountMmLockedVm(this.mm, pages, false);
  }

  /** VFIO_IOMMU_SPAPR_TCE_CREATE (v2). */
  private create(task: Task, arg: bigint): number {
    this.mmSet(task);
    if (this.groups.length === 0) fail(ENXIO, "VFIO_IOMMU_SPAPR_TCE_CREATE: no group attached");
    const minsz = offsetOfEnd(vfio_iommu_spapr_tce_create, "start_addr");
    const { s: create, buf } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_spapr_tce_create,
      minsz,
      "VFIO_IOMMU_SPAPR_TCE_CREATE",
    );
    if (create.flags !== 0) fail(EINVAL, "VFIO_IOMMU_SPAPR_TCE_CREATE: flags must be 0");
    this.createDefaultWindow();
    create.start_addr = this.createWindow(create.page_shift, create.window_size, create.levels);
    // A failing copy-out leaves the window created, as in the kernel (EFAULT).
    task.copyToUser(arg, buf.subarray(0, minsz));
    return 0;
  }

  /** VFIO_IOMMU_SPAPR_TCE_REMOVE (v2): the window holding start_addr goes (EINVAL when none). */
  private remove(task: Task, arg: bigint): number {
    this.mmSet(task);
    if (this.groups.length === 0) fail(ENXIO, "VFIO_IOMMU_SPAPR_TCE_REMOVE: no group attached");
    const { s: remove } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_spapr_tce_remove,
      offsetOfEnd(vfio_iommu_spapr_tce_remove, "start_addr"),
      "VFIO_IOMMU_SPAPR_TCE_REMOVE",
    );
    if (remove.flags !== 0) fail(EINVAL, "VFIO_IOMMU_SPAPR_TCE_REMOVE: flags must be 0");
    const start = remove.start_addr;
    if (this.defWindowPending && start === 0n) {
      this.defWindowPending = false;
      return 0;
    }
    const num = this.findTable(start);
    if (num < 0) fail(EINVAL, `VFIO_IOMMU_SPAPR_TCE_REMOVE: no window holds ${hex(start)}`);
    const t = this.tables[num]!;
    for (const g of this.groups) this.tableGroupOf(g)!.unsetWindow(num);
    this.clear(t, t.itOffset, t.itSize);
    this.freeTable(t);
    this.tables[num] = undefined;
    return 0;
  }

  // --- pre-registered memory ---------------------------------------------------

  /** VFIO_IOMMU_SPAPR_REGISTER_MEMORY (v2): also enables the container. */
  private registerMemory(task: Task, arg: bigint): number {
    const mm = this.mmSet(task);
    const { s: reg } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_spapr_register_memory,
      offsetOfEnd(vfio_iommu_spapr_register_memory, "size"),
      "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
    );
    if (reg.flags !== 0) fail(EINVAL, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY: flags must be 0");
    const { vaddr, size } = reg;
    if ((vaddr & 0xfffn) !== 0n || (size & 0xfffn) !== 0n || vaddr + size > (1n << 64n) - 1n) {
      fail(EINVAL, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY: vaddr and size must be page aligned and not wrap");
    }
    const entries = Number(size >> BigInt(PAGE_SHIFT));
    let mem = this.mmIommu.get(mm, vaddr, entries);
    if (mem !== undefined) {
      if (this.prereg.includes(mem)) {
        this.mmIommu.put(mm, mem);
        fail(EBUSY, `[${hex(vaddr)}, +${hex(size)}) is already registered with this container`);
      }
    } else {
      mem = this.mmIommu.new(mm, vaddr, entries);
    }
    this.prereg.push(mem);
    this.enabled = true;
    return 0;
  }

  /** VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY (v2): exactly a registered range (ENOENT otherwise). */
  private unregisterMemory(task: Task, arg: bigint): number {
    if (this.mm === null) fail(EPERM, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: nothing was registered");
    // the same struct as REGISTER_MEMORY
    const { s: reg } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_spapr_register_memory,
      offsetOfEnd(vfio_iommu_spapr_register_memory, "size"),
      "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
    );
    if (reg.flags !== 0) fail(EINVAL, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: flags must be 0");
    const { vaddr, size } = reg;
    if ((vaddr & 0xfffn) !== 0n || (size & 0xfffn) !== 0n) {
      fail(EINVAL, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: vaddr and size must be page aligned");
    }
    const mm = this.mm;
    const mem = this.mmIommu.get(mm, vaddr, Number(size >> BigInt(PAGE_SHIFT)));
    if (mem === undefined) fail(ENOENT, `[${hex(vaddr)}, +${hex(size)}) is not a registered region`);
    if (!this.prereg.includes(mem)) {
      this.mmIommu.put(mm, mem);
      fail(ENOENT, `[${hex(vaddr)}, +${hex(size)}) is registered by another container`);
    }
    const r = this.preregFree(mem);
    // The reference mmIommuGet took: its EBUSY (TCEs still use the region) is ignored by the kernel.
    if (this.mmIommu.put(mm, mem) !== 0 && r === 0) this.orphans.push(mem);
    return r === 0 ? 0 : fail(-r, "mm_iommu_put refused");
  }

  /** tce_iommu_prereg_free. */
  private preregFree(mem: MmIommuMem): number {
    const r = this.mmIommu.put(this.mm!, mem);
    if (r !== 0) return r;
    this.prereg.splice(this.prereg.indexOf(mem), 1);
    return 0;
  }
}

/** tce_iommu_ioctl(VFIO_CHECK_EXTENSION): both sPAPR types; EEH is not modelled (0). */
function spaprCheckExtension(ext: number): number {
  return ext === VFIO_SPAPR_TCE_IOMMU || ext === VFIO_SPAPR_TCE_v2_IOMMU ? 1 : 0;
}

/** The sPAPR TCE driver as the container's driver list sees it ("iommu-vfio-powerpc"), on a machine's regions. */
export function vfioIommuSpaprTceDriver(mmIommu: MmIommuRegistry): VfioIommuDriver {
  return {
    name: "iommu-vfio-powerpc",
    checkExtension: spaprCheckExtension,
    open(k, type) {
      if (type !== VFIO_SPAPR_TCE_IOMMU && type !== VFIO_SPAPR_TCE_v2_IOMMU) {
        fail(EINVAL, `tce_iommu_open: wrong IOMMU type ${type}`);
      }
      return new SpaprTceContainer(k, mmIommu, type === VFIO_SPAPR_TCE_v2_IOMMU);
    },
  };
}
