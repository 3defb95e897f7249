/**
 * The mmap/memfd ABI constants mm needs come from src/uapi/linux.ts (one
 * copy of the Linux x86-64 values); this file adds what only mm uses:
 * masks and address-space limits (include/uapi/asm-generic/mman-common.h,
 * arch/x86/include/asm/page_64_types.h, mm/mmap.c).
 */
import {
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MAP_ANONYMOUS,
  MAP_DENYWRITE,
  MAP_EXECUTABLE,
  MAP_FIXED,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NONBLOCK,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_STACK,
  MAP_UNINITIALIZED,
  PAGE_SIZE,
} from "../uapi/linux.js";

export {
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MAP_ANONYMOUS,
  MAP_DENYWRITE,
  MAP_EXECUTABLE,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_GROWSDOWN,
  MAP_HUGE_1GB,
  MAP_HUGE_2MB,
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
  MAP_STACK,
  MAP_SYNC,
  MAP_TYPE,
  MAP_UNINITIALIZED,
  MFD_ALLOW_SEALING,
  MFD_CLOEXEC,
  MFD_EXEC,
  MFD_HUGE_1GB,
  MFD_HUGE_2MB,
  MFD_HUGE_MASK,
  MFD_HUGE_SHIFT,
  MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
  PAGE_SHIFT,
  PAGE_SIZE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  RLIM_INFINITY,
} from "../uapi/linux.js";

/** Every seal memfd knows. */
export const F_ALL_SEALS =
  F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

/** Flags MAP_SHARED_VALIDATE accepts from any file (the kernel's LEGACY_MAP_MASK). */
export const LEGACY_MAP_MASK =
  MAP_SHARED |
  MAP_PRIVATE |
  MAP_FIXED |
  MAP_ANONYMOUS |
  MAP_DENYWRITE |
  MAP_EXECUTABLE |
  MAP_UNINITIALIZED |
  MAP_GROWSDOWN |
  MAP_LOCKED |
  MAP_NORESERVE |
  MAP_POPULATE |
  MAP_NONBLOCK |
  MAP_STACK |
  MAP_HUGETLB;

/** The default RLIMIT_MEMLOCK of a current kernel (MLOCK_LIMIT, 8 MiB). */
export const MLOCK_LIMIT = 8n << 20n;

export const HPAGE_2M_SHIFT = 21;
export const HPAGE_1G_SHIFT = 30;

/** x86-64 4-level TASK_SIZE_MAX: the top of user space (2^47 - one page). */
export const TASK_SIZE = 0x7ffffffff000;
/** Default vm.mmap_min_addr (65536): below it only CAP_SYS_RAWIO may map. */
export const MMAP_MIN_ADDR = 0x10000;
/** Where bottom-up placement starts (TASK_SIZE / 3, page aligned). */
export const TASK_UNMAPPED_BASE = Math.ceil(TASK_SIZE / 3 / PAGE_SIZE) * PAGE_SIZE;
/** Default vm.max_map_count. */
export const DEFAULT_MAX_MAP_COUNT = 65530;
/** MAX_LFS_FILESIZE on 64-bit: the largest file size (LLONG_MAX). */
export const MAX_LFS_FILESIZE = (1n << 63n) - 1n;
