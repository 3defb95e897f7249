/*
 * iommufd-sim bridge shim (LD_PRELOAD). Interposes the libc entry points
 * that reach the model's files (/dev/iommu, /dev/vfio, the PCI and IOMMU
 * parts of /sys, module parameters, hugepage attributes, fail-nth) and
 * forwards them to the model over a Unix socket (IOMMUFD_SIM_SOCKET);
 * everything else goes to the real libc (dlsym RTLD_NEXT).
 *
 * A model fd is a real fd number in the program, held by an open of
 * /dev/null, so select/poll/close/dup behave; the model's fd table uses the
 * same numbers. Memory stays the program's: the server reads and writes it
 * through /proc/PID/mem, so ioctl arguments are plain pointers. The shim
 * tells the server before memory the model has pinned leaves the process
 * (munmap, mremap, MAP_FIXED, MADV_DONTNEED, exit) so it can keep the
 * pinned contents, and on fork so the child gets the kernel's fd and pin
 * semantics. One socket per process, a mutex around each round trip.
 *
 * Path calls made inside glibc (realpath, fopen, opendir, scandir) are
 * invisible to LD_PRELOAD, so those functions are interposed too.
 *
 * The shim is several small C files built into one shared object
 * (src/bridge/shim-build.ts compiles every .c here); this header is what
 * they share. Only the interposed libc symbols are exported
 * (-fvisibility=hidden).
 */
#ifndef IOMMUFD_SIM_SHIM_H
#define IOMMUFD_SIM_SHIM_H
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <ucontext.h>
#include <unistd.h>

#include "bridge-proto.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_TRACKED_FD 65536

/* ------------------------------------------------------------ real libc (real.c) */

#define REAL(ret, name, ...)                                                  \
	extern ret (*real_##name)(__VA_ARGS__);                               \
	static inline void resolve_##name(void)                               \
	{                                                                     \
		if (!real_##name)                                             \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
	}
#include "real-libc.h"
#undef REAL

/* ------------------------------------------------------------ transport.c */

extern pthread_mutex_t br_lock;
extern int br_sock;     /* the socket to the server, -1 before connecting */
extern int br_disabled; /* no IOMMUFD_SIM_SOCKET: the shim passes everything through */
extern int br_spare;    /* a reserved fd the model may install an ioctl's new file at */
extern int br_has_pins; /* the model holds pins on this process's memory */

void die(const char *msg) __attribute__((noreturn));
int connect_locked(uint64_t token);
int64_t call_locked(struct br_req *rq, const void *payload, size_t plen, void *out, size_t cap,
		    size_t *out_len);
int64_t call(struct br_req *rq, const void *payload, size_t plen, void *out, size_t cap,
	     size_t *out_len);
long ret_errno(int64_t r);

/* ------------------------------------------------------------ fdtable.c */

extern uint8_t br_model_fd[MAX_TRACKED_FD / 8];
/* the path of each model fd opened by path (a base for openat with a relative path) */
extern char *br_fd_path[MAX_TRACKED_FD];

static inline int is_model_fd(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD &&
	       (__atomic_load_n(&br_model_fd[fd >> 3], __ATOMIC_ACQUIRE) & (1u << (fd & 7)));
}

void set_model_fd(int fd, int on);
void set_fd_path(int fd, const char *path);
int reserve_fd(int cloexec);
int spare_locked(void);

/* ------------------------------------------------------------ device memory */

/* ranges.c: the BAR mappings the trap serves, the model-backed hugetlb mappings */
struct rangeset;
extern struct rangeset devmaps, hugemaps;
int range_add(struct rangeset *rs, uintptr_t start, uintptr_t end, int tag);
void range_remove(struct rangeset *rs, uintptr_t start, uintptr_t end);
int range_find(struct rangeset *rs, uintptr_t a, size_t len);
int range_overlaps(struct rangeset *rs, uintptr_t start, uintptr_t end);
#define devmap_add(s, e) range_add(&devmaps, (s), (e), 0)
#define devmap_remove(s, e) range_remove(&devmaps, (s), (e))
#define devmap_contains(a, len) (range_find(&devmaps, (a), (len)) >= 0)
#define devmap_overlaps(s, e) (range_overlaps(&devmaps, (s), (e)) >= 0)

/* x86-decode.c: one memory-operand mov, decoded */
struct mmio_insn {
	int len;       /* instruction bytes */
	int size;      /* access bytes: 1, 2, 4, 8 */
	int store;     /* 1: a store, 0: a load */
	int dest_size; /* a load's destination register width */
	int sign;      /* a load sign-extends (movsx, movsxd) */
	int reg;       /* the register operand (0-15), -1 for an immediate store */
	int high8;     /* reg 4-7 mean AH CH DH BH */
	int has_imm;
	uint64_t imm;
	int base, index, scale; /* -1: none */
	int32_t disp;
	int rip_rel, addr32, seg;
};
int x86_decode_mmio(const uint8_t *p, struct mmio_insn *in);
#ifdef REG_RIP
uint64_t x86_effective_address(const struct mmio_insn *in, const greg_t *g);
uint64_t x86_store_value(const struct mmio_insn *in, const greg_t *g);
void x86_load_result(const struct mmio_insn *in, greg_t *g, uint64_t v);
#endif

/* mmio.c: the SIGSEGV trap (installed at the first device mapping) */
void mmio_trap_install(void);
/* ------------------------------------------------------------ memfd.c */

/* fds memfd_create(MFD_HUGETLB) returned (the model's hugetlb pool backs them) */
extern uint8_t br_hugetlb_fd[MAX_TRACKED_FD / 8];

static inline int is_hugetlb_fd(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD &&
	       (__atomic_load_n(&br_hugetlb_fd[fd >> 3], __ATOMIC_RELAXED) & (1u << (fd & 7)));
}

int hugetlb_mmap_flags(int fd, size_t len, off64_t off, int flags);

/* ------------------------------------------------------------ the rest */

int is_model_path(const char *p);                         /* paths.c */
int model_open(const char *path, int flags, mode_t mode); /* open.c: -2 = not the model's */

#endif
