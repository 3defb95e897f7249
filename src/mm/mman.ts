/**
 * Linux x86-64 mmap/memfd constants and address-space limits the mm layer
 * needs (include/uapi/asm-generic/mman-common.h, mman.h, linux/memfd.h,
 * arch/x86/include/asm/page_64_types.h). Kept private to mm until
 * src/uapi/linux.ts lands; the values are the ABI and must match it.
 */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
/** Mask of the mapping type bits (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, ...). */
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_GROWSDOWN = 0x100;
export const MAP_DENYWRITE = 0x800;
export const MAP_EXECUTABLE = 0x1000;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_NONBLOCK = 0x10000;
export const MAP_STACK = 0x20000;
export const MAP_HUGETLB = 0x40000;
export const MAP_SYNC = 0x80000;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MAP_UNINITIALIZED = 0x4000000;
export const MAP_HUGE_SHIFT = 26;
export const MAP_HUGE_MASK = 0x3f;
export const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
export const MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;

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

export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const MFD_HUGETLB = 0x4;
export const MFD_NOEXEC_SEAL = 0x8;
export const MFD_EXEC = 0x10;
export const MFD_HUGE_SHIFT = MAP_HUGE_SHIFT;
export const MFD_HUGE_MASK = MAP_HUGE_MASK;
export const MFD_HUGE_2MB = MAP_HUGE_2MB;
export const MFD_HUGE_1GB = MAP_HUGE_1GB;

// File seals (include/uapi/linux/fcntl.h).
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;
export const F_SEAL_EXEC = 0x20;
export const F_ALL_SEALS =
  F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

/** RLIM_INFINITY: all ones, as the kernel spells it. */
export const RLIM_INFINITY = (1n << 64n) - 1n;
/** The default RLIMIT_MEMLOCK of a current kernel (MLOCK_LIMIT, 8 MiB). */
export const MLOCK_LIMIT = 8n << 20n;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
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
