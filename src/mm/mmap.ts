import { Prng } from "../hw/prng.js";
import { EAGAIN, EBADF, EEXIST, EINVAL, ENOMEM, EOPNOTSUPP, EOVERFLOW, EPERM } from "../uapi/errno.js";
import { F_ZERO, handleFault } from "./fault.js";
import { PrivResv } from "./hugetlb-pool.js";
import type { IoMem } from "./io-mem.js";
import { memlockLimitPages } from "./locked-vm.js";
import { hugeShiftFromLog, MemFile } from "./memfd.js";
import type { MmStruct } from "./mm-struct.js";
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
  MMAP_MIN_ADDR,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
  TASK_SIZE,
  TASK_UNMAPPED_BASE,
} from "./mman.js";
import { checkUnmap, unmapRange } from "./munmap.js";
import { type PageShift, Vma } from "./vma.js";

/**
 * mmap(2) for an MmStruct: do_mmap's checks and errnos, get_unmapped_area, hugetlb
 * reservations at mmap time, MAP_POPULATE/MAP_LOCKED population, and mmap_base.
 */

/**
 * mmap of device memory: a shared mapping of the driver's IoMem (drivers
 * such as vfio-pci refuse MAP_PRIVATE with EINVAL); no hugetlb, no
 * populate, no locking; the VMA holds a reference on the mapping.
 */
export function doMmapIo(
  mm: MmStruct,
  addrB: bigint,
  lenB: bigint,
  prot: number,
  flags: number,
  io: IoMem,
  offB: bigint,
): number {
  if ((flags & MAP_ANONYMOUS) !== 0) return doMmap(mm, addrB, lenB, prot, flags, null, offB);
  const type = flags & MAP_TYPE;
  if (type !== MAP_SHARED && type !== MAP_SHARED_VALIDATE) {
    return mm.err(EINVAL, "mmap: device memory can only be mapped MAP_SHARED");
  }
  if ((flags & (MAP_HUGETLB | MAP_LOCKED)) !== 0) {
    return mm.err(EINVAL, "mmap: MAP_HUGETLB/MAP_LOCKED on device memory");
  }
  // Place it as an anonymous shared mapping would be placed, then turn the VMA into device memory.
  const before = new Set(mm.vmas.list);
  const r = doMmap(
    mm,
    addrB,
    lenB,
    prot,
    (flags & ~(MAP_TYPE | MAP_POPULATE)) | MAP_PRIVATE | MAP_ANONYMOUS,
    null,
    0n,
  );
  if (r < 0) return r;
  const v = mm.vmas.list.find((x) => !before.has(x) && x.start === r)!;
  v.io = io;
  v.pgoff = Number(BigInt.asUintN(U64, offB) >> 12n);
  io.get?.();
  return r;
}

export function doMmap(
  mm: MmStruct,
  addrB: bigint,
  lenB: bigint,
  prot: number,
  flags: number,
  file: MemFile | null,
  offB: bigint,
): number {
  mm.checkLive();
  const off = BigInt.asUintN(U64, offB);
  let len = BigInt.asUintN(U64, lenB);
  let hint = BigInt.asUintN(U64, addrB);
  // arch/x86 sys_mmap: the byte offset must be page aligned.
  if ((off & 0xfffn) !== 0n) return mm.err(EINVAL, "mmap: offset is not page aligned");
  let shift: PageShift = 12;
  let anonHuge = false;
  if ((flags & MAP_ANONYMOUS) !== 0) file = null;
  else if (file === null) return mm.err(EBADF, "mmap: no file and no MAP_ANONYMOUS");
  if (file !== null) {
    if (file.hugetlb) {
      shift = file.shift;
      len = alignUp64(len, file.folioSize);
    } else if ((flags & MAP_HUGETLB) !== 0) {
      return mm.err(EINVAL, "mmap: MAP_HUGETLB on a file that is not on hugetlbfs");
    }
  } else if ((flags & MAP_HUGETLB) !== 0) {
    const s = hugeShiftFromLog((flags >>> MAP_HUGE_SHIFT) & MAP_HUGE_MASK);
    if (s === undefined) return mm.err(EINVAL, "mmap: no hugetlb pool of the MAP_HUGE_* size asked for");
    shift = s;
    anonHuge = true;
    len = alignUp64(len, 2 ** s);
  }
  const hsize = 2 ** shift;
  // do_mmap
  if ((flags & MAP_FIXED_NOREPLACE) !== 0) flags |= MAP_FIXED;
  if (len === 0n) return mm.err(EINVAL, "mmap: zero length");
  if ((flags & MAP_FIXED) === 0) {
    hint &= PAGE_MASK_B;
    if (hint !== 0n && hint < BigInt(MMAP_MIN_ADDR)) hint = BigInt(MMAP_MIN_ADDR);
  }
  len = alignUp64(len, PAGE_SIZE);
  if (len === 0n) return mm.err(ENOMEM, "mmap: length overflows when page aligned");
  const pgoff = off >> 12n;
  if (pgoff + (len >> 12n) >= 1n << 64n) return mm.err(EOVERFLOW, "mmap: offset + length overflows");
  if (mm.vmas.length > DEFAULT_MAX_MAP_COUNT) return mm.err(ENOMEM, "mmap: vm.max_map_count reached");
  // get_unmapped_area
  if (len > BigInt(TASK_SIZE)) return mm.err(ENOMEM, "mmap: length larger than the address space");
  const lenN = Number(len);
  let addr: number;
  if ((flags & MAP_FIXED) !== 0) {
    if (shift !== 12 && (hint % BigInt(hsize) !== 0n || hint + len > BigInt(TASK_SIZE))) {
      return mm.err(EINVAL, `mmap: MAP_FIXED hugetlb address not aligned to ${hsize} bytes`);
    }
    if (hint > BigInt(TASK_SIZE) - len) return mm.err(ENOMEM, "mmap: MAP_FIXED range beyond TASK_SIZE");
    if ((hint & 0xfffn) !== 0n) return mm.err(EINVAL, "mmap: MAP_FIXED address is not page aligned");
    addr = Number(hint);
  } else {
    addr = getUnmappedArea(mm, hint, lenN, hsize);
    if (addr < 0) return mm.err(ENOMEM, "mmap: no free range of that size");
  }
  if (addr < MMAP_MIN_ADDR && !mm.cred.caps.has("CAP_SYS_RAWIO")) {
    return mm.err(EPERM, "mmap: address below vm.mmap_min_addr needs CAP_SYS_RAWIO");
  }
  const end = addr + lenN;
  if ((flags & MAP_FIXED_NOREPLACE) !== 0 && mm.vmas.overlapping(addr, end).length > 0) {
    return mm.err(EEXIST, "mmap: MAP_FIXED_NOREPLACE range overlaps a mapping");
  }
  const ipcLock = mm.cred.caps.has("CAP_IPC_LOCK");
  if ((flags & MAP_LOCKED) !== 0) {
    if (mm.cred.rlimitMemlock === 0n && !ipcLock)
      return mm.err(EPERM, "mmap: MAP_LOCKED with RLIMIT_MEMLOCK 0");
    if (!ipcLock && mm.lockedVm + lenN / PAGE_SIZE > memlockLimitPages(mm.cred)) {
      return mm.err(EAGAIN, "mmap: MAP_LOCKED would exceed RLIMIT_MEMLOCK");
    }
  }
  const type = flags & MAP_TYPE;
  let shared: boolean;
  if (file !== null || anonHuge) {
    if (type === MAP_SHARED || type === MAP_SHARED_VALIDATE) {
      if (type === MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK) !== 0) {
        return mm.err(EOPNOTSUPP, "mmap: MAP_SHARED_VALIDATE with a flag this file does not support");
      }
      if (
        file !== null &&
        (prot & PROT_WRITE) !== 0 &&
        (file.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) !== 0
      ) {
        return mm.err(EPERM, "mmap: shared writable mapping of a write-sealed memfd");
      }
      shared = true;
    } else if (type === MAP_PRIVATE) {
      shared = false;
    } else {
      return mm.err(EINVAL, "mmap: mapping type must be MAP_SHARED or MAP_PRIVATE");
    }
  } else if (type === MAP_SHARED) {
    shared = true;
  } else if (type === MAP_PRIVATE) {
    shared = false;
  } else {
    return mm.err(EINVAL, "mmap: anonymous mapping type must be MAP_SHARED or MAP_PRIVATE");
  }
  if (file !== null) {
    // file_mmap_ok against shmem/hugetlbfs s_maxbytes
    if (pgoff > (MAX_LFS_FILESIZE - len) >> 12n)
      return mm.err(EOVERFLOW, "mmap: offset past the maximum file size");
    if (file.hugetlb && off % BigInt(hsize) !== 0n) {
      return mm.err(EINVAL, "mmap: hugetlbfs offset not aligned to the huge page size");
    }
  }
  // mmap_region: everything that can fail before the old range is torn down.
  if ((flags & MAP_FIXED) !== 0) {
    const rc = checkUnmap(mm, addr, end);
    if (rc < 0) return rc;
  }
  if (mm.faults.hit("vm_area_alloc")) return mm.err(ENOMEM, "mmap: cannot allocate the VMA");
  let backing = file;
  if (file === null && shared) {
    const f = MemFile.create(
      mm.pages,
      anonHuge ? "[anon_hugetlb]" : "[anon_shmem]",
      anonHuge ? MFD_HUGETLB | (shift << MAP_HUGE_SHIFT) : 0,
    );
    f.size = len;
    backing = f;
  } else if (file !== null) {
    file.get();
  }
  // hugetlbfs_file_mmap -> hugetlb_reserve_pages (MAP_NORESERVE is VM_NORESERVE for hugetlb whatever the overcommit policy)
  let resv: PrivResv | null = null;
  if (shift !== 12 && (flags & MAP_NORESERVE) === 0) {
    try {
      resv = reserveHuge(mm, shift, shared, backing, Number(pgoff), lenN);
    } catch (e) {
      backing?.put();
      throw e;
    }
  }
  if ((flags & MAP_FIXED) !== 0) unmapRange(mm, addr, end);
  const locked = (flags & MAP_LOCKED) !== 0 && shift === 12;
  const vma = new Vma(
    mm,
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
  mm.vmas.insert(vma);
  mm.pages.liveVmas++;
  backing?.addMapping(vma);
  // hugetlbfs_file_mmap: a writable mapping extends i_size to cover it.
  if (file?.hugetlb && (prot & PROT_WRITE) !== 0) file.growTo(off + len);
  if (locked) mm.lockedVm += lenN / PAGE_SIZE;
  if ((flags & MAP_LOCKED) !== 0 || (flags & (MAP_POPULATE | MAP_NONBLOCK)) === MAP_POPULATE)
    populate(mm, vma);
  return addr;
}

/**
 * hugetlb_reserve_pages for a new hugetlb mapping of `len` bytes at file
 * page `pgoff` (4 KiB units): a shared mapping reserves the file's
 * indices not yet reserved or instantiated, a private one a page per huge
 * page it spans. The private reservation map (null when nothing was
 * reserved), or -ENOMEM when the pool cannot promise the pages.
 */
export function reserveHuge(
  mm: MmStruct,
  shift: PageShift,
  shared: boolean,
  file: MemFile | null,
  pgoff: number,
  len: number,
): PrivResv | null {
  const hs = mm.pages.hstate((shift - 12) as 9 | 18);
  if (!hs.limited) return null;
  if (mm.faults.hit("hugetlb_reserve_pages"))
    return mm.err(ENOMEM, "mmap: hugetlb_reserve_pages: cannot allocate the reservation map");
  const n = len / 2 ** shift;
  const why = (need: number) =>
    `mmap: hugetlb_reserve_pages: ${need} ${hs.name} page(s) to reserve but ${hs.free - hs.resv} free and unreserved ` +
    `(nr_hugepages ${hs.nr}, resv ${hs.resv}), and nr_overcommit_hugepages ${hs.overcommit} allows ` +
    `${Math.max(0, hs.overcommit - hs.surplus)} more surplus`;
  if (shared && file !== null) {
    const from = pgoff / 2 ** (shift - 12);
    return file.reserveShared(from, from + n) ? null : mm.err(ENOMEM, why(n));
  }
  if (!hs.reserve(n)) return mm.err(ENOMEM, why(n));
  return new PrivResv(hs);
}

/** mm_populate: fault the mapping in; failures are ignored, as mmap does. */
export function populate(mm: MmStruct, v: Vma): void {
  if ((v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) === 0) return;
  const write = v.mayWrite && !v.shared;
  for (let va = v.start; va < v.end; va += v.pageSize) {
    const r = handleFault(mm, v, va, write, false, null);
    if (r < 0 && r !== F_ZERO) return;
  }
}

/** Top-down search below mmap_base, then bottom-up above TASK_UNMAPPED_BASE; -1 when full. */
export function getUnmappedArea(mm: MmStruct, hint: bigint, len: number, align: number): number {
  if (hint !== 0n) {
    let a = Number(hint);
    a = Math.ceil(a / align) * align;
    if (a <= TASK_SIZE - len && a >= MMAP_MIN_ADDR && mm.vmas.overlapping(a, a + len).length === 0) return a;
  }
  const list = mm.vmas.list;
  const low = Math.max(PAGE_SIZE, MMAP_MIN_ADDR);
  for (let i = list.length - 1; i >= -1; i--) {
    const gapStart = Math.max(low, i >= 0 ? list[i].end : 0);
    const gapEnd = Math.min(mm.mmapBase, i + 1 < list.length ? list[i + 1].start : TASK_SIZE);
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

export const U64 = 64;

export function alignUp64(v: bigint, align: number): bigint {
  const a = BigInt(align) - 1n;
  return BigInt.asUintN(U64, (v + a) & ~a);
}

/**
 * arch/x86 mmap_base: below the stack gap (RLIMIT_STACK 8 MiB plus the
 * guard gap, plus the stack's random range when randomizing, at least
 * 128 MiB), minus 28 bits of page-granular randomness when seeded.
 */
export function mmapBase(seed: number | undefined): number {
  const randomize = seed !== undefined;
  const pad = (1 << 20) + (randomize ? 0x3fffff * PAGE_SIZE : 0);
  const gap = Math.min(Math.max((8 << 20) + pad, 128 << 20), Math.floor(TASK_SIZE / 6) * 5);
  const rnd = randomize ? (new Prng(seed).next() & ((1 << 28) - 1)) * PAGE_SIZE : 0;
  return Math.floor((TASK_SIZE - gap - rnd) / PAGE_SIZE) * PAGE_SIZE;
}
const PAGE_MASK_B = ~BigInt(PAGE_SIZE - 1);
