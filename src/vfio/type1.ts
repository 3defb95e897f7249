import type { IommuDomain } from "../iommu/domain.js";
import type { IommuGroup } from "../iommu/group.js";
import { RESV_TYPE_NAMES } from "../iommu/types.js";
import type { KernelCtx } from "../kernel/kctx.js";
import type { Task } from "../kernel/task.js";
import { accountMmLockedVm } from "../mm/locked-vm.js";
import type { MmStruct } from "../mm/mm-struct.js";
import type { PfnRuns } from "../mm/pfn-runs.js";
import { IOMMU_READ, IOMMU_WRITE } from "../pt/types.js";
import {
  EACCES,
  EBUSY,
  EEXIST,
  EFAULT,
  EINVAL,
  ENOENT,
  ENOMEM,
  ENOSPC,
  ENOTTY,
  EOVERFLOW,
  fail,
  KernelError,
  rethrowWith,
} from "../uapi/errno.js";
import { PAGE_SIZE_B as PAGE } from "../uapi/linux.js";
import { offsetOf, offsetOfEnd, structView } from "../uapi/struct.js";
import {
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
  vfio_bitmap,
  vfio_info_cap_header,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_cap_migration,
  vfio_iommu_type1_info_dma_avail,
  vfio_iova_range,
} from "../uapi/vfio.js";
import type { VfioIommuBackend, VfioIommuDriver } from "./container.js";
import { runsView, type VfioBackendDebugInfo } from "./debug-view.js";
import { vfioCopyInStruct, vfioStructOut, writeCaps } from "./uaccess.js";

const U64_MAX = (1n << 64n) - 1n;
/** DIRTY_BITMAP_SIZE_MAX: the bitmap bytes for INT_MAX pages (vfio_iommu_type1.c). */
const DIRTY_BITMAP_SIZE_MAX = 0x10000000n;
/** x86-64 access_ok(): the range must end at or below TASK_SIZE_MAX (2^47 - 4 KiB). */
const USER_END = 0x7ffffffff000n;
/** A capability's fields after its vfio_info_cap_header (writeCaps adds the header). */
const capPayload = (bytes: Uint8Array) => bytes.subarray(vfio_info_cap_header.size);

/** struct vfio_dma: one MAP_DMA, pinned and mapped into every domain. */
interface VfioDma {
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  prot: number;
  runs: PfnRuns;
  /** The mm the pages were pinned from. */
  mm: MmStruct;
  /** dma->mm for locked_vm: the mapping task's, moved by a VADDR update from another process. */
  acct: MmStruct;
  /** VFIO_DMA_UNMAP_FLAG_VADDR left the mapping without a valid vaddr until MAP_DMA VADDR. */
  vaddrInvalid: boolean;
  /**
   * The runs are device frames of a VM_PFNMAP mapping (a BAR mmap),
   * reserved pfns: neither pinned nor charged to locked_vm.
   */
  rsvd: boolean;
}

/** struct vfio_domain: a paging domain and the groups attached to it. */
interface Type1Domain {
  domain: IommuDomain;
  groups: Set<IommuGroup>;
}

/**
 * The legacy type1 IOMMU backend (drivers/vfio/vfio_iommu_type1.c): its
 * own list of mappings (vfio_dma), pages pinned from the mapping task's mm
 * and charged to its locked_vm, mapped into one paging domain per
 * compatible group set. v1 and v2 differ in UNMAP_DMA: v2 refuses to
 * bisect a mapping (EINVAL), v1 unmaps only mappings starting inside the
 * range. Unmapping a range with nothing mapped succeeds with size 0.
 * VFIO_UPDATE_VADDR (UNMAP/MAP with the VADDR flag) and v2 dirty page
 * tracking are as the kernel has them; every group here is IOMMU backed,
 * so a dirty bitmap reports every mapped page dirty.
 */
export class VfioIommuType1 implements VfioIommuBackend {
  private readonly dmas: VfioDma[] = [];
  private readonly domains: Type1Domain[] = [];
  private dmaAvail: number;
  /** iommu->vaddr_invalid_count. */
  private vaddrInvalidCount = 0;
  /** iommu->dirty_page_tracking (VFIO_IOMMU_DIRTY_PAGES_FLAG_START). */
  private dirtyTracking = false;

  /**
   * Since 7.x an IOVA or vaddr range that wraps is EOVERFLOW, checked first
   * (check_add_overflow in vfio_dma_do_map / do_unmap); 6.12 answers EINVAL
   * after the alignment checks.
   */
  private readonly overflowErrno: boolean;

  constructor(
    k: KernelCtx,
    readonly v2: boolean,
  ) {
    this.dmaAvail = Number(k.params["vfio_iommu_type1.dma_entry_limit"]);
    this.overflowErrno = k.profile !== "6.12";
  }

  /** Pages pinned by this container (for counters). */
  pinnedPages(): number {
    return this.dmas.reduce((n, d) => n + (d.rsvd ? 0 : d.runs.pages), 0);
  }

  forEachPin(cb: (pfn: number, n: number) => void): void {
    for (const d of this.dmas) {
      if (d.rsvd) continue;
      for (let i = 0; i < d.runs.count; i++) cb(d.runs.pfn[i], d.runs.len[i]);
    }
  }

  /** vfio_lock_acct: each mapping's pages are charged to dma->mm (its acct); reserved pfns are not. */
  forEachLockedVm(cb: (mm: object, pages: number) => void): void {
    for (const d of this.dmas) if (!d.rsvd) cb(d.acct, d.runs.pages);
  }

  /** m.debug: the mappings, the IOVA list, reserved regions and each domain's page table. */
  debugInfo(): VfioBackendDebugInfo {
    const reserved = this.domains.flatMap((d) =>
      [...d.groups].flatMap((g) =>
        g.devices.flatMap((dev) =>
          dev.resvRegions().map((r) => ({
            start: r.start,
            last: r.last,
            owner: `${RESV_TYPE_NAMES[r.type]} region of ${dev.name}`,
          })),
        ),
      ),
    );
    return {
      type1: {
        v2: this.v2,
        dmas: [...this.dmas]
          .sort((a, b) => (a.iova < b.iova ? -1 : 1))
          .map((d) => ({
            iova: d.iova,
            size: d.size,
            vaddr: d.vaddr,
            prot: d.prot,
            vaddrInvalid: d.vaddrInvalid,
            // a PFNMAP mapping pins nothing: its device frames are in the domain's table only
            pinnedRuns: d.rsvd ? [] : runsView(d.runs),
          })),
        iovaRanges: this.iovaList().map(([start, last]) => ({ start, last })),
        reserved,
        pgsizes: this.domains.length > 0 ? this.pgsizeBitmap() : 0n,
        domains: this.domains.map((d) => {
          const info = d.domain.ptInfo();
          return {
            id: d.domain.id,
            groups: [...d.groups].map((g) => g.id),
            table: {
              format: info.format,
              rootPhys: info.rootPhys,
              topLevel: info.topLevel,
              dump: () => d.domain.ptDump(),
            },
          };
        }),
      },
    };
  }

  // --- groups ---------------------------------------------------------------

  /** vfio_iommu_type1_attach_group: reuse a compatible domain or allocate one; replay the mappings. */
  attachGroup(group: IommuGroup): void {
    // Attach may need to pin, which an invalid vaddr forbids (vfio_iommu_type1_attach_group).
    if (this.vaddrInvalidCount > 0)
      fail(EBUSY, "a mapping's vaddr is invalid (VFIO_DMA_UNMAP_FLAG_VADDR) until MAP_DMA VADDR restores it");
    if (this.domains.some((d) => d.groups.has(group)))
      fail(EINVAL, `iommu_group ${group.id} is already attached`);
    const resv = group.devices.flatMap((d) => d.resvRegions());
    for (const dma of this.dmas) {
      const last = dma.iova + dma.size - 1n;
      if (resv.some((r) => r.start <= last && dma.iova <= r.last)) {
        fail(
          EINVAL,
          `existing mapping at 0x${dma.iova.toString(16)} overlaps a reserved region of iommu_group ${group.id}`,
        );
      }
    }
    for (const d of this.domains) {
      if (d.domain.driver !== group.driver) continue;
      try {
        group.attach(d.domain);
        d.groups.add(group);
        return;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
      }
    }
    const dev = group.devices[0];
    const domain = dev.driver.allocPaging(dev, 0);
    try {
      for (const dma of this.dmas) {
        if (!domain.inAperture(dma.iova, dma.size)) {
          fail(EINVAL, `existing mapping at 0x${dma.iova.toString(16)} is outside the new domain's aperture`);
        }
      }
      group.attach(domain);
    } catch (e) {
      domain.free();
      throw e;
    }
    const td: Type1Domain = { domain, groups: new Set([group]) };
    try {
      for (const dma of this.dmas) this.mapInto(domain, dma);
    } catch (e) {
      domain.unmap(0n, 1n << 63n);
      group.detach();
      domain.free();
      throw e;
    }
    domain.enforceCacheCoherency();
    this.domains.push(td);
  }

  /** vfio_iommu_type1_detach_group: the last group of a domain frees it. */
  detachGroup(group: IommuGroup): void {
    const i = this.domains.findIndex((d) => d.groups.has(group));
    if (i < 0) return;
    const td = this.domains[i];
    td.groups.delete(group);
    group.detach();
    if (td.groups.size === 0) {
      this.domains.splice(i, 1);
      for (const dma of this.dmas) td.domain.unmap(dma.iova, dma.size);
      td.domain.free();
    }
    // With no IOMMU-backed domain left the mappings go too (vfio_iommu_unmap_unpin_all).
    if (this.domains.length === 0) for (const dma of [...this.dmas]) this.removeDma(dma);
  }

  /** vfio_iommu_type1_release: everything unmapped, unpinned and freed. */
  release(): void {
    for (const dma of [...this.dmas]) this.removeDma(dma);
    for (const td of this.domains) {
      for (const g of td.groups) g.detach();
      td.domain.free();
    }
    this.domains.length = 0;
  }

  // --- ioctls ---------------------------------------------------------------

  ioctl(task: Task, cmd: number, arg: bigint): number {
    switch (cmd) {
      case VFIO_CHECK_EXTENSION:
        return type1CheckExtension(this, Number(arg));
      case VFIO_IOMMU_GET_INFO:
        return this.getInfo(task, arg);
      case VFIO_IOMMU_MAP_DMA:
        return this.mapDma(task, arg);
      case VFIO_IOMMU_UNMAP_DMA:
        return this.unmapDma(task, arg);
      case VFIO_IOMMU_DIRTY_PAGES:
        return this.dirtyPages(task, arg);
      default:
        return fail(ENOTTY, `the type1 IOMMU driver has no ioctl 0x${(cmd >>> 0).toString(16)}`);
    }
  }

  cacheCoherent(): boolean {
    return this.domains.length > 0 && this.domains.every((d) => d.domain.enforcingCoherency);
  }

  /**
   * iommu->pgsize_bitmap (vfio_update_pgsize_bitmap): the page sizes every
   * domain supports, all sizes >= 4 KiB with none; sizes below PAGE_SIZE
   * are hidden and PAGE_SIZE offered instead.
   */
  private pgsizeBitmap(): bigint {
    let bm = U64_MAX;
    for (const d of this.domains) bm &= d.domain.pgsizeBitmap;
    if ((bm & (PAGE - 1n)) !== 0n) bm = (bm & ~(PAGE - 1n)) | PAGE;
    return bm;
  }

  /** The smallest supported page size: MAP/UNMAP alignment and the dirty bitmap's page. */
  private minPgsize(): bigint {
    const bm = this.pgsizeBitmap();
    return bm & -bm;
  }

  /** iommu->iova_list: the apertures' intersection minus every reserved region; empty with no domain. */
  private iovaList(): [bigint, bigint][] {
    if (this.domains.length === 0) return [];
    let start = 0n;
    let last = U64_MAX;
    for (const d of this.domains) {
      const a = d.domain.apertures;
      if (a.length === 0) continue;
      start = start > a[0].start ? start : a[0].start;
      last = last < a[a.length - 1].last ? last : a[a.length - 1].last;
    }
    let ranges: [bigint, bigint][] = start <= last ? [[start, last]] : [];
    const resv = this.domains.flatMap((d) =>
      [...d.groups].flatMap((g) => g.devices.flatMap((dev) => dev.resvRegions())),
    );
    for (const r of resv) {
      const next: [bigint, bigint][] = [];
      for (const [s, l] of ranges) {
        if (r.last < s || r.start > l) {
          next.push([s, l]);
          continue;
        }
        if (r.start > s) next.push([s, r.start - 1n]);
        if (r.last < l) next.push([r.last + 1n, l]);
      }
      ranges = next;
    }
    return ranges;
  }

  /** vfio_iommu_type1_get_info: minsz 16; copy min(argsz, 24); caps migration, DMA avail, IOVA ranges. */
  private getInfo(task: Task, arg: bigint): number {
    const {
      s: info,
      buf,
      argsz,
    } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_info,
      offsetOfEnd(vfio_iommu_type1_info, "iova_pgsizes"),
      "VFIO_IOMMU_GET_INFO",
    );
    const copy = Math.min(argsz, vfio_iommu_type1_info.size);
    const pgsizes = this.pgsizeBitmap();
    info.flags = VFIO_IOMMU_INFO_PGSIZES;
    info.iova_pgsizes = pgsizes;
    const mig = vfioStructOut(vfio_iommu_type1_info_cap_migration);
    mig.s.pgsize_bitmap = pgsizes & -pgsizes;
    mig.s.max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX;
    const avail = vfioStructOut(vfio_iommu_type1_info_dma_avail);
    avail.s.avail = this.dmaAvail;
    const caps = [
      { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1, payload: capPayload(mig.buf) },
      { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, payload: capPayload(avail.buf) },
    ];
    const iovas = this.iovaList();
    if (iovas.length > 0) {
      const hdrSize = vfio_iommu_type1_info_cap_iova_range.size;
      const rangeSize = vfio_iova_range.size;
      const cap = new Uint8Array(hdrSize + rangeSize * iovas.length);
      structView(vfio_iommu_type1_info_cap_iova_range, cap).nr_iovas = iovas.length;
      iovas.forEach(([start, end], i) => {
        const at = hdrSize + rangeSize * i;
        const r = structView(vfio_iova_range, cap.subarray(at, at + rangeSize));
        r.start = start;
        r.end = end;
      });
      caps.push({ id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1, payload: capPayload(cap) });
    }
    info.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    const r = writeCaps(task, arg, argsz, vfio_iommu_type1_info.size, caps);
    info.argsz = r.argsz;
    info.cap_offset = r.capOffset;
    task.copyToUser(arg, buf.subarray(0, copy));
    return 0;
  }

  /** vfio_iommu_type1_map_dma + vfio_dma_do_map. */
  private mapDma(task: Task, arg: bigint): number {
    const { s: map } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_dma_map,
      offsetOfEnd(vfio_iommu_type1_dma_map, "size"),
      "VFIO_IOMMU_MAP_DMA",
    );
    const { flags, vaddr, iova, size } = map;
    const mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
    if ((flags & ~mask) !== 0) fail(EINVAL, `VFIO_IOMMU_MAP_DMA: unknown flags 0x${flags.toString(16)}`);
    const wraps = iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX;
    if (this.overflowErrno) {
      if (size === 0n) fail(EINVAL, "VFIO_IOMMU_MAP_DMA: size is 0");
      if (wraps) fail(EOVERFLOW, "VFIO_IOMMU_MAP_DMA: iova + size or vaddr + size wraps past 2^64");
    }
    let prot = 0;
    if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
    if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
    const setVaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr)) {
      fail(EINVAL, "VFIO_IOMMU_MAP_DMA: give READ and/or WRITE (or VADDR alone to update a vaddr)");
    }
    const pg = this.minPgsize();
    if (size === 0n || ((size | iova | vaddr) & (pg - 1n)) !== 0n) {
      fail(
        EINVAL,
        `VFIO_IOMMU_MAP_DMA: size must be non-zero and size, iova and vaddr aligned to 0x${pg.toString(16)}`,
      );
    }
    if (wraps) fail(EINVAL, "VFIO_IOMMU_MAP_DMA: the range wraps");
    const found = this.findDma(iova, size);
    if (setVaddr) return this.updateVaddr(task, found, iova, size, vaddr);
    if (found !== undefined) {
      fail(
        EEXIST,
        `VFIO_IOMMU_MAP_DMA: [0x${iova.toString(16)}, +0x${size.toString(16)}) overlaps an existing mapping`,
      );
    }
    if (this.dmaAvail === 0)
      fail(ENOSPC, "VFIO_IOMMU_MAP_DMA: vfio_iommu_type1.dma_entry_limit mappings reached");
    const iovas = this.iovaList();
    if (iovas.length > 0 && !iovas.some(([s, l]) => iova >= s && iova + size - 1n <= l)) {
      fail(
        EINVAL,
        `VFIO_IOMMU_MAP_DMA: [0x${iova.toString(16)}, +0x${size.toString(16)}) is not inside a valid IOVA range`,
      );
    }
    const mm = task.mm as unknown as MmStruct;
    const npages = Number(size / PAGE);
    let runs: PfnRuns;
    let rsvd = false;
    const write = (prot & IOMMU_WRITE) !== 0;
    try {
      runs = mm.pinUserPages(vaddr, npages, write);
    } catch (e) {
      // vaddr_get_pfns: pin_user_pages refuses VM_IO | VM_PFNMAP; a PFNMAP VMA gives its
      // device frames instead (follow_fault_pfn), reserved pfns that are never pinned
      let pfns: PfnRuns | null = null;
      try {
        if (e instanceof KernelError && e.errno === EFAULT) pfns = mm.followPfnmap(vaddr, npages, write);
      } catch (e2) {
        rethrowWith(e2, "VFIO_IOMMU_MAP_DMA: ");
      }
      if (pfns === null) rethrowWith(e, "VFIO_IOMMU_MAP_DMA: ");
      runs = pfns;
      rsvd = true;
    }
    if (!rsvd && accountMmLockedVm(mm, npages, true) !== 0) {
      mm.unpinUserPages(runs);
      fail(ENOMEM, `VFIO_IOMMU_MAP_DMA: locked memory (${npages} pages) over RLIMIT_MEMLOCK`);
    }
    const dma: VfioDma = { iova, size, vaddr, prot, runs, mm, acct: mm, vaddrInvalid: false, rsvd };
    const done: IommuDomain[] = [];
    try {
      for (const d of this.domains) {
        this.mapInto(d.domain, dma);
        done.push(d.domain);
      }
    } catch (e) {
      for (const d of done) d.unmap(iova, size);
      if (!rsvd) {
        mm.unpinUserPages(runs);
        accountMmLockedVm(mm, npages, false);
      }
      throw e;
    }
    this.insertDma(dma);
    this.dmaAvail--;
    return 0;
  }

  /**
   * MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR (vfio_dma_do_map): no mapping in
   * the range is ENOENT; one that is not exactly [iova, +size) or whose
   * vaddr is still valid is EINVAL; otherwise the new vaddr is recorded and,
   * from another process, its locked_vm moves there (vfio_change_dma_owner).
   * Nothing is re-pinned: the pages stay pinned throughout.
   */
  private updateVaddr(
    task: Task,
    dma: VfioDma | undefined,
    iova: bigint,
    size: bigint,
    vaddr: bigint,
  ): number {
    if (dma === undefined)
      fail(
        ENOENT,
        `VFIO_IOMMU_MAP_DMA VADDR: no mapping in [0x${iova.toString(16)}, +0x${size.toString(16)})`,
      );
    if (!dma.vaddrInvalid || dma.iova !== iova || dma.size !== size) {
      fail(
        EINVAL,
        `VFIO_IOMMU_MAP_DMA VADDR: the mapping at 0x${dma.iova.toString(16)} must match exactly and have been invalidated by UNMAP_DMA VADDR`,
      );
    }
    const mm = task.mm as unknown as MmStruct;
    if (mm !== dma.acct && !dma.rsvd) {
      const npages = dma.runs.pages;
      if (accountMmLockedVm(mm, npages, true) !== 0)
        fail(ENOMEM, `VFIO_IOMMU_MAP_DMA VADDR: moving ${npages} locked pages here exceeds RLIMIT_MEMLOCK`);
      accountMmLockedVm(dma.acct, npages, false);
      dma.acct = mm;
    }
    dma.vaddr = vaddr;
    dma.vaddrInvalid = false;
    this.vaddrInvalidCount--;
    return 0;
  }

  /** vfio_iommu_type1_unmap_dma + vfio_dma_do_unmap (v1/v2 rules, VADDR invalidation, dirty bitmap). */
  private unmapDma(task: Task, arg: bigint): number {
    const {
      s: unmap,
      buf,
      argsz,
    } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_dma_unmap,
      offsetOfEnd(vfio_iommu_type1_dma_unmap, "size"),
      "VFIO_IOMMU_UNMAP_DMA",
    );
    const flags = unmap.flags;
    const mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
    if ((flags & ~mask) !== 0) fail(EINVAL, `VFIO_IOMMU_UNMAP_DMA: unknown flags 0x${flags.toString(16)}`);
    const iova = unmap.iova;
    let size = unmap.size;
    const getDirty = (flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    let bitmap: { pgsize: bigint; data: bigint } | null = null;
    if (getDirty) {
      if (flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) {
        fail(EINVAL, "VFIO_IOMMU_UNMAP_DMA: GET_DIRTY_BITMAP cannot be combined with ALL or VADDR");
      }
      // the struct vfio_bitmap follows the struct (its data[])
      const bitmapAt = vfio_iommu_type1_dma_unmap.size;
      if (argsz < bitmapAt + vfio_bitmap.size)
        fail(EINVAL, `VFIO_IOMMU_UNMAP_DMA: GET_DIRTY_BITMAP needs argsz >= 48 (a struct vfio_bitmap)`);
      bitmap = readBitmapArgs(task, arg + BigInt(bitmapAt), size, "VFIO_IOMMU_UNMAP_DMA");
    }
    const unmapAll = (flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
    const invalidateVaddr = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
    const pg = this.minPgsize();
    if ((iova & (pg - 1n)) !== 0n)
      fail(EINVAL, `VFIO_IOMMU_UNMAP_DMA: iova not aligned to 0x${pg.toString(16)}`);
    if (unmapAll) {
      if (iova !== 0n || size !== 0n) fail(EINVAL, "VFIO_IOMMU_UNMAP_DMA: ALL needs iova = size = 0");
      size = U64_MAX;
    } else if (size === 0n || (size & (pg - 1n)) !== 0n) {
      fail(EINVAL, `VFIO_IOMMU_UNMAP_DMA: size must be non-zero and aligned to 0x${pg.toString(16)}`);
    } else if (iova + size - 1n > U64_MAX) {
      if (this.overflowErrno) fail(EOVERFLOW, "VFIO_IOMMU_UNMAP_DMA: iova + size wraps past 2^64");
      fail(EINVAL, "VFIO_IOMMU_UNMAP_DMA: iova + size wraps");
    }
    if (bitmap !== null && (!this.dirtyTracking || bitmap.pgsize !== pg)) {
      fail(
        EINVAL,
        this.dirtyTracking
          ? `VFIO_IOMMU_UNMAP_DMA: the bitmap page size must be the smallest IOMMU page (0x${pg.toString(16)})`
          : "VFIO_IOMMU_UNMAP_DMA: GET_DIRTY_BITMAP without dirty page tracking started",
      );
    }
    const end = unmapAll ? U64_MAX + 1n : iova + size;
    if (this.v2 && !unmapAll) {
      const first = this.findDma(iova, 1n);
      if (first !== undefined && first.iova !== iova) {
        fail(
          EINVAL,
          `VFIO_IOMMU_UNMAP_DMA (v2): 0x${iova.toString(16)} bisects the mapping at 0x${first.iova.toString(16)}`,
        );
      }
      const last = this.findDma(end - 1n, 1n);
      if (last !== undefined && last.iova + last.size !== end) {
        fail(
          EINVAL,
          `VFIO_IOMMU_UNMAP_DMA (v2): the range end bisects the mapping at 0x${last.iova.toString(16)}`,
        );
      }
    }
    let unmapped = 0n;
    const inRange = this.dmas.filter((d) => d.iova + d.size > iova && d.iova < end);
    if (invalidateVaddr) {
      const marked: VfioDma[] = [];
      for (const dma of inRange) {
        if (!this.v2 && iova > dma.iova) break;
        if (dma.vaddrInvalid) {
          // Already invalid: undo this call's marks; nothing is reported.
          for (const d of marked) d.vaddrInvalid = false;
          this.vaddrInvalidCount -= marked.length;
          fail(
            EINVAL,
            `VFIO_IOMMU_UNMAP_DMA VADDR: the vaddr of the mapping at 0x${dma.iova.toString(16)} is already invalid`,
          );
        }
        dma.vaddrInvalid = true;
        this.vaddrInvalidCount++;
        marked.push(dma);
        unmapped += dma.size;
      }
    } else {
      for (const dma of inRange) {
        // v1: a mapping that starts before the range is left alone (and ends the walk).
        if (!this.v2 && iova > dma.iova) break;
        if (bitmap !== null) writeDirtyBits(task, bitmap.data, dma, iova, pg);
        unmapped += dma.size;
        this.removeDma(dma);
      }
    }
    unmap.size = unmapped;
    task.copyToUser(arg, buf.subarray(0, vfio_iommu_type1_dma_unmap.size));
    return 0;
  }

  /** vfio_iommu_type1_dirty_pages: v2 only; exactly one of START, STOP, GET_BITMAP. */
  private dirtyPages(task: Task, arg: bigint): number {
    if (!this.v2) fail(EACCES, "VFIO_IOMMU_DIRTY_PAGES needs a VFIO_TYPE1v2_IOMMU container");
    const { s: dirty, argsz } = vfioCopyInStruct(
      task,
      arg,
      vfio_iommu_type1_dirty_bitmap,
      offsetOfEnd(vfio_iommu_type1_dirty_bitmap, "flags"),
      "VFIO_IOMMU_DIRTY_PAGES",
    );
    const flags = dirty.flags;
    const mask =
      VFIO_IOMMU_DIRTY_PAGES_FLAG_START |
      VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
      VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
    if ((flags & ~mask) !== 0) fail(EINVAL, `VFIO_IOMMU_DIRTY_PAGES: unknown flags 0x${flags.toString(16)}`);
    if (flags === 0 || (flags & (flags - 1)) !== 0)
      fail(EINVAL, "VFIO_IOMMU_DIRTY_PAGES: exactly one of START, STOP and GET_BITMAP");
    if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
      this.dirtyTracking = true;
      return 0;
    }
    if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
      this.dirtyTracking = false;
      return 0;
    }
    // data[] holds a struct vfio_iommu_type1_dirty_bitmap_get: iova and size, then its vfio_bitmap
    const getAt = vfio_iommu_type1_dirty_bitmap.size;
    if (argsz - getAt < vfio_iommu_type1_dirty_bitmap_get.size)
      fail(EINVAL, "VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: argsz leaves no room for the 40-byte range");
    const bitmapAt = offsetOf(vfio_iommu_type1_dirty_bitmap_get, "bitmap.pgsize");
    const range = new Uint8Array(vfio_iommu_type1_dirty_bitmap_get.size);
    range.set(task.copyFromUser(arg + BigInt(getAt), bitmapAt));
    const { iova, size } = structView(vfio_iommu_type1_dirty_bitmap_get, range);
    if (iova + size > U64_MAX) fail(EINVAL, "VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: iova + size wraps");
    const bitmap = readBitmapArgs(
      task,
      arg + BigInt(getAt + bitmapAt),
      size,
      "VFIO_IOMMU_DIRTY_PAGES GET_BITMAP",
    );
    const pg = this.minPgsize();
    if (bitmap.pgsize !== pg)
      fail(EINVAL, `VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: the bitmap page size must be 0x${pg.toString(16)}`);
    if ((iova & (pg - 1n)) !== 0n || size === 0n || (size & (pg - 1n)) !== 0n)
      fail(
        EINVAL,
        `VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: iova and size must be aligned to 0x${pg.toString(16)}, size non-zero`,
      );
    if (!this.dirtyTracking)
      fail(EINVAL, "VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: dirty page tracking is not started");
    // vfio_iova_dirty_bitmap: the range may not bisect a mapping.
    const first = this.findDma(iova, 1n);
    if (first !== undefined && first.iova !== iova)
      fail(EINVAL, `VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: 0x${iova.toString(16)} bisects a mapping`);
    const last = this.findDma(iova + size - 1n, 1n);
    if (last !== undefined && last.iova + last.size !== iova + size)
      fail(EINVAL, "VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: the range end bisects a mapping");
    for (const dma of this.dmas) {
      if (dma.iova < iova) continue;
      if (dma.iova > iova + size - 1n) break;
      writeDirtyBits(task, bitmap.data, dma, iova, pg);
    }
    return 0;
  }

  /**
   * One iommu_map() per pinned run, laid end to end from the IOVA; on
   * failure what this mapped is unmapped. domain.mapRuns does exactly that
   * on numbers (a 1 GiB pin of scattered 4 KiB pages is 262144 runs).
   */
  private mapInto(domain: IommuDomain, dma: VfioDma): void {
    domain.mapRuns(dma.iova, dma.runs, 0, BigInt(dma.runs.pages) * PAGE, dma.prot);
  }

  private removeDma(dma: VfioDma): void {
    for (const d of this.domains) d.domain.unmap(dma.iova, dma.size);
    if (!dma.rsvd) {
      dma.mm.unpinUserPages(dma.runs);
      accountMmLockedVm(dma.acct, dma.runs.pages, false);
    }
    this.dmas.splice(this.dmas.indexOf(dma), 1);
    if (dma.vaddrInvalid) this.vaddrInvalidCount--;
    this.dmaAvail++;
  }

  /** vfio_find_dma: any mapping overlapping [start, start+size). */
  private findDma(start: bigint, size: bigint): VfioDma | undefined {
    return this.dmas.find((d) => d.iova < start + size && start < d.iova + d.size);
  }

  private insertDma(dma: VfioDma): void {
    let i = 0;
    while (i < this.dmas.length && this.dmas[i].iova < dma.iova) i++;
    this.dmas.splice(i, 0, dma);
  }
}

/**
 * The struct vfio_bitmap of UNMAP_DMA GET_DIRTY_BITMAP and DIRTY_PAGES
 * GET_BITMAP: copied in (EFAULT), then access_ok on [data, +size) and
 * verify_bitmap_size (pages from `rangeSize`, non-zero, at most
 * DIRTY_BITMAP_SIZE_MAX, large enough), each EINVAL.
 */
function readBitmapArgs(
  task: Task,
  at: bigint,
  rangeSize: bigint,
  what: string,
): { pgsize: bigint; data: bigint } {
  const { pgsize, size: bytes, data } = structView(vfio_bitmap, task.copyFromUser(at, vfio_bitmap.size));
  if (bytes > USER_END || data > USER_END - bytes)
    fail(EINVAL, `${what}: the bitmap is not in user space (access_ok)`);
  // __ffs(0) is undefined in the kernel; a zero page size cannot describe any page.
  const npages = pgsize === 0n ? 0n : rangeSize / (pgsize & -pgsize);
  if (npages === 0n || bytes === 0n || bytes > DIRTY_BITMAP_SIZE_MAX || bytes < dirtyBitmapBytes(npages))
    fail(EINVAL, `${what}: bitmap size ${bytes} does not fit ${npages} pages (verify_bitmap_size)`);
  return { pgsize, data };
}

/** DIRTY_BITMAP_BYTES(n): whole u64 words. */
function dirtyBitmapBytes(nbits: bigint): bigint {
  return ((nbits + 63n) / 64n) * 8n;
}

/**
 * update_user_bitmap: the mapping's bits at its offset from `base`. An
 * IOMMU-backed group cannot report dirtiness, so every page of a mapped
 * vfio_dma is dirty. When the mapping does not start on a u64 boundary the
 * user's first word is read back and ORed in (the whole word, as
 * bitmap_or does), so earlier mappings' bits survive.
 */
function writeDirtyBits(task: Task, data: bigint, dma: VfioDma, base: bigint, pgsize: bigint): void {
  const shiftBits = BigInt(pgsize.toString(2).length - 1);
  const nbits = Number(dma.size >> shiftBits);
  const bitOffset = Number((dma.iova - base) >> shiftBits);
  const wordAt = data + BigInt(Math.floor(bitOffset / 64) * 8);
  const shift = bitOffset % 64;
  const out = new Uint8Array(Math.ceil((nbits + shift) / 64) * 8);
  for (let b = shift; b < shift + nbits; b++) out[b >> 3] |= 1 << (b & 7);
  if (shift !== 0) {
    const leftover = task.copyFromUser(wordAt, 8);
    for (let i = 0; i < 8; i++) out[i] |= leftover[i];
  }
  task.copyToUser(wordAt, out);
}

/** vfio_iommu_type1_check_extension (nesting was removed upstream and answers 0). */
function type1CheckExtension(iommu: VfioIommuType1 | null, ext: number): number {
  switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_UPDATE_VADDR:
      // Only with an open container (no mdev-style emulated groups in the model).
      return iommu === null ? 0 : 1;
    case VFIO_DMA_CC_IOMMU:
      return iommu === null ? 0 : iommu.cacheCoherent() ? 1 : 0;
    default:
      return 0;
  }
}

/** The type1 driver as the container's driver list sees it. */
export const vfioIommuType1Driver: VfioIommuDriver = {
  name: "vfio-iommu-type1",
  checkExtension: (ext) => type1CheckExtension(null, ext),
  open(k, type) {
    if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) {
      fail(EINVAL, `vfio-iommu-type1 cannot open IOMMU type ${type}`);
    }
    return new VfioIommuType1(k, type === VFIO_TYPE1v2_IOMMU);
  },
};
