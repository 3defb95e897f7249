import type { FaultInject } from "../hw/fault-inject.js";
import type { FrameAllocator } from "../hw/frame-alloc.js";
import type { PhysMem } from "../hw/phys-mem.js";
import { Prng } from "../hw/prng.js";
import {
  EAGAIN,
  EBADF,
  EEXIST,
  EFAULT,
  EINVAL,
  ENOMEM,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
} from "../uapi/errno.js";
import { PrivResv } from "./hugetlb-pool.js";
import { type IoMem, isIoMem } from "./io-mem.js";
import { type MmCred, memlockLimitPages, type UserStruct } from "./locked-vm.js";
import { hugeShiftFromLog, MemFile } from "./memfd.js";
import {
  DEFAULT_MAX_MAP_COUNT,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_WRITE,
  LEGACY_MAP_MASK,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_HUGE_MASK,
  MAP_HUGE_SHIFT,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_TYPE,
  MAX_LFS_FILESIZE,
  MFD_HUGETLB,
  MLOCK_LIMIT,
  MMAP_MIN_ADDR,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  TASK_UNMAPPED_BASE,
} from "./mman.js";
import type { FolioOrder, PageTracker } from "./page-tracker.js";
import { emptyRuns, type PfnRuns, RunBuilder } from "./pfn-runs.js";
import { PrivPages } from "./priv-pages.js";
import { UndoLog } from "./undo.js";
import { type PageShift, Vma, VmaList, type VmaOwner } from "./vma.js";

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

// Results of a fault besides a pfn.
const F_SIGBUS = -1;
const F_OOM = -2;
/** A read of an untouched private anonymous page: the shared zero page, nothing allocated. */
const F_ZERO = -3;
/** A hugetlb fault with no reservation found no free huge page nor room for a surplus one (SIGBUS). */
const F_NOHUGE = -4;

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
const PAGE_MASK_B = ~BigInt(PAGE_SIZE - 1);
const U64 = 64;

/**
 * struct mm_struct: one process's address space. VMAs in a sorted list;
 * private pages (anonymous, and COW copies of file pages) in page tables
 * keyed by virtual page (one per page size); shared and file pages in their
 * MemFile's page cache. Pages appear on first touch.
 *
 * Addresses cross the API as bigint and are numbers inside (user VAs are
 * below 2^47). Calls return -errno (a negative bigint from mmap) and set
 * `lastReason` to the rule that produced it.
 */
export class MmStruct implements VmaOwner {
  readonly vmas = new VmaList();
  private readonly priv4k = new PrivPages();
  private readonly priv2m = new PrivPages();
  private readonly priv1g = new PrivPages();
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
  /** The rule behind the last failure. */
  lastReason = "";
  released = false;
  /** pages.put, bound once (the undo log's folio records call it). */
  private readonly putFolio = (head: number): void => this.pages.put(head);

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

  // ---------------------------------------------------------------- mmap

  /** mmap(2): the address, or a negative bigint -errno. `file` is ignored with MAP_ANONYMOUS. */
  mmap(
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    file: MemFile | IoMem | null,
    off: bigint,
  ): bigint {
    if (isIoMem(file)) return BigInt(this.doMmapIo(addr, len, prot, flags, file, off));
    return BigInt(this.doMmap(addr, len, prot, flags, file, off));
  }

  /**
   * mmap of device memory: a shared mapping of the driver's IoMem (drivers
   * such as vfio-pci refuse MAP_PRIVATE with EINVAL); no hugetlb, no
   * populate, no locking; the VMA holds a reference on the mapping.
   */
  private doMmapIo(
    addrB: bigint,
    lenB: bigint,
    prot: number,
    flags: number,
    io: IoMem,
    offB: bigint,
  ): number {
    if ((flags & MAP_ANONYMOUS) !== 0) return this.doMmap(addrB, lenB, prot, flags, null, offB);
    const type = flags & MAP_TYPE;
    if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE) {
      return this.err(EINVAL, "mmap: device memory can only be mapped MAP_SHARED");
    }
    if ((flags & (MAP_HUGETLB | MAP_LOCKED)) !== 0) {
      return this.err(EINVAL, "mmap: MAP_HUGETLB/MAP_LOCKED on device memory");
    }
    // Place it as an anonymous shared mapping would be placed, then turn the VMA into device memory.
    const before = new Set(this.vmas.list);
    const r = this.doMmap(
      addrB,
      lenB,
      prot,
      (flags & ~(MAP_TYPE | MAP_POPULATE)) | MAP_PRIVATE | MAP_ANONYMOUS,
      null,
      0n,
    );
    if (r < 0) return r;
    const v = this.vmas.list.find((x) => !before.has(x) && x.start === r)!;
    v.io = io;
    v.pgoff = Number(BigInt.asUintN(U64, offB) >> 12n);
    io.get?.();
    return r;
  }

  /** A load or store wholly inside one device-memory VMA; undefined when [va, va+len) is not. */
  private ioAccess(va: number, len: number, bytes: Uint8Array | null): Uint8Array | number | undefined {
    const v = this.vmas.find(va);
    if (v === undefined || v.io === null) {
      const last = this.vmas.find(va + len - 1);
      if (last?.io != null || this.vmas.overlapping(va, va + len).some((x) => x.io !== null)) {
        return this.err(EFAULT, "access spans device memory and other mappings");
      }
      return undefined;
    }
    if (va + len > v.end) return this.err(EFAULT, "access runs past the end of a device-memory mapping");
    const off = v.fileOffset(va);
    if (bytes === null) {
      if (!v.cpuReadable) return this.err(EFAULT, `read: 0x${va.toString(16)} is not readable`);
      const r = v.io.read(off, len);
      return typeof r === "number"
        ? this.err(EFAULT, `read: device memory at 0x${va.toString(16)} faulted (SIGBUS)`)
        : r;
    }
    if (!v.mayWrite) return this.err(EFAULT, `write: 0x${va.toString(16)} is not writable`);
    const w = v.io.write(off, bytes);
    return w < 0 ? this.err(EFAULT, `write: device memory at 0x${va.toString(16)} faulted (SIGBUS)`) : 0;
  }

  private doMmap(
    addrB: bigint,
    lenB: bigint,
    prot: number,
    flags: number,
    file: MemFile | null,
    offB: bigint,
  ): number {
    this.checkLive();
    const off = BigInt.asUintN(U64, offB);
    let len = BigInt.asUintN(U64, lenB);
    let hint = BigInt.asUintN(U64, addrB);
    // arch/x86 sys_mmap: the byte offset must be page aligned.
    if ((off & 0xfffn) !== 0n) return this.err(EINVAL, "mmap: offset is not page aligned");
    let shift: PageShift = 12;
    let anonHuge = false;
    if ((flags & MAP_ANONYMOUS) !== 0) file = null;
    else if (file === null) return this.err(EBADF, "mmap: no file and no MAP_ANONYMOUS");
    if (file !== null) {
      if (file.hugetlb) {
        shift = file.shift;
        len = alignUp64(len, file.folioSize);
      } else if ((flags & MAP_HUGETLB) !== 0) {
        return this.err(EINVAL, "mmap: MAP_HUGETLB on a file that is not on hugetlbfs");
      }
    } else if ((flags & MAP_HUGETLB) !== 0) {
      const s = hugeShiftFromLog((flags >>> MAP_HUGE_SHIFT) & MAP_HUGE_MASK);
      if (s === undefined) return this.err(EINVAL, "mmap: no hugetlb pool of the MAP_HUGE_* size asked for");
      shift = s;
      anonHuge = true;
      len = alignUp64(len, 2 ** s);
    }
    const hsize = 2 ** shift;
    // do_mmap
    if ((flags & MAP_FIXED_NOREPLACE) !== 0) flags |= MAP_FIXED;
    if (len === 0n) return this.err(EINVAL, "mmap: zero length");
    if ((flags & MAP_FIXED) === 0) {
      hint &= PAGE_MASK_B;
      if (hint !== 0n && hint < BigInt(MMAP_MIN_ADDR)) hint = BigInt(MMAP_MIN_ADDR);
    }
    len = alignUp64(len, PAGE_SIZE);
    if (len === 0n) return this.err(ENOMEM, "mmap: length overflows when page aligned");
    const pgoff = off >> 12n;
    if (pgoff + (len >> 12n) >= 1n << 64n) return this.err(EOVERFLOW, "mmap: offset + length overflows");
    if (this.vmas.length > DEFAULT_MAX_MAP_COUNT) return this.err(ENOMEM, "mmap: vm.max_map_count reached");
    // get_unmapped_area
    if (len > BigInt(TASK_SIZE)) return this.err(ENOMEM, "mmap: length larger than the address space");
    const lenN = Number(len);
    let addr: number;
    if ((flags & MAP_FIXED) !== 0) {
      if (shift !== 12 && (hint % BigInt(hsize) !== 0n || hint + len > BigInt(TASK_SIZE))) {
        return this.err(EINVAL, `mmap: MAP_FIXED hugetlb address not aligned to ${hsize} bytes`);
      }
      if (hint > BigInt(TASK_SIZE) - len) return this.err(ENOMEM, "mmap: MAP_FIXED range beyond TASK_SIZE");
      if ((hint & 0xfffn) !== 0n) return this.err(EINVAL, "mmap: MAP_FIXED address is not page aligned");
      addr = Number(hint);
    } else {
      addr = this.getUnmappedArea(hint, lenN, hsize);
      if (addr < 0) return this.err(ENOMEM, "mmap: no free range of that size");
    }
    if (addr < MMAP_MIN_ADDR && !this.cred.caps.has("CAP_SYS_RAWIO")) {
      return this.err(EPERM, "mmap: address below vm.mmap_min_addr needs CAP_SYS_RAWIO");
    }
    const end = addr + lenN;
    if ((flags & MAP_FIXED_NOREPLACE) !== 0 && this.vmas.overlapping(addr, end).length > 0) {
      return this.err(EEXIST, "mmap: MAP_FIXED_NOREPLACE range overlaps a mapping");
    }
    const ipcLock = this.cred.caps.has("CAP_IPC_LOCK");
    if ((flags & MAP_LOCKED) !== 0) {
      if (this.cred.rlimitMemlock === 0n && !ipcLock)
        return this.err(EPERM, "mmap: MAP_LOCKED with RLIMIT_MEMLOCK 0");
      if (!ipcLock && this.lockedVm + lenN / PAGE_SIZE > memlockLimitPages(this.cred)) {
        return this.err(EAGAIN, "mmap: MAP_LOCKED would exceed RLIMIT_MEMLOCK");
      }
    }
    const type = flags & MAP_TYPE;
    let shared: boolean;
    if (file !== null || anonHuge) {
      if (type === MAP_SHARED || type === MAP_SHARED_VALIDATE) {
        if (type === MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK) !== 0) {
          return this.err(EOPNOTSUPP, "mmap: MAP_SHARED_VALIDATE with a flag this file does not support");
        }
        if (
          file !== null &&
          (prot & PROT_WRITE) !== 0 &&
          (file.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) !== 0
        ) {
          return this.err(EPERM, "mmap: shared writable mapping of a write-sealed memfd");
        }
        shared = true;
      } else if (type === MAP_PRIVATE) {
        shared = false;
      } else {
        return this.err(EINVAL, "mmap: mapping type must be MAP_SHARED or MAP_PRIVATE");
      }
    } else if (type === MAP_SHARED) {
      shared = true;
    } else if (type === MAP_PRIVATE) {
      shared = false;
    } else {
      return this.err(EINVAL, "mmap: anonymous mapping type must be MAP_SHARED or MAP_PRIVATE");
    }
    if (file !== null) {
      // file_mmap_ok against shmem/hugetlbfs s_maxbytes
      if (pgoff > (MAX_LFS_FILESIZE - len) >> 12n)
        return this.err(EOVERFLOW, "mmap: offset past the maximum file size");
      if (file.hugetlb && off % BigInt(hsize) !== 0n) {
        return this.err(EINVAL, "mmap: hugetlbfs offset not aligned to the huge page size");
      }
    }
    // mmap_region: everything that can fail before the old range is torn down.
    if ((flags & MAP_FIXED) !== 0) {
      const rc = this.checkUnmap(addr, end);
      if (rc < 0) return rc;
    }
    if (this.faults.hit("vm_area_alloc")) return this.err(ENOMEM, "mmap: cannot allocate the VMA");
    let backing = file;
    if (file === null && shared) {
      const f = MemFile.create(
        this.pages,
        anonHuge ? "[anon_hugetlb]" : "[anon_shmem]",
        anonHuge ? MFD_HUGETLB | (shift << MAP_HUGE_SHIFT) : 0,
      );
      if (typeof f === "number") return this.err(-f, "mmap: cannot set up the shared anonymous file");
      f.size = len;
      backing = f;
    } else if (file !== null) {
      file.get();
    }
    // hugetlbfs_file_mmap -> hugetlb_reserve_pages (MAP_NORESERVE is VM_NORESERVE for hugetlb whatever the overcommit policy)
    let resv: PrivResv | null = null;
    if (shift !== 12 && (flags & MAP_NORESERVE) === 0) {
      const r = this.reserveHuge(shift, shared, backing, Number(pgoff), lenN);
      if (typeof r === "number") {
        backing?.put();
        return r;
      }
      resv = r;
    }
    if ((flags & MAP_FIXED) !== 0) this.unmapRange(addr, end);
    const locked = (flags & MAP_LOCKED) !== 0 && shift === 12;
    const vma = new Vma(
      this,
      addr,
      end,
      prot,
      shared,
      shift,
      backing,
      file !== null ? Number(pgoff) : 0,
      locked,
      file === null,
    );
    vma.resv = resv;
    this.vmas.insert(vma);
    this.pages.liveVmas++;
    backing?.addMapping(vma);
    // hugetlbfs_file_mmap: a writable mapping extends i_size to cover it.
    if (file?.hugetlb && (prot & PROT_WRITE) !== 0) file.growTo(off + len);
    if (locked) this.lockedVm += lenN / PAGE_SIZE;
    if ((flags & MAP_LOCKED) !== 0 || (flags & (MAP_POPULATE | MAP_NONBLOCK)) === MAP_POPULATE)
      this.populate(vma);
    return addr;
  }

  /**
   * hugetlb_reserve_pages for a new hugetlb mapping of `len` bytes at file
   * page `pgoff` (4 KiB units): a shared mapping reserves the file's
   * indices not yet reserved or instantiated, a private one a page per huge
   * page it spans. The private reservation map (null when nothing was
   * reserved), or -ENOMEM when the pool cannot promise the pages.
   */
  private reserveHuge(
    shift: PageShift,
    shared: boolean,
    file: MemFile | null,
    pgoff: number,
    len: number,
  ): PrivResv | null | number {
    const hs = this.pages.hstate((shift - 12) as 9 | 18);
    if (!hs.limited) return null;
    if (this.faults.hit("hugetlb_reserve_pages"))
      return this.err(ENOMEM, "mmap: hugetlb_reserve_pages: cannot allocate the reservation map");
    const n = len / 2 ** shift;
    const why = (need: number) =>
      `mmap: hugetlb_reserve_pages: ${need} ${hs.name} page(s) to reserve but ${hs.free - hs.resv} free and unreserved ` +
      `(nr_hugepages ${hs.nr}, resv ${hs.resv}), and nr_overcommit_hugepages ${hs.overcommit} allows ` +
      `${Math.max(0, hs.overcommit - hs.surplus)} more surplus`;
    if (shared && file !== null) {
      const from = pgoff / 2 ** (shift - 12);
      return file.reserveShared(from, from + n) ? null : this.err(ENOMEM, why(n));
    }
    if (!hs.reserve(n)) return this.err(ENOMEM, why(n));
    return new PrivResv(hs);
  }

  /** mm_populate: fault the mapping in; failures are ignored, as mmap does. */
  private populate(v: Vma): void {
    if ((v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) === 0) return;
    const write = v.mayWrite && !v.shared;
    for (let va = v.start; va < v.end; va += v.pageSize) {
      const r = this.fault(v, va, write, false, null);
      if (r < 0 && r !== F_ZERO) return;
    }
  }

  /** Top-down search below mmap_base, then bottom-up above TASK_UNMAPPED_BASE; -1 when full. */
  private getUnmappedArea(hint: bigint, len: number, align: number): number {
    if (hint !== 0n) {
      let a = Number(hint);
      a = Math.ceil(a / align) * align;
      if (a <= TASK_SIZE - len && a >= MMAP_MIN_ADDR && this.vmas.overlapping(a, a + len).length === 0)
        return a;
    }
    const list = this.vmas.list;
    const low = Math.max(PAGE_SIZE, MMAP_MIN_ADDR);
    for (let i = list.length - 1; i >= -1; i--) {
      const gapStart = Math.max(low, i >= 0 ? list[i].end : 0);
      const gapEnd = Math.min(this.mmapBase, i + 1 < list.length ? list[i + 1].start : TASK_SIZE);
      if (gapEnd - gapStart < len) continue;
      const a = Math.floor((gapEnd - len) / align) * align;
      if (a >= gapStart) return a;
    }
    for (let i = -1; i < list.length; i++) {
      const gapStart = Math.max(TASK_UNMAPPED_BASE, i >= 0 ? list[i].end : 0);
      const gapEnd = i + 1 < list.length ? list[i + 1].start : TASK_SIZE;
      const a = Math.ceil(gapStart / align) * align;
      if (a + len <= gapEnd) return a;
    }
    return -1;
  }

  // ---------------------------------------------------------------- munmap

  /** munmap(2): 0 or -errno. Unmapping nothing is not an error. */
  munmap(addrB: bigint, lenB: bigint): number {
    this.checkLive();
    const addr = BigInt.asUintN(U64, addrB);
    const len0 = BigInt.asUintN(U64, lenB);
    if ((addr & 0xfffn) !== 0n) return this.err(EINVAL, "munmap: address is not page aligned");
    if (addr > BigInt(TASK_SIZE) || len0 > BigInt(TASK_SIZE) - addr) {
      return this.err(EINVAL, "munmap: range beyond TASK_SIZE");
    }
    const len = alignUp64(len0, PAGE_SIZE);
    if (len === 0n) return this.err(EINVAL, "munmap: zero length");
    const start = Number(addr);
    const end = start + Number(len);
    const rc = this.checkUnmap(start, end);
    if (rc < 0) return rc;
    this.unmapRange(start, end);
    return 0;
  }

  /** What can refuse an unmap of [start, end): splitting a hugetlb VMA off its page size, map count. */
  private checkUnmap(start: number, end: number): number {
    const vs = this.vmas.overlapping(start, end);
    for (const v of vs) {
      if (v.shift === 12) continue;
      const size = v.pageSize;
      if ((start > v.start && start % size !== 0) || (end < v.end && end % size !== 0)) {
        return this.err(EINVAL, `munmap: would split a hugetlb mapping off its ${size}-byte page boundary`);
      }
    }
    if (
      vs.length === 1 &&
      vs[0].start < start &&
      vs[0].end > end &&
      this.vmas.length >= DEFAULT_MAX_MAP_COUNT
    ) {
      return this.err(ENOMEM, "munmap: splitting would exceed vm.max_map_count");
    }
    return 0;
  }

  /** Tear down [start, end) (already checked): split VMAs, drop private pages, uncharge VM_LOCKED. */
  private unmapRange(start: number, end: number): void {
    for (const v of this.vmas.overlapping(start, end)) {
      const s = Math.max(start, v.start);
      const e = Math.min(end, v.end);
      if (!v.shared) this.zapPrivate(v, s, e);
      // hugetlb_vm_op_close: the unmapped part's unconsumed reservations go back
      v.resv?.release(s / v.pageSize, e / v.pageSize);
      if (v.locked) this.lockedVm -= (e - s) / PAGE_SIZE;
      this.vmas.remove(v);
      this.pages.liveVmas--;
      v.file?.removeMapping(v);
      if (v.start < s) this.insertPiece(v, v.start, s);
      if (e < v.end) this.insertPiece(v, e, v.end);
      v.file?.put();
      v.io?.put?.();
    }
  }

  private insertPiece(v: Vma, start: number, end: number): void {
    const pgoff = v.file !== null ? v.pgoff + (start - v.start) / PAGE_SIZE : 0;
    const piece = new Vma(this, start, end, v.prot, v.shared, v.shift, v.file, pgoff, v.locked, v.anon);
    piece.resv = v.resv;
    if (v.io !== null) {
      piece.io = v.io;
      piece.pgoff = v.pgoff + (start - v.start) / PAGE_SIZE;
      v.io.get?.();
    }
    this.vmas.insert(piece);
    this.pages.liveVmas++;
    if (v.file !== null) {
      v.file.get();
      v.file.addMapping(piece);
    }
  }

  /** Drop the private pages of `v` in [start, end) (munmap, or truncation of its file). */
  zapPrivate(v: Vma, start: number, end: number): void {
    const m = this.privMap(v.shift);
    if (m.size === 0) return;
    const size = v.pageSize;
    const k0 = Math.floor(start / size);
    const k1 = Math.ceil(end / size);
    if (k1 - k0 <= m.size) {
      for (let k = k0; k < k1; k++) {
        const head = m.get(k);
        if (head >= 0) {
          m.delete(k);
          this.pages.put(head);
        }
      }
    } else {
      // insertion order (as the Map this replaced): it decides the order frames return to the allocator
      m.forEach((k, head) => {
        if (k >= k0 && k < k1) {
          m.delete(k);
          this.pages.put(head);
        }
      });
    }
  }

  // ---------------------------------------------------------------- faults

  private privMap(shift: PageShift): PrivPages {
    return shift === 12 ? this.priv4k : shift === 21 ? this.priv2m : this.priv1g;
  }

  /**
   * Resolve the 4 KiB page at va in v: its pfn, or F_SIGBUS (past EOF),
   * F_OOM (allocation failed) or F_ZERO (untouched private anonymous page
   * read without `unshare`). `write` breaks COW; `unshare` (a long-term
   * pin) gives even a read a private page of its own, as GUP does for the
   * shared zero page. Allocations go into `undo` when given.
   */
  private fault(v: Vma, va: number, write: boolean, unshare: boolean, undo: UndoLog | null): number {
    const size = v.pageSize;
    const key = Math.floor(va / size);
    const sub = Math.floor((va - key * size) / PAGE_SIZE);
    const order = (v.shift - 12) as FolioOrder;
    const m = this.privMap(v.shift);
    if (!v.shared) {
      const have = m.get(key);
      if (have >= 0) {
        // A folio still shared with a forked mm is write-protected in both:
        // a write (or a long-term pin, which must not see a later copy) copies it.
        if ((write || unshare) && this.pages.refCount(have) > 1) {
          const head = this.cowCopy(m, key, have, order, undo);
          return head < 0 ? this.allocFailed(order) : head + sub;
        }
        return have + sub;
      }
    }
    const file = v.file;
    if (file !== null) {
      const foff = v.fileOffset(key * size);
      if (BigInt(foff) >= file.size) return F_SIGBUS;
      const fidx = foff / size;
      // A private file mapping is a COW mapping: a write copies the page,
      // and so does a long-term pin even when read-only (gup_must_unshare,
      // mm/internal.h), so the pin keeps seeing what the process maps later.
      // A hole in a reserved private hugetlb mapping gets a private page from
      // the mapping's reservation (hugetlb_no_page adds it to no page cache).
      if (v.shared || (!write && !unshare && (v.resv === null || file.folio(fidx) >= 0))) {
        const head = file.folioAlloc(fidx, undo);
        return head < 0 ? this.allocFailed(order) : head + sub;
      }
      // Write (or unshare) of a private file page: copy it (a hole copies as zeros).
      const src = file.folio(fidx);
      const head = this.allocPrivate(v, key, order, order === 0 ? "wp_page_copy" : "alloc_hugetlb_folio");
      if (head < 0) return this.allocFailed(order);
      if (src >= 0) for (let i = 0; i < 2 ** order; i++) this.phys.copyFrame(head + i, src + i);
      this.setPrivate(m, key, head, undo);
      this.noteConsumed(v, key, undo);
      return head + sub;
    }
    if (order === 0 && !write && !unshare) return F_ZERO;
    const head = this.allocPrivate(v, key, order, order === 0 ? "do_anonymous_page" : "alloc_hugetlb_folio");
    if (head < 0) return this.allocFailed(order);
    this.setPrivate(m, key, head, undo);
    this.noteConsumed(v, key, undo);
    return head + sub;
  }

  /**
   * A new private folio for huge page `key` of v: from v's reservation when
   * it holds an unconsumed one there (alloc_hugetlb_folio with a
   * reservation cannot fail), else from what the pool has left.
   */
  private allocPrivate(v: Vma, key: number, order: FolioOrder, site: string): number {
    const r = v.resv;
    if (r === null || r.consumed.has(key)) return this.pages.allocFolio(order, site);
    return this.pages.allocReservedFolio(order as 9 | 18);
  }

  /**
   * Mark v's reservation at `key` consumed (after setPrivate, so a rollback
   * gives the reservation back before it frees the folio).
   */
  private noteConsumed(v: Vma, key: number, undo: UndoLog | null): void {
    const r = v.resv;
    if (r === null || r.consumed.has(key)) return;
    r.consumed.add(key);
    undo?.add(() => {
      r.consumed.delete(key);
      r.hs.restoreReserve();
    });
  }

  /** The fault code for a failed allocation: SIGBUS for a limited hugetlb pool (ENOSPC), else OOM. */
  private allocFailed(order: FolioOrder): number {
    return order !== 0 && this.pages.hstate(order).limited ? F_NOHUGE : F_OOM;
  }

  /**
   * Break COW on the folio `old` at `key` (wp_page_copy, hugetlb_wp): a
   * copy of its bytes replaces it in this mm, which drops its reference on
   * the shared one. The new head, or -1 when no folio can be allocated.
   */
  private cowCopy(m: PrivPages, key: number, old: number, order: FolioOrder, undo: UndoLog | null): number {
    const head = this.pages.allocFolio(order, order === 0 ? "wp_page_copy" : "hugetlb_wp");
    if (head < 0) return -1;
    for (let i = 0; i < 2 ** order; i++) this.phys.copyFrame(head + i, old + i);
    m.set(key, head);
    this.pages.put(old);
    undo?.add(() => {
      this.pages.get(old);
      m.set(key, old);
      this.pages.put(head);
    });
    return head;
  }

  private setPrivate(m: PrivPages, key: number, head: number, undo: UndoLog | null): void {
    m.set(key, head);
    undo?.addFolio(m, key, head, this.putFolio);
  }

  // ---------------------------------------------------------------- access

  /** The process reading its own memory: the bytes, or -EFAULT (unmapped, not readable, past EOF). */
  read(vaB: bigint, len: number): Uint8Array | number {
    this.checkLive();
    if (len === 0) return new Uint8Array(0);
    const va = this.userRange(vaB, len);
    if (va < 0) return this.err(EFAULT, "read: range outside user space");
    const io = this.ioAccess(va, len, null);
    if (io !== undefined) return io;
    const out = new Uint8Array(len);
    const undo = new UndoLog();
    for (let done = 0; done < len; ) {
      const cur = va + done;
      const inPage = cur % PAGE_SIZE;
      const step = Math.min(PAGE_SIZE - inPage, len - done);
      const v = this.vmas.find(cur);
      if (v === undefined || !v.cpuReadable) {
        undo.rollback();
        return this.err(
          EFAULT,
          `read: 0x${cur.toString(16)} is ${v === undefined ? "not mapped" : "not readable"}`,
        );
      }
      const pfn = this.fault(v, cur, false, false, undo);
      if (pfn === F_SIGBUS || pfn === F_OOM || pfn === F_NOHUGE) {
        undo.rollback();
        return this.err(EFAULT, `read: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
      }
      const src = pfn === F_ZERO ? ZERO_PAGE : this.phys.peekU8(pfn);
      out.set(src.subarray(inPage, inPage + step), done);
      done += step;
    }
    return out;
  }

  /** The process writing its own memory: 0, or -EFAULT with nothing written. */
  write(vaB: bigint, bytes: Uint8Array): number {
    this.checkLive();
    const len = bytes.length;
    if (len === 0) return 0;
    const va = this.userRange(vaB, len);
    if (va < 0) return this.err(EFAULT, "write: range outside user space");
    const io = this.ioAccess(va, len, bytes);
    if (io !== undefined) return io as number;
    const undo = new UndoLog();
    const first = Math.floor(va / PAGE_SIZE);
    const last = Math.floor((va + len - 1) / PAGE_SIZE);
    const pfns = new Float64Array(last - first + 1);
    for (let pg = first; pg <= last; pg++) {
      const cur = pg * PAGE_SIZE;
      const v = this.vmas.find(cur);
      if (v === undefined || !v.mayWrite) {
        undo.rollback();
        return this.err(
          EFAULT,
          `write: 0x${cur.toString(16)} is ${v === undefined ? "not mapped" : "not writable"}`,
        );
      }
      const pfn = this.fault(v, cur, true, false, undo);
      if (pfn < 0) {
        undo.rollback();
        return this.err(EFAULT, `write: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
      }
      pfns[pg - first] = pfn;
    }
    for (let done = 0; done < len; ) {
      const cur = va + done;
      const inPage = cur % PAGE_SIZE;
      const step = Math.min(PAGE_SIZE - inPage, len - done);
      const pfn = pfns[Math.floor(cur / PAGE_SIZE) - first];
      this.phys.frameU8(pfn).set(bytes.subarray(done, done + step), inPage);
      done += step;
    }
    return 0;
  }

  /** The physical address va maps now, or null (unmapped, or not populated). Never faults. */
  translate(vaB: bigint): bigint | null {
    if (vaB < 0n || vaB >= BigInt(TASK_SIZE)) return null;
    const va = Number(vaB);
    const v = this.vmas.find(va);
    if (v === undefined || v.io !== null) return null;
    const size = v.pageSize;
    const key = Math.floor(va / size);
    const sub = Math.floor((va - key * size) / PAGE_SIZE);
    let pfn = -1;
    if (!v.shared) {
      const have = this.privMap(v.shift).get(key);
      if (have >= 0) pfn = have + sub;
    }
    if (pfn < 0 && v.file !== null) {
      const foff = v.fileOffset(Math.floor(va / PAGE_SIZE) * PAGE_SIZE);
      if (BigInt(foff) < v.file.size) pfn = v.file.pfnAt(foff / PAGE_SIZE);
    }
    if (pfn < 0) return null;
    return BigInt(pfn) * BigInt(PAGE_SIZE) + BigInt(va % PAGE_SIZE);
  }

  // ---------------------------------------------------------------- pin

  /**
   * pin_user_pages(FOLL_LONGTERM [| FOLL_WRITE]) of `nPages` pages from va
   * (rounded down to a page). All-or-nothing: EFAULT when a page is not
   * mapped, past EOF, or lacks VM_WRITE (write) / VM_READ (read); ENOMEM
   * when a page cannot be allocated or a failure is injected at `site`.
   * On failure nothing is pinned and nothing stays allocated.
   * Accounting (pinned_vm, locked_vm) is the caller's: see accountLockedVm.
   */
  pinUserPages(vaB: bigint, nPages: number, write: boolean, site = "pin_user_pages"): PfnRuns | number {
    this.checkLive();
    if (!Number.isInteger(nPages) || nPages < 0) return this.err(EINVAL, "pin: bad page count");
    if (nPages === 0) return emptyRuns();
    const va = this.userRange(BigInt.asUintN(U64, vaB) & PAGE_MASK_B, nPages * PAGE_SIZE);
    if (va < 0) return this.err(EFAULT, "pin: range outside user space");
    const end = va + nPages * PAGE_SIZE;
    let cur = va;
    // folios the range touches: at most one run and one allocation each
    let folios = 0;
    for (const v of this.vmas.overlapping(va, end)) {
      if (v.start > cur) return this.err(EFAULT, `pin: 0x${cur.toString(16)} is not mapped`);
      const size = v.pageSize;
      folios += Math.floor((Math.min(end, v.end) - 1) / size) - Math.floor(Math.max(va, v.start) / size) + 1;
      if (v.io !== null)
        return this.err(EFAULT, "pin: device memory (VM_IO | VM_PFNMAP) has no pages to pin");
      if (write && !v.mayWrite) return this.err(EFAULT, `pin: write pin of a mapping without PROT_WRITE`);
      if (!write && !v.mayRead) return this.err(EFAULT, `pin: read pin of a mapping without PROT_READ`);
      if (v.file !== null) {
        // A page past EOF would SIGBUS: refuse before anything is faulted in.
        const last = Math.min(end, v.end) - PAGE_SIZE;
        const folio = Math.floor(last / v.pageSize) * v.pageSize;
        if (BigInt(v.fileOffset(Math.max(folio, v.start))) >= v.file.size) {
          return this.err(EFAULT, `pin: 0x${last.toString(16)} is past the end of the mapped file`);
        }
      }
      cur = v.end;
    }
    if (cur < end) return this.err(EFAULT, `pin: 0x${cur.toString(16)} is not mapped`);
    if (this.faults.hit(site)) return this.err(ENOMEM, `pin: injected failure at ${site}`);
    // (the undo log needs no size: fresh private folios are one record per run of them)
    const undo = new UndoLog();
    const b = new RunBuilder(Math.min(folios, 1 << 16));
    for (cur = va; cur < end; ) {
      // one VMA lookup per VMA, then folio by folio inside it
      const v = this.vmas.find(cur)!;
      const size = v.pageSize;
      const stop = Math.min(end, v.end);
      if (!v.shared && v.file === null && v.resv === null) {
        // private anonymous: what fault() does with unshare, folio by folio, without its general cases
        cur = this.pinAnon(v, cur, stop, b, undo);
        if (cur < 0) {
          this.pages.unpinRuns(b.peek());
          undo.rollback();
          return cur;
        }
        continue;
      }
      while (cur < stop) {
        const pfn = this.fault(v, cur, write, true, undo);
        if (pfn < 0) {
          this.pages.unpinRuns(b.peek());
          undo.rollback();
          if (pfn === F_NOHUGE)
            return this.err(EFAULT, `pin: fault at 0x${cur.toString(16)} (${faultWhy(pfn)})`);
          return pfn === F_SIGBUS
            ? this.err(EFAULT, `pin: 0x${cur.toString(16)} is past the end of the mapped file`)
            : this.err(ENOMEM, `pin: cannot allocate the page at 0x${cur.toString(16)}`);
        }
        const folioEnd = (Math.floor(cur / size) + 1) * size;
        const step = (Math.min(folioEnd, stop) - cur) / PAGE_SIZE;
        this.pages.pinRange(pfn, step);
        b.push(pfn, step);
        cur += step * PAGE_SIZE;
      }
    }
    return b.finish();
  }

  /**
   * Pin [cur, stop) of a private anonymous VMA: each folio found in the
   * private map or allocated there (as fault() with `unshare`: a read pin
   * gets a page of its own too), pinned, and appended to `b`. Returns
   * `stop`, or -ENOMEM (lastReason set) with the caller left to undo.
   */
  private pinAnon(v: Vma, cur: number, stop: number, b: RunBuilder, undo: UndoLog): number {
    // in pieces of at most 512 folios: a short loop called often gets optimized as a
    // whole early, where one long loop would run on-stack-replaced code only
    const size = v.pageSize;
    while (cur < stop) {
      const e = Math.min(stop, (Math.floor(cur / size) + 512) * size);
      cur = this.pinAnonPiece(v, cur, e, b, undo);
      if (cur < 0) return cur;
    }
    return stop;
  }

  private pinAnonPiece(v: Vma, cur: number, stop: number, b: RunBuilder, undo: UndoLog): number {
    const size = v.pageSize;
    const order = (v.shift - 12) as FolioOrder;
    const site = order === 0 ? "do_anonymous_page" : "alloc_hugetlb_folio";
    const m = this.privMap(v.shift);
    const pages = this.pages;
    let key = Math.floor(cur / size);
    let sub = (cur - key * size) / PAGE_SIZE;
    const perFolio = size / PAGE_SIZE;
    // folios this call installs come in runs of consecutive keys: one undo record per run
    let fresh0 = key;
    let fresh = 0;
    while (cur < stop) {
      let head = m.get(key);
      if (head < 0) {
        head = pages.allocFolio(order, site);
        if (head < 0) {
          undo.addFolioRange(m, fresh0, fresh, this.putFolio);
          if (this.allocFailed(order) === F_NOHUGE)
            return this.err(EFAULT, `pin: fault at 0x${cur.toString(16)} (${faultWhy(F_NOHUGE)})`);
          return this.err(ENOMEM, `pin: cannot allocate the page at 0x${cur.toString(16)}`);
        }
        m.set(key, head);
        if (fresh === 0) fresh0 = key;
        fresh++;
      } else {
        if (fresh > 0) {
          undo.addFolioRange(m, fresh0, fresh, this.putFolio);
          fresh = 0;
        }
        // still shared with a forked mm: a FOLL_LONGTERM pin unshares it first (gup_must_unshare)
        if (pages.refCount(head) > 1) {
          head = this.cowCopy(m, key, head, order, undo);
          if (head < 0) return this.err(ENOMEM, `pin: cannot unshare the page at 0x${cur.toString(16)}`);
        }
      }
      const folioEnd = (key + 1) * size;
      const step = folioEnd <= stop ? perFolio - sub : (stop - cur) / PAGE_SIZE;
      pages.pinInFolio(head, head + sub, step);
      b.push(head + sub, step);
      cur += step * PAGE_SIZE;
      key++;
      sub = 0;
    }
    undo.addFolioRange(m, fresh0, fresh, this.putFolio);
    return stop;
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
  fork(opts: MmForkOptions): MmStruct | number {
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
      if (!v.shared && v.io === null && !this.copyPrivate(v, child)) {
        child.release();
        return this.err(ENOMEM, `fork: cannot copy a pinned page of 0x${v.start.toString(16)} for the child`);
      }
    }
    return child;
  }

  /** copy_page_range of one private VMA: share each folio COW, or copy it when pinned. False on ENOMEM. */
  private copyPrivate(v: Vma, child: MmStruct): boolean {
    const m = this.privMap(v.shift);
    if (m.size === 0) return true;
    const cm = child.privMap(v.shift);
    const order = (v.shift - 12) as FolioOrder;
    const size = v.pageSize;
    const k0 = Math.floor(v.start / size);
    const k1 = Math.ceil(v.end / size);
    const copyOne = (key: number, head: number): boolean => {
      if (!this.pages.isPinned(head)) {
        this.pages.get(head);
        cm.set(key, head);
        return true;
      }
      const copy = this.pages.allocFolio(
        order,
        order === 0 ? "copy_present_page" : "copy_hugetlb_page_range",
      );
      if (copy < 0) return false;
      for (let i = 0; i < 2 ** order; i++) this.phys.copyFrame(copy + i, head + i);
      cm.set(key, copy);
      return true;
    };
    if (k1 - k0 <= m.size) {
      for (let k = k0; k < k1; k++) {
        const head = m.get(k);
        if (head >= 0 && !copyOne(k, head)) return false;
      }
      return true;
    }
    let ok = true;
    m.forEach((k, head) => {
      if (ok && k >= k0 && k < k1) ok = copyOne(k, head);
    });
    return ok;
  }

  // ---------------------------------------------------------------- exit, views

  /** exit_mmap: unmap everything. Pinned pages live on until unpinned; pinned_vm stays for its owner to uncharge. */
  release(): void {
    if (this.released) return;
    this.unmapRange(0, TASK_SIZE);
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
  private userRange(vaB: bigint, len: number): number {
    if (vaB < 0n || vaB + BigInt(len) > BigInt(TASK_SIZE)) return -1;
    return Number(vaB);
  }

  private checkLive(): void {
    if (this.released) throw new Error("MmStruct used after release()");
  }

  private err(errno: number, reason: string): number {
    this.lastReason = reason;
    return -errno;
  }
}

function faultWhy(code: number): string {
  if (code === F_SIGBUS) return "past EOF";
  if (code === F_NOHUGE)
    return "SIGBUS: no free huge page without a reservation and no surplus allowed (MAP_NORESERVE, or a forked child's private copy)";
  return "no memory";
}

function alignUp64(v: bigint, align: number): bigint {
  const a = BigInt(align) - 1n;
  return BigInt.asUintN(U64, (v + a) & ~a);
}

/**
 * arch/x86 mmap_base: below the stack gap (RLIMIT_STACK 8 MiB plus the
 * guard gap, plus the stack's random range when randomizing, at least
 * 128 MiB), minus 28 bits of page-granular randomness when seeded.
 */
function mmapBase(seed: number | undefined): number {
  const randomize = seed !== undefined;
  const pad = (1 << 20) + (randomize ? 0x3fffff * PAGE_SIZE : 0);
  const gap = Math.min(Math.max((8 << 20) + pad, 128 << 20), Math.floor(TASK_SIZE / 6) * 5);
  const rnd = randomize ? (new Prng(seed).next() & ((1 << 28) - 1)) * PAGE_SIZE : 0;
  return Math.floor((TASK_SIZE - gap - rnd) / PAGE_SIZE) * PAGE_SIZE;
}
