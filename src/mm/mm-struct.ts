import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";
import { ENOMEM, fail } from "../uapi/errno.js";
import { accessRead, accessReadU32, accessWrite, translateVa } from "./access.js";
import { copyPrivate } from "./fork.js";
import { pinUserPages } from "./gup.js";
import type { IoMem } from "./io-mem.js";
import { isIoMem } from "./io-mem.js";
import type { MmCred, UserStruct } from "./locked-vm.js";
import type { MemFile } from "./memfd.js";
import { MLOCK_LIMIT, PAGE_SIZE, TASK_SIZE } from "./mman.js";
import { doMmap, doMmapIo, mmapBase } from "./mmap.js";
import { doMunmap, unmapRange, zapPrivate } from "./munmap.js";
import type { PageTracker } from "./page-tracker.js";
import type { PfnRuns } from "./pfn-runs.js";
import { followPfnmap } from "./pfnmap.js";
import { PrivPages } from "./priv-pages.js";
import { type PageShift, Vma, VmaList, type VmaOwner } from "./vma.js";

const TASK_SIZE_BIG = BigInt(TASK_SIZE);

export interface MmStructOptions {
  phys: PhysMem;
  frames: FrameAllocator;
  faults: FaultInject;
  pages: PageTracker;
  user: UserStruct;
  /** RLIMIT_MEMLOCK and capabilities; the kernel layer may change them later. Default: 8 MiB, no caps. */
  cred?: MmCred;
  /** Seeds mmap_base randomization (ASLR); without it the layout is the non-randomized one. */
  seed?: number;
  /** mm->mmap_base to use instead of computing one (a forked mm inherits its parent's). */
  mmapBase?: number;
}

/** What a forked mm gets besides the copy of the address space. */
export interface MmForkOptions {
  user: UserStruct;
  cred: MmCred;
}

export interface VmaInfo {
  start: bigint;
  end: bigint;
  prot: number;
  shared: boolean;
  pageSize: number;
  /** The memfd's name, "[anon_shmem]"/"[anon_hugetlb]" for internal files, null for private anonymous. */
  file: string | null;
  /** File offset of start, in bytes. */
  offset: bigint;
  locked: boolean;
}

export interface MmCounters {
  vmas: number;
  /** Private (anonymous or COWed) folios this mm holds, by page size. */
  private4k: number;
  private2m: number;
  private1g: number;
  lockedVm: number;
  pinnedVm: number;
}

/**
 * struct mm_struct: one process's address space. VMAs in a sorted list;
 * private pages (anonymous, and COW copies of file pages) in page tables
 * keyed by virtual page (one per page size); shared and file pages in their
 * MemFile's page cache. Pages appear on first touch.
 *
 * Addresses cross the API as bigint and are numbers inside (user VAs are
 * below 2^47). A refused call throws a KernelError (errno and the rule
 * that refused), as every layer above src/pt fails.
 */
export class MmStruct implements VmaOwner {
  readonly vmas = new VmaList();
  readonly priv4k = new PrivPages();
  readonly priv2m = new PrivPages();
  readonly priv1g = new PrivPages();
  readonly phys: PhysMem;
  readonly pages: PageTracker;
  readonly faults: FaultInject;
  readonly user: UserStruct;
  cred: MmCred;
  /** mm->locked_vm (VmLck): VM_LOCKED mappings plus ACCOUNT_MM pins, in pages. */
  lockedVm = 0;
  /** mm->pinned_vm (VmPin), in pages. */
  pinnedVm = 0;
  /** mm->mmap_base: top-down placement starts below it. */
  readonly mmapBase: number;
  released = false;
  /** pages.put, bound once (the undo log's folio records call it). */
  readonly putFolio = (head: number): void => this.pages.put(head);

  constructor(opts: MmStructOptions) {
    if (opts.pages.phys !== opts.phys || opts.pages.frames !== opts.frames) {
      throw new Error("MmStruct: pages tracker belongs to another machine");
    }
    this.phys = opts.phys;
    this.pages = opts.pages;
    this.faults = opts.faults;
    this.user = opts.user;
    this.cred = opts.cred ?? { caps: new Set(), rlimitMemlock: MLOCK_LIMIT };
    this.mmapBase = opts.mmapBase ?? mmapBase(opts.seed);
  }

  // The work is in the files named after the kernel's: mmap.ts, munmap.ts,
  // fault.ts, access.ts, gup.ts, fork.ts. This class holds the state.

  /** mmap(2): the address. `file` is ignored with MAP_ANONYMOUS. */
  mmap(
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    file: MemFile | IoMem | null,
    off: bigint,
  ): bigint {
    if (isIoMem(file)) return BigInt(doMmapIo(this, addr, len, prot, flags, file, off));
    return BigInt(doMmap(this, addr, len, prot, flags, file, off));
  }

  /** munmap(2): 0. Unmapping nothing is not an error. */
  munmap(addr: bigint, len: bigint): number {
    return doMunmap(this, addr, len);
  }

  /** Drop the private pages of `v` in [start, end) (munmap, or truncation of its file). */
  zapPrivate(v: Vma, start: number, end: number): void {
    zapPrivate(this, v, start, end);
  }

  /** The process reading its own memory: the bytes; EFAULT when unmapped, not readable, past EOF. */
  read(va: bigint, len: number): Uint8Array {
    return accessRead(this, va, len);
  }

  /** A u32 the kernel reads from user memory (get_user): the value; EFAULT as read (override with read). */
  readU32(va: bigint): number {
    return accessReadU32(this, va);
  }

  /** The process writing its own memory: 0; EFAULT with nothing written. */
  write(va: bigint, bytes: Uint8Array): number {
    return accessWrite(this, va, bytes);
  }

  /** The physical address va maps now, or null (unmapped, or not populated). Never faults. */
  translate(va: bigint): bigint | null {
    return translateVa(this, va);
  }

  /** pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]): see gup.ts. */
  pinUserPages(va: bigint, nPages: number, write: boolean, site = "pin_user_pages"): PfnRuns {
    return pinUserPages(this, va, nPages, write, site);
  }

  /** follow_fault_pfn over device memory (VM_PFNMAP): its frames, nothing pinned; null when va is not one. */
  followPfnmap(va: bigint, nPages: number, write: boolean): PfnRuns | null {
    return followPfnmap(this, va, nPages, write);
  }

  /** unpin_user_pages over runs from pinUserPages / MemFile.pinPages (or any subset of them). */
  unpinUserPages(runs: PfnRuns): void {
    this.pages.unpinRuns(runs);
  }

  /** Unpin `n` pages from pfn. */
  unpinRange(pfn: number, n: number): void {
    this.pages.unpinRange(pfn, n);
  }

  // ---------------------------------------------------------------- fork

  /**
   * dup_mmap: a copy of this address space for a child. Every VMA is
   * duplicated without VM_LOCKED (the child's locked_vm and pinned_vm start
   * at 0, as mm_init sets them). Shared, file and device mappings share
   * the same file / device memory. Private folios (anonymous, COWed file
   * pages, MAP_PRIVATE hugetlb) are shared copy-on-write: both mms
   * reference the folio and the first write in either copies it. A folio
   * that may be DMA-pinned is copied for the child at once instead
   * (copy_present_page, copy_hugetlb_page_range), so the parent keeps the
   * page the device uses. MADV_DONTFORK / MADV_WIPEONFORK are not modelled.
   * The child, or -ENOMEM with this mm unchanged and nothing left allocated.
   */
  fork(opts: MmForkOptions): MmStruct {
    this.checkLive();
    if (this.faults.hit("dup_mm")) return this.err(ENOMEM, "fork: cannot allocate the child's mm_struct");
    const child = new MmStruct({
      phys: this.phys,
      frames: this.pages.frames,
      faults: this.faults,
      pages: this.pages,
      user: opts.user,
      cred: opts.cred,
      mmapBase: this.mmapBase,
    });
    for (const v of this.vmas.list) {
      if (this.faults.hit("vm_area_dup")) {
        child.release();
        return this.err(ENOMEM, "fork: cannot allocate a VMA for the child (vm_area_dup)");
      }
      const c = new Vma(child, v.start, v.end, v.prot, v.shared, v.shift, v.file, v.pgoff, false, v.anon);
      if (v.io !== null) {
        c.io = v.io;
        v.io.get?.();
      }
      child.vmas.insert(c);
      this.pages.liveVmas++;
      if (v.file !== null) {
        v.file.get();
        v.file.addMapping(c);
      }
      if (!v.shared && v.io === null && !copyPrivate(this, v, child)) {
        child.release();
        return this.err(ENOMEM, `fork: cannot copy a pinned page of 0x${v.start.toString(16)} for the child`);
      }
    }
    return child;
  }

  /** copy_page_range of one private VMA: share each folio COW, or copy it when pinned. False on ENOMEM. */

  // ---------------------------------------------------------------- exit, views

  /** exit_mmap: unmap everything. Pinned pages live on until unpinned; pinned_vm stays for its owner to uncharge. */
  release(): void {
    if (this.released) return;
    unmapRange(this, 0, TASK_SIZE);
    this.released = true;
  }

  /** The VMAs, like /proc/<pid>/maps. */
  maps(): VmaInfo[] {
    return this.vmas.list.map((v) => ({
      start: BigInt(v.start),
      end: BigInt(v.end),
      prot: v.prot,
      shared: v.shared,
      pageSize: v.pageSize,
      file: v.file === null ? null : v.file.name,
      offset: BigInt(v.pgoff) * BigInt(PAGE_SIZE),
      locked: v.locked,
    }));
  }

  counters(): MmCounters {
    return {
      vmas: this.vmas.length,
      private4k: this.priv4k.size,
      private2m: this.priv2m.size,
      private1g: this.priv1g.size,
      lockedVm: this.lockedVm,
      pinnedVm: this.pinnedVm,
    };
  }

  /** va as a number when [va, va+len) is inside user space, else -1. */
  /** The private pages of a mapping of this page size, keyed by huge-page index. */
  privMap(shift: PageShift): PrivPages {
    return shift === 12 ? this.priv4k : shift === 21 ? this.priv2m : this.priv1g;
  }

  /** va as a number when [va, va+len) is inside user space, else -1. */
  userRange(vaB: bigint, len: number): number {
    // (no BigInt arithmetic: each one allocates; below TASK_SIZE a number is exact)
    if (vaB < 0n || vaB > TASK_SIZE_BIG) return -1;
    const va = Number(vaB);
    return va + len > TASK_SIZE ? -1 : va;
  }

  checkLive(): void {
    if (this.released) throw new Error("MmStruct used after release()");
  }

  /** Fail with the rule that refused (KernelError, as everywhere above src/pt). */
  err(errno: number, reason: string): never {
    fail(errno, reason);
  }
}
