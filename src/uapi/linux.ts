// General Linux x86-64 constants user space passes to open/mmap/memfd_create/
// eventfd (include/uapi/asm-generic/fcntl.h, mman-common.h, x86 mman.h,
// linux/memfd.h, linux/eventfd.h, linux/capability.h, asm-generic/resource.h).

// open(2) flags (octal as in asm-generic/fcntl.h)
export const O_ACCMODE = 0o3;
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DSYNC = 0o10000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_NOATIME = 0o1000000;
export const O_CLOEXEC = 0o2000000;
export const O_SYNC = 0o4010000;
export const O_PATH = 0o10000000;

// mmap(2) protections
export const PROT_NONE = 0x0;
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;

// mmap(2) flags
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_ANON = MAP_ANONYMOUS;
export const MAP_32BIT = 0x40; // x86-64 only
export const MAP_GROWSDOWN = 0x0100;
export const MAP_DENYWRITE = 0x0800;
export const MAP_EXECUTABLE = 0x1000;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x008000;
export const MAP_NONBLOCK = 0x010000;
export const MAP_STACK = 0x020000;
export const MAP_HUGETLB = 0x040000;
export const MAP_SYNC = 0x080000;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MAP_UNINITIALIZED = 0x4000000;
/** Huge page size encoding: log2(size) << MAP_HUGE_SHIFT. */
export const MAP_HUGE_SHIFT = 26;
export const MAP_HUGE_MASK = 0x3f;
export const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
export const MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;
/** (void *)-1 as mmap's failure value in C; the model returns -errno instead. */
export const MAP_FAILED = -1n;

// memfd_create(2)
export const MFD_CLOEXEC = 0x0001;
export const MFD_ALLOW_SEALING = 0x0002;
export const MFD_HUGETLB = 0x0004;
export const MFD_NOEXEC_SEAL = 0x0008;
export const MFD_EXEC = 0x0010;
export const MFD_HUGE_SHIFT = MAP_HUGE_SHIFT;
export const MFD_HUGE_MASK = MAP_HUGE_MASK;
export const MFD_HUGE_2MB = MAP_HUGE_2MB;
export const MFD_HUGE_1GB = MAP_HUGE_1GB;

// eventfd(2)
export const EFD_SEMAPHORE = 1 << 0;
export const EFD_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;

// Pages (x86-64 base pages; the model uses 4 KiB everywhere)
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** PAGE_SIZE as a bigint, for byte addresses and lengths at the API (the one place both are declared). */
export const PAGE_SIZE_B = BigInt(PAGE_SIZE);

// Limits
export const U32_MAX = 0xffffffff;
export const U64_MAX = 0xffffffffffffffffn;
export const ULONG_MAX = U64_MAX;
export const INT_MAX = 0x7fffffff;
export const RLIMIT_MEMLOCK = 8;
export const RLIM_INFINITY = U64_MAX;

// Capabilities (linux/capability.h)
export const CAP_IPC_LOCK = 14;
export const CAP_SYS_RAWIO = 17;
export const CAP_SYS_ADMIN = 21;
export const CAP_SYS_RESOURCE = 24;

/** Names of the capability bits above, for parsing `spawn({ caps: [...] })`. */
export const CAP_NAMES: Readonly<Record<string, number>> = {
  CAP_IPC_LOCK,
  CAP_SYS_RAWIO,
  CAP_SYS_ADMIN,
  CAP_SYS_RESOURCE,
};

// fcntl(2) file seals (include/uapi/linux/fcntl.h)
export const F_LINUX_SPECIFIC_BASE = 1024;
export const F_ADD_SEALS = F_LINUX_SPECIFIC_BASE + 9;
export const F_GET_SEALS = F_LINUX_SPECIFIC_BASE + 10;
export const F_SEAL_SEAL = 0x0001;
export const F_SEAL_SHRINK = 0x0002;
export const F_SEAL_GROW = 0x0004;
export const F_SEAL_WRITE = 0x0008;
export const F_SEAL_FUTURE_WRITE = 0x0010;
export const F_SEAL_EXEC = 0x0020;
