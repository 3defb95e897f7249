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
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
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
#include <unistd.h>

#include "bridge-proto.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_TRACKED_FD 65536

/* ------------------------------------------------------------ real libc */

#define REAL(ret, name, ...)                                                  \
	static ret (*real_##name)(__VA_ARGS__);                               \
	static inline void resolve_##name(void)                               \
	{                                                                     \
		if (!real_##name)                                             \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
	}

REAL(int, open, const char *, int, ...)
REAL(int, open64, const char *, int, ...)
REAL(int, openat, int, const char *, int, ...)
REAL(int, openat64, int, const char *, int, ...)
REAL(int, __open_2, const char *, int)
REAL(int, __open64_2, const char *, int)
REAL(int, __openat_2, int, const char *, int)
REAL(int, __openat64_2, int, const char *, int)
REAL(int, creat, const char *, mode_t)
REAL(int, creat64, const char *, mode_t)
REAL(int, close, int)
REAL(int, ioctl, int, unsigned long, ...)
REAL(ssize_t, read, int, void *, size_t)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, pread, int, void *, size_t, off_t)
REAL(ssize_t, pread64, int, void *, size_t, off64_t)
REAL(ssize_t, pwrite, int, const void *, size_t, off_t)
REAL(ssize_t, pwrite64, int, const void *, size_t, off64_t)
REAL(ssize_t, __read_chk, int, void *, size_t, size_t)
REAL(ssize_t, __pread_chk, int, void *, size_t, off_t, size_t)
REAL(ssize_t, __pread64_chk, int, void *, size_t, off64_t, size_t)
REAL(ssize_t, readv, int, const struct iovec *, int)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(off_t, lseek, int, off_t, int)
REAL(off64_t, lseek64, int, off64_t, int)
REAL(void *, mmap, void *, size_t, int, int, int, off_t)
REAL(void *, mmap64, void *, size_t, int, int, int, off64_t)
REAL(int, munmap, void *, size_t)
REAL(void *, mremap, void *, size_t, size_t, int, ...)
REAL(int, madvise, void *, size_t, int)
REAL(int, dup, int)
REAL(int, dup2, int, int)
REAL(int, dup3, int, int, int)
REAL(int, fcntl, int, int, ...)
REAL(int, fcntl64, int, int, ...)
REAL(pid_t, fork, void)
REAL(void, _exit, int)
REAL(void, _Exit, int)
REAL(int, stat, const char *, struct stat *)
REAL(int, lstat, const char *, struct stat *)
REAL(int, fstat, int, struct stat *)
REAL(int, fstatat, int, const char *, struct stat *, int)
REAL(int, stat64, const char *, struct stat64 *)
REAL(int, lstat64, const char *, struct stat64 *)
REAL(int, fstat64, int, struct stat64 *)
REAL(int, fstatat64, int, const char *, struct stat64 *, int)
REAL(int, __xstat, int, const char *, struct stat *)
REAL(int, __lxstat, int, const char *, struct stat *)
REAL(int, __fxstat, int, int, struct stat *)
REAL(int, __fxstatat, int, int, const char *, struct stat *, int)
REAL(int, __xstat64, int, const char *, struct stat64 *)
REAL(int, __lxstat64, int, const char *, struct stat64 *)
REAL(int, __fxstat64, int, int, struct stat64 *)
REAL(int, __fxstatat64, int, int, const char *, struct stat64 *, int)
REAL(int, statx, int, const char *, int, unsigned int, struct statx *)
REAL(int, access, const char *, int)
REAL(int, faccessat, int, const char *, int, int)
REAL(int, euidaccess, const char *, int)
REAL(ssize_t, readlink, const char *, char *, size_t)
REAL(ssize_t, readlinkat, int, const char *, char *, size_t)
REAL(ssize_t, __readlink_chk, const char *, char *, size_t, size_t)
REAL(ssize_t, __readlinkat_chk, int, const char *, char *, size_t, size_t)
REAL(char *, realpath, const char *, char *)
REAL(char *, __realpath_chk, const char *, char *, size_t)
REAL(char *, canonicalize_file_name, const char *)
REAL(DIR *, opendir, const char *)
REAL(struct dirent *, readdir, DIR *)
REAL(struct dirent64 *, readdir64, DIR *)
REAL(int, closedir, DIR *)
REAL(int, dirfd, DIR *)
REAL(void, rewinddir, DIR *)
REAL(int, scandir, const char *, struct dirent ***, int (*)(const struct dirent *),
     int (*)(const struct dirent **, const struct dirent **))
REAL(FILE *, fopen, const char *, const char *)
REAL(FILE *, fopen64, const char *, const char *)

/* ------------------------------------------------------------ state */

static pthread_mutex_t br_lock = PTHREAD_MUTEX_INITIALIZER;
static int br_sock = -1;
static int br_disabled;  /* no IOMMUFD_SIM_SOCKET: the shim passes everything through */
static int br_spare = -1; /* a reserved fd the model may install an ioctl's new file at */
static int br_has_pins;
static uint8_t br_model_fd[MAX_TRACKED_FD / 8];

/* the path of each model fd opened by path (a base for openat with a relative path) */
static char *br_fd_path[MAX_TRACKED_FD];

static void set_fd_path(int fd, const char *path)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD)
		return;
	free(br_fd_path[fd]);
	br_fd_path[fd] = path ? strdup(path) : NULL;
}

static int is_model_fd(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD && (br_model_fd[fd >> 3] & (1u << (fd & 7)));
}

static void set_model_fd(int fd, int on)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD)
		return;
	if (on)
		br_model_fd[fd >> 3] |= (uint8_t)(1u << (fd & 7));
	else
		br_model_fd[fd >> 3] &= (uint8_t)~(1u << (fd & 7));
}

static void die(const char *msg)
{
	resolve_write();
	real_write(2, "iommufd-sim shim: ", 18);
	real_write(2, msg, strlen(msg));
	real_write(2, "\n", 1);
	resolve__exit();
	real__exit(127);
}

/* ------------------------------------------------------------ socket */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int hello(uint64_t token);

/* Connect (once per process); the caller holds br_lock. 0, or -1 when the bridge is off. */
static int connect_locked(uint64_t token)
{
	if (br_sock >= 0)
		return 0;
	if (br_disabled)
		return -1;
	const char *path = getenv("IOMMUFD_SIM_SOCKET");
	if (!path || !*path) {
		br_disabled = 1;
		return -1;
	}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("cannot create a socket");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		die("IOMMUFD_SIM_SOCKET is too long");
	strcpy(sa.sun_path, path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to the iommufd-sim server (IOMMUFD_SIM_SOCKET)");
	/* keep the socket out of the program's way: a high fd number */
	struct rlimit rl;
	int floor = 900;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
		floor = (int)rl.rlim_cur / 2;
	resolve_fcntl();
	int hi = real_fcntl(s, F_DUPFD_CLOEXEC, floor);
	if (hi >= 0) {
		resolve_close();
		real_close(s);
		s = hi;
	}
	br_sock = s;
	if (hello(token) < 0)
		die("the iommufd-sim server refused this process");
	return 0;
}

/*
 * One round trip; the caller holds br_lock. Returns the reply's ret;
 * the payload (up to cap bytes) goes to out and its length to *out_len.
 */
static int64_t call_locked(struct br_req *rq, const void *payload, size_t plen, void *out,
			   size_t cap, size_t *out_len)
{
	struct br_rep rp;
	rq->len = (uint32_t)(sizeof(*rq) + plen);
	if (write_all(br_sock, rq, sizeof(*rq)) < 0 || (plen && write_all(br_sock, payload, plen) < 0))
		die("lost the connection to the iommufd-sim server");
	if (read_all(br_sock, &rp, sizeof(rp)) < 0)
		die("lost the connection to the iommufd-sim server");
	size_t n = rp.len - sizeof(rp);
	if (rp.len < sizeof(rp) || n > BR_MAX_PAYLOAD)
		die("malformed reply from the iommufd-sim server");
	size_t keep = n < cap ? n : cap;
	if (keep && read_all(br_sock, out, keep) < 0)
		die("lost the connection to the iommufd-sim server");
	for (size_t left = n - keep; left > 0;) {
		char sink[512];
		size_t k = left < sizeof(sink) ? left : sizeof(sink);
		if (read_all(br_sock, sink, k) < 0)
			die("lost the connection to the iommufd-sim server");
		left -= k;
	}
	if (out_len)
		*out_len = keep;
	br_has_pins = (rp.flags & BR_REP_HAS_PINS) != 0;
	if (rp.flags & BR_REP_SPARE_USED) {
		set_model_fd(br_spare, 1);
		br_spare = -1;
	}
	return rp.ret;
}

static int hello(uint64_t token)
{
	struct br_req rq = {.op = BR_OP_HELLO, .a = (uint64_t)getpid(), .b = token};
	int64_t r = call_locked(&rq, NULL, 0, NULL, 0, NULL);
	if (r < 0)
		return -1;
	/* serve: the server is not our parent; let it read our memory under Yama */
	prctl(PR_SET_PTRACER, (unsigned long)r, 0, 0, 0);
	return 0;
}

/* A full call: connect if needed, lock, round trip. -errno when the bridge is off. */
static int64_t call(struct br_req *rq, const void *payload, size_t plen, void *out, size_t cap,
		    size_t *out_len)
{
	pthread_mutex_lock(&br_lock);
	if (connect_locked(0) < 0) {
		pthread_mutex_unlock(&br_lock);
		return BR_PASSTHROUGH;
	}
	int64_t r = call_locked(rq, payload, plen, out, cap, out_len);
	pthread_mutex_unlock(&br_lock);
	return r;
}

static long ret_errno(int64_t r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return (long)r;
}

/* ------------------------------------------------------------ paths */

static int has_prefix(const char *p, const char *pre)
{
	size_t n = strlen(pre);
	return strncmp(p, pre, n) == 0 && (p[n] == 0 || p[n] == '/');
}

/* /proc/self/task/TID/fail-nth, /proc/thread-self/fail-nth, /proc/PID/task/TID/fail-nth */
static int is_fail_nth(const char *p)
{
	size_t n = strlen(p);
	if (n < 9 || strcmp(p + n - 9, "/fail-nth") != 0)
		return 0;
	return strncmp(p, "/proc/", 6) == 0;
}

static int is_model_path(const char *p)
{
	if (!p || p[0] != '/')
		return 0;
	switch (p[1]) {
	case 'd':
		return has_prefix(p, "/dev/iommu") || has_prefix(p, "/dev/vfio");
	case 's':
		if (strncmp(p, "/sys/", 5) != 0)
			return 0;
		return has_prefix(p, "/sys/bus/pci") || strncmp(p, "/sys/devices/pci", 16) == 0 ||
		       has_prefix(p, "/sys/kernel/iommu_groups") || has_prefix(p, "/sys/class/vfio-dev") ||
		       has_prefix(p, "/sys/class/iommu") || strncmp(p, "/sys/module/vfio", 16) == 0 ||
		       has_prefix(p, "/sys/module/iommufd") || has_prefix(p, "/sys/kernel/mm/hugepages") ||
		       has_prefix(p, "/sys/kernel/mm/transparent_hugepage") ||
		       has_prefix(p, "/sys/kernel/debug");
	case 'p':
		return is_fail_nth(p);
	}
	return 0;
}

/* ------------------------------------------------------------ fds */

static int reserve_fd(int cloexec)
{
	resolve_open();
	return real_open("/dev/null", O_RDWR | (cloexec ? O_CLOEXEC : 0));
}

/* The spare fd for ioctls that create files; the caller holds br_lock. */
static int spare_locked(void)
{
	if (br_spare < 0)
		br_spare = reserve_fd(1);
	return br_spare;
}

static int model_open(const char *path, int flags, mode_t mode)
{
	int fd = reserve_fd(flags & O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct br_req rq = {.op = BR_OP_OPEN, .fd = fd, .a = (uint64_t)(unsigned)flags, .b = mode};
	int64_t r = call(&rq, path, strlen(path), NULL, 0, NULL);
	if (r == BR_PASSTHROUGH) {
		resolve_close();
		real_close(fd);
		return -2;
	}
	if (r < 0) {
		resolve_close();
		real_close(fd);
		errno = (int)-r;
		return -1;
	}
	set_model_fd(fd, 1);
	set_fd_path(fd, path);
	return fd;
}

/* openat(dirfd, "relative") where dirfd is a model directory: the absolute path, or NULL */
static const char *at_path(int dirfd, const char *path, char *buf, size_t cap)
{
	if (!path || path[0] == '/' || dirfd < 0 || dirfd >= MAX_TRACKED_FD || !br_fd_path[dirfd])
		return path;
	snprintf(buf, cap, "%s/%s", br_fd_path[dirfd], path);
	return buf;
}

#define OPEN_BODY(realcall)                                   \
	do {                                                  \
		mode_t mode = 0;                              \
		if (flags & (O_CREAT | __O_TMPFILE)) {        \
			va_list ap;                           \
			va_start(ap, flags);                  \
			mode = va_arg(ap, mode_t);            \
			va_end(ap);                           \
		}                                             \
		if (is_model_path(path)) {                    \
			int r = model_open(path, flags, mode); \
			if (r != -2)                          \
				return r;                     \
		}                                             \
		return realcall;                              \
	} while (0)

EXPORT int open(const char *path, int flags, ...)
{
	resolve_open();
	OPEN_BODY(real_open(path, flags, mode));
}

EXPORT int open64(const char *path, int flags, ...)
{
	resolve_open64();
	OPEN_BODY(real_open64(path, flags, mode));
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	const char *rel = path;
	path = at_path(dirfd, path, abs, sizeof(abs));
	if (path != rel && !is_model_path(path))
		path = rel;
	resolve_openat();
	OPEN_BODY(real_openat(dirfd, rel, flags, mode));
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	char abs[PATH_MAX];
	const char *rel = path;
	path = at_path(dirfd, path, abs, sizeof(abs));
	if (path != rel && !is_model_path(path))
		path = rel;
	resolve_openat64();
	OPEN_BODY(real_openat64(dirfd, rel, flags, mode));
}

EXPORT int __open_2(const char *path, int flags)
{
	resolve___open_2();
	if (is_model_path(path)) {
		int r = model_open(path, flags, 0);
		if (r != -2)
			return r;
	}
	return real___open_2(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	resolve___open64_2();
	if (is_model_path(path)) {
		int r = model_open(path, flags, 0);
		if (r != -2)
			return r;
	}
	return real___open64_2(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	resolve___openat_2();
	if (is_model_path(path)) {
		int r = model_open(path, flags, 0);
		if (r != -2)
			return r;
	}
	return real___openat_2(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	resolve___openat64_2();
	if (is_model_path(path)) {
		int r = model_open(path, flags, 0);
		if (r != -2)
			return r;
	}
	return real___openat64_2(dirfd, path, flags);
}

EXPORT int creat(const char *path, mode_t mode)
{
	resolve_creat();
	if (is_model_path(path)) {
		int r = model_open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
		if (r != -2)
			return r;
	}
	return real_creat(path, mode);
}

EXPORT int creat64(const char *path, mode_t mode)
{
	resolve_creat64();
	if (is_model_path(path)) {
		int r = model_open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
		if (r != -2)
			return r;
	}
	return real_creat64(path, mode);
}

EXPORT int close(int fd)
{
	resolve_close();
	if (fd >= 0 && fd == br_sock) {
		errno = EBADF; /* the bridge's own socket is not the program's */
		return -1;
	}
	if (fd >= 0 && fd == br_spare) {
		br_spare = -1; /* the program closed our reserved number (closefrom): reserve another later */
		return real_close(fd);
	}
	if (is_model_fd(fd)) {
		pthread_mutex_lock(&br_lock);
		set_model_fd(fd, 0);
		set_fd_path(fd, NULL);
		struct br_req rq = {.op = BR_OP_CLOSE, .fd = fd};
		if (br_sock >= 0)
			call_locked(&rq, NULL, 0, NULL, 0, NULL);
		int r = real_close(fd);
		pthread_mutex_unlock(&br_lock);
		return r;
	}
	return real_close(fd);
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (is_model_fd(fd)) {
		pthread_mutex_lock(&br_lock);
		if (connect_locked(0) < 0) {
			pthread_mutex_unlock(&br_lock);
			errno = EBADF;
			return -1;
		}
		struct br_req rq = {.op = BR_OP_IOCTL, .fd = fd, .fd2 = spare_locked(), .a = req, .b = arg};
		int64_t r = call_locked(&rq, NULL, 0, NULL, 0, NULL);
		pthread_mutex_unlock(&br_lock);
		return (int)ret_errno(r);
	}
	resolve_ioctl();
	return real_ioctl(fd, req, arg);
}

static ssize_t model_read(int fd, void *buf, size_t len, int positioned, off64_t off)
{
	if (len > BR_MAX_PAYLOAD)
		len = BR_MAX_PAYLOAD;
	struct br_req rq = {.op = positioned ? BR_OP_PREAD : BR_OP_READ, .fd = fd, .a = len,
			    .b = (uint64_t)off, .c = (uint64_t)(uintptr_t)buf};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	if (r == BR_PASSTHROUGH)
		r = -EBADF;
	return ret_errno(r);
}

static ssize_t model_write(int fd, const void *buf, size_t len, int positioned, off64_t off)
{
	if (len > BR_MAX_PAYLOAD)
		len = BR_MAX_PAYLOAD;
	struct br_req rq = {.op = positioned ? BR_OP_PWRITE : BR_OP_WRITE, .fd = fd, .a = len,
			    .b = (uint64_t)off, .c = (uint64_t)(uintptr_t)buf};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	if (r == BR_PASSTHROUGH)
		r = -EBADF;
	return ret_errno(r);
}

EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	if (is_model_fd(fd))
		return model_read(fd, buf, len, 0, 0);
	resolve_read();
	return real_read(fd, buf, len);
}

EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort();
	return read(fd, buf, len);
}

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	if (is_model_fd(fd))
		return model_write(fd, buf, len, 0, 0);
	resolve_write();
	return real_write(fd, buf, len);
}

EXPORT ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	if (is_model_fd(fd))
		return model_read(fd, buf, len, 1, off);
	resolve_pread();
	return real_pread(fd, buf, len, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t len, off64_t off)
{
	if (is_model_fd(fd))
		return model_read(fd, buf, len, 1, off);
	resolve_pread64();
	return real_pread64(fd, buf, len, off);
}

EXPORT ssize_t __pread_chk(int fd, void *buf, size_t len, off_t off, size_t buflen)
{
	if (len > buflen)
		abort();
	return pread(fd, buf, len, off);
}

EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t len, off64_t off, size_t buflen)
{
	if (len > buflen)
		abort();
	return pread64(fd, buf, len, off);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (is_model_fd(fd))
		return model_write(fd, buf, len, 1, off);
	resolve_pwrite();
	return real_pwrite(fd, buf, len, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	if (is_model_fd(fd))
		return model_write(fd, buf, len, 1, off);
	resolve_pwrite64();
	return real_pwrite64(fd, buf, len, off);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	if (!is_model_fd(fd)) {
		resolve_readv();
		return real_readv(fd, iov, cnt);
	}
	ssize_t total = 0;
	for (int i = 0; i < cnt; i++) {
		ssize_t n = model_read(fd, iov[i].iov_base, iov[i].iov_len, 0, 0);
		if (n < 0)
			return total ? total : -1;
		total += n;
		if ((size_t)n < iov[i].iov_len)
			break;
	}
	return total;
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (!is_model_fd(fd)) {
		resolve_writev();
		return real_writev(fd, iov, cnt);
	}
	size_t len = 0;
	for (int i = 0; i < cnt; i++)
		len += iov[i].iov_len;
	char *buf = malloc(len ? len : 1);
	if (!buf) {
		errno = ENOMEM;
		return -1;
	}
	size_t o = 0;
	for (int i = 0; i < cnt; i++) {
		memcpy(buf + o, iov[i].iov_base, iov[i].iov_len);
		o += iov[i].iov_len;
	}
	ssize_t r = model_write(fd, buf, len, 0, 0);
	free(buf);
	return r;
}

static off64_t model_lseek(int fd, off64_t off, int whence)
{
	struct br_req rq = {.op = BR_OP_LSEEK, .fd = fd, .a = (uint64_t)off, .b = (uint64_t)whence};
	return ret_errno(call(&rq, NULL, 0, NULL, 0, NULL));
}

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	if (is_model_fd(fd))
		return model_lseek(fd, off, whence);
	resolve_lseek();
	return real_lseek(fd, off, whence);
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	if (is_model_fd(fd))
		return model_lseek(fd, off, whence);
	resolve_lseek64();
	return real_lseek64(fd, off, whence);
}

/* ------------------------------------------------------------ memory */

/* Memory the model may have pinned is about to leave the process: let it keep the contents. */
static void detach(void *va, size_t len)
{
	if (!br_has_pins || br_sock < 0)
		return;
	struct br_req rq = {.op = BR_OP_DETACH, .a = (uint64_t)(uintptr_t)va, .b = len};
	call(&rq, NULL, 0, NULL, 0, NULL);
}

static void *model_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	(void)addr;
	struct br_req rq = {.op = BR_OP_MMAP, .fd = fd, .a = len, .b = (uint64_t)off,
			    .c = (uint64_t)(unsigned)prot | ((uint64_t)(unsigned)flags << 32)};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	errno = r < 0 ? (int)-r : ENODEV;
	return MAP_FAILED;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!(flags & MAP_ANONYMOUS) && is_model_fd(fd))
		return model_mmap(addr, len, prot, flags, fd, off);
	if (flags & MAP_FIXED)
		detach(addr, len);
	resolve_mmap();
	return real_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (!(flags & MAP_ANONYMOUS) && is_model_fd(fd))
		return model_mmap(addr, len, prot, flags, fd, off);
	if (flags & MAP_FIXED)
		detach(addr, len);
	resolve_mmap64();
	return real_mmap64(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	detach(addr, len);
	resolve_munmap();
	return real_munmap(addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
		detach(new_addr, new_len);
	}
	detach(old, old_len);
	resolve_mremap();
	return real_mremap(old, old_len, new_len, flags, new_addr);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_DONTNEED || advice == MADV_REMOVE || advice == MADV_FREE)
		detach(addr, len);
	resolve_madvise();
	return real_madvise(addr, len, advice);
}

/* ------------------------------------------------------------ dup, fcntl */

static int model_dup(int oldfd, int newfd)
{
	struct br_req rq = {.op = BR_OP_DUP, .fd = oldfd, .fd2 = newfd};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	if (r < 0) {
		resolve_close();
		real_close(newfd);
		errno = (int)-r;
		return -1;
	}
	set_model_fd(newfd, 1);
	return newfd;
}

EXPORT int dup(int fd)
{
	resolve_dup();
	int n = real_dup(fd);
	if (n >= 0 && is_model_fd(fd))
		return model_dup(fd, n);
	return n;
}

static int dup_to(int oldfd, int newfd, int flags)
{
	resolve_dup3();
	resolve_dup2();
	if (newfd == br_sock && br_sock >= 0) {
		errno = EBADF;
		return -1;
	}
	int was_model = is_model_fd(newfd) && oldfd != newfd;
	if (newfd == br_spare && oldfd != newfd)
		br_spare = -1;
	int r = flags == -1 ? real_dup2(oldfd, newfd) : real_dup3(oldfd, newfd, flags);
	if (r < 0)
		return r;
	if (was_model) {
		/* dup2 closed newfd: so does the model */
		pthread_mutex_lock(&br_lock);
		set_model_fd(newfd, 0);
		struct br_req rq = {.op = BR_OP_CLOSE, .fd = newfd};
		if (br_sock >= 0)
			call_locked(&rq, NULL, 0, NULL, 0, NULL);
		pthread_mutex_unlock(&br_lock);
	}
	if (is_model_fd(oldfd) && oldfd != newfd)
		return model_dup(oldfd, newfd);
	return r;
}

EXPORT int dup2(int oldfd, int newfd)
{
	return dup_to(oldfd, newfd, -1);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return dup_to(oldfd, newfd, flags);
}

static int do_fcntl(int (*fn)(int, int, ...), int fd, int cmd, va_list ap)
{
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC: {
		int arg = va_arg(ap, int);
		int n = fn(fd, cmd, arg);
		if (n >= 0 && is_model_fd(fd))
			return model_dup(fd, n);
		return n;
	}
	case F_GETFD:
	case F_GETFL:
	case F_GETOWN:
	case F_GETSIG:
	case F_GETLEASE:
	case F_GETPIPE_SZ:
	case F_GET_SEALS:
		return fn(fd, cmd);
	case F_GETLK:
	case F_SETLK:
	case F_SETLKW:
	case F_OFD_GETLK:
	case F_OFD_SETLK:
	case F_OFD_SETLKW:
	case F_GETOWN_EX:
	case F_SETOWN_EX:
		return fn(fd, cmd, va_arg(ap, void *));
	default:
		return fn(fd, cmd, va_arg(ap, unsigned long));
	}
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	resolve_fcntl();
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(real_fcntl, fd, cmd, ap);
	va_end(ap);
	return r;
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	resolve_fcntl64();
	if (!real_fcntl64)
		resolve_fcntl(), real_fcntl64 = real_fcntl;
	va_list ap;
	va_start(ap, cmd);
	int r = do_fcntl(real_fcntl64, fd, cmd, ap);
	va_end(ap);
	return r;
}

/* ------------------------------------------------------------ processes */

/*
 * fork: the model forks first (the child gets a copy of the fd table at
 * this instant), then the real fork; the child joins with the token.
 */
EXPORT pid_t fork(void)
{
	resolve_fork();
	pthread_mutex_lock(&br_lock);
	if (br_sock < 0) {
		pthread_mutex_unlock(&br_lock);
		return real_fork();
	}
	struct br_req rq = {.op = BR_OP_FORK};
	int64_t token = call_locked(&rq, NULL, 0, NULL, 0, NULL);
	if (token < 0) {
		pthread_mutex_unlock(&br_lock);
		errno = (int)-token;
		return -1;
	}
	pid_t pid = real_fork();
	if (pid == 0) {
		pthread_mutex_init(&br_lock, NULL);
		resolve_close();
		real_close(br_sock);
		br_sock = -1;
		connect_locked((uint64_t)token);
		return 0;
	}
	int err = errno;
	struct br_req done = {.op = BR_OP_FORK_DONE, .a = (uint64_t)token,
			      .b = (uint64_t)(int64_t)(pid < 0 ? -err : pid)};
	call_locked(&done, NULL, 0, NULL, 0, NULL);
	pthread_mutex_unlock(&br_lock);
	errno = err;
	return pid;
}

EXPORT pid_t vfork(void)
{
	/* the child may run the model before it execs: a full fork keeps the parent's state safe */
	return fork();
}

/* Exit: the model keeps pinned contents and releases the process's files and pins. */
static void model_exit(int status)
{
	pthread_mutex_lock(&br_lock);
	if (br_sock >= 0) {
		struct br_req rq = {.op = BR_OP_EXIT, .a = (uint64_t)(unsigned)status};
		call_locked(&rq, NULL, 0, NULL, 0, NULL);
		resolve_close();
		real_close(br_sock);
		br_sock = -1;
	}
	br_disabled = 1;
	pthread_mutex_unlock(&br_lock);
}

EXPORT void _exit(int status)
{
	model_exit(status);
	resolve__exit();
	real__exit(status);
	__builtin_unreachable();
}

EXPORT void _Exit(int status)
{
	model_exit(status);
	resolve__Exit();
	real__Exit(status);
	__builtin_unreachable();
}

__attribute__((destructor)) static void shim_fini(void)
{
	model_exit(0);
}

/* ------------------------------------------------------------ stat */

/* (glibc declares these paths nonnull; a NULL still must not crash us) */
__attribute__((noinline)) static int is_empty(const char *p)
{
	return p == NULL || *p == 0;
}

static int model_stat_path(const char *path, int nofollow, struct br_stat *st)
{
	struct br_req rq = {.op = BR_OP_STAT, .a = nofollow ? BR_STAT_NOFOLLOW : 0};
	size_t got = 0;
	int64_t r = call(&rq, path, strlen(path), st, sizeof(*st), &got);
	if (r == BR_PASSTHROUGH)
		return -2;
	if (r >= 0 && got != sizeof(*st))
		r = -EIO;
	return (int)ret_errno(r);
}

static int model_stat_fd(int fd, struct br_stat *st)
{
	struct br_req rq = {.op = BR_OP_FSTAT, .fd = fd};
	size_t got = 0;
	int64_t r = call(&rq, NULL, 0, st, sizeof(*st), &got);
	if (r == BR_PASSTHROUGH)
		r = -EBADF;
	if (r >= 0 && got != sizeof(*st))
		r = -EIO;
	return (int)ret_errno(r);
}

#define FILL_STAT(out, s)                                        \
	do {                                                     \
		memset((out), 0, sizeof(*(out)));                \
		(out)->st_dev = (s).dev;                         \
		(out)->st_ino = (s).ino;                         \
		(out)->st_mode = (s).mode;                       \
		(out)->st_nlink = (s).nlink;                     \
		(out)->st_rdev = (s).rdev;                       \
		(out)->st_size = (off_t)(s).size;                \
		(out)->st_blksize = 4096;                        \
	} while (0)

/* stat-like entry: -2 means "not the model's: do the real call" */
static int stat_path_into(const char *path, int nofollow, struct stat *out)
{
	if (!is_model_path(path))
		return -2;
	struct br_stat s;
	int r = model_stat_path(path, nofollow, &s);
	if (r == 0)
		FILL_STAT(out, s);
	return r;
}

static int stat64_path_into(const char *path, int nofollow, struct stat64 *out)
{
	if (!is_model_path(path))
		return -2;
	struct br_stat s;
	int r = model_stat_path(path, nofollow, &s);
	if (r == 0)
		FILL_STAT(out, s);
	return r;
}

static int fstat_into(int fd, struct stat *out)
{
	struct br_stat s;
	int r = model_stat_fd(fd, &s);
	if (r == 0)
		FILL_STAT(out, s);
	return r;
}

static int fstat64_into(int fd, struct stat64 *out)
{
	struct br_stat s;
	int r = model_stat_fd(fd, &s);
	if (r == 0)
		FILL_STAT(out, s);
	return r;
}

EXPORT int stat(const char *path, struct stat *st)
{
	int r = stat_path_into(path, 0, st);
	if (r != -2)
		return r;
	resolve_stat();
	if (real_stat)
		return real_stat(path, st);
	resolve___xstat();
	return real___xstat(1, path, st);
}

EXPORT int lstat(const char *path, struct stat *st)
{
	int r = stat_path_into(path, 1, st);
	if (r != -2)
		return r;
	resolve_lstat();
	if (real_lstat)
		return real_lstat(path, st);
	resolve___lxstat();
	return real___lxstat(1, path, st);
}

EXPORT int stat64(const char *path, struct stat64 *st)
{
	int r = stat64_path_into(path, 0, st);
	if (r != -2)
		return r;
	resolve_stat64();
	if (real_stat64)
		return real_stat64(path, st);
	resolve___xstat64();
	return real___xstat64(1, path, st);
}

EXPORT int lstat64(const char *path, struct stat64 *st)
{
	int r = stat64_path_into(path, 1, st);
	if (r != -2)
		return r;
	resolve_lstat64();
	if (real_lstat64)
		return real_lstat64(path, st);
	resolve___lxstat64();
	return real___lxstat64(1, path, st);
}

EXPORT int fstat(int fd, struct stat *st)
{
	if (is_model_fd(fd))
		return fstat_into(fd, st);
	resolve_fstat();
	if (real_fstat)
		return real_fstat(fd, st);
	resolve___fxstat();
	return real___fxstat(1, fd, st);
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	if (is_model_fd(fd))
		return fstat64_into(fd, st);
	resolve_fstat64();
	if (real_fstat64)
		return real_fstat64(fd, st);
	resolve___fxstat64();
	return real___fxstat64(1, fd, st);
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	if ((flags & AT_EMPTY_PATH) && is_empty(path) && is_model_fd(dirfd))
		return fstat_into(dirfd, st);
	int r = stat_path_into(path, flags & AT_SYMLINK_NOFOLLOW, st);
	if (r != -2)
		return r;
	resolve_fstatat();
	return real_fstatat(dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	if ((flags & AT_EMPTY_PATH) && is_empty(path) && is_model_fd(dirfd))
		return fstat64_into(dirfd, st);
	int r = stat64_path_into(path, flags & AT_SYMLINK_NOFOLLOW, st);
	if (r != -2)
		return r;
	resolve_fstatat64();
	return real_fstatat64(dirfd, path, st, flags);
}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	int r = stat_path_into(path, 0, st);
	if (r != -2)
		return r;
	resolve___xstat();
	return real___xstat(ver, path, st);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	int r = stat_path_into(path, 1, st);
	if (r != -2)
		return r;
	resolve___lxstat();
	return real___lxstat(ver, path, st);
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	if (is_model_fd(fd))
		return fstat_into(fd, st);
	resolve___fxstat();
	return real___fxstat(ver, fd, st);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	int r = stat_path_into(path, flags & AT_SYMLINK_NOFOLLOW, st);
	if (r != -2)
		return r;
	resolve___fxstatat();
	return real___fxstatat(ver, dirfd, path, st, flags);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	int r = stat64_path_into(path, 0, st);
	if (r != -2)
		return r;
	resolve___xstat64();
	return real___xstat64(ver, path, st);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	int r = stat64_path_into(path, 1, st);
	if (r != -2)
		return r;
	resolve___lxstat64();
	return real___lxstat64(ver, path, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	if (is_model_fd(fd))
		return fstat64_into(fd, st);
	resolve___fxstat64();
	return real___fxstat64(ver, fd, st);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	int r = stat64_path_into(path, flags & AT_SYMLINK_NOFOLLOW, st);
	if (r != -2)
		return r;
	resolve___fxstatat64();
	return real___fxstatat64(ver, dirfd, path, st, flags);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	struct br_stat s;
	int r = -2;
	if ((flags & AT_EMPTY_PATH) && is_empty(path) && is_model_fd(dirfd))
		r = model_stat_fd(dirfd, &s);
	else if (is_model_path(path))
		r = model_stat_path(path, flags & AT_SYMLINK_NOFOLLOW, &s);
	if (r == -2) {
		resolve_statx();
		return real_statx(dirfd, path, flags, mask, stx);
	}
	if (r == 0) {
		memset(stx, 0, sizeof(*stx));
		stx->stx_mask = STATX_BASIC_STATS;
		stx->stx_blksize = 4096;
		stx->stx_nlink = s.nlink;
		stx->stx_mode = (uint16_t)s.mode;
		stx->stx_ino = s.ino;
		stx->stx_size = s.size;
		stx->stx_rdev_major = major(s.rdev);
		stx->stx_rdev_minor = minor(s.rdev);
		stx->stx_dev_major = major(s.dev);
		stx->stx_dev_minor = minor(s.dev);
	}
	return r;
}

static int model_access(const char *path, int mode)
{
	struct br_stat s;
	int r = model_stat_path(path, 0, &s);
	if (r != 0)
		return r;
	if (mode & X_OK && !S_ISDIR(s.mode)) {
		errno = EACCES;
		return -1;
	}
	if ((mode & W_OK) && !(s.mode & 0222) && geteuid() != 0) {
		errno = EACCES;
		return -1;
	}
	return 0;
}

EXPORT int access(const char *path, int mode)
{
	if (is_model_path(path)) {
		int r = model_access(path, mode);
		if (r != -2)
			return r;
	}
	resolve_access();
	return real_access(path, mode);
}

EXPORT int euidaccess(const char *path, int mode)
{
	if (is_model_path(path)) {
		int r = model_access(path, mode);
		if (r != -2)
			return r;
	}
	resolve_euidaccess();
	return real_euidaccess(path, mode);
}

EXPORT int eaccess(const char *path, int mode)
{
	return euidaccess(path, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	if (is_model_path(path)) {
		int r = model_access(path, mode);
		if (r != -2)
			return r;
	}
	resolve_faccessat();
	return real_faccessat(dirfd, path, mode, flags);
}

/* ------------------------------------------------------------ links */

static ssize_t model_readlink(const char *path, char *buf, size_t len)
{
	char tmp[PATH_MAX];
	struct br_req rq = {.op = BR_OP_READLINK};
	size_t got = 0;
	int64_t r = call(&rq, path, strlen(path), tmp, sizeof(tmp), &got);
	if (r == BR_PASSTHROUGH)
		return -2;
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	if (got > len)
		got = len;
	memcpy(buf, tmp, got);
	return (ssize_t)got;
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t len)
{
	if (is_model_path(path)) {
		ssize_t r = model_readlink(path, buf, len);
		if (r != -2)
			return r;
	}
	resolve_readlink();
	return real_readlink(path, buf, len);
}

EXPORT ssize_t __readlink_chk(const char *path, char *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort();
	return readlink(path, buf, len);
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	if (is_model_path(path)) {
		ssize_t r = model_readlink(path, buf, len);
		if (r != -2)
			return r;
	}
	resolve_readlinkat();
	return real_readlinkat(dirfd, path, buf, len);
}

EXPORT ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		abort();
	return readlinkat(dirfd, path, buf, len);
}

/* realpath through the model: -2 when the path is not the model's */
static int model_realpath(const char *path, char *out)
{
	struct br_req rq = {.op = BR_OP_REALPATH};
	size_t got = 0;
	char tmp[PATH_MAX];
	int64_t r = call(&rq, path, strlen(path), tmp, sizeof(tmp) - 1, &got);
	if (r == BR_PASSTHROUGH)
		return -2;
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	tmp[got] = 0;
	memcpy(out, tmp, got + 1);
	return 0;
}

EXPORT char *realpath(const char *path, char *resolved)
{
	if (is_model_path(path)) {
		char buf[PATH_MAX];
		int r = model_realpath(path, buf);
		if (r == -1)
			return NULL;
		if (r == 0) {
			if (resolved) {
				strcpy(resolved, buf);
				return resolved;
			}
			return strdup(buf);
		}
	}
	resolve_realpath();
	return real_realpath(path, resolved);
}

EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
	if (resolved && resolvedlen < PATH_MAX)
		abort();
	return realpath(path, resolved);
}

EXPORT char *canonicalize_file_name(const char *path)
{
	return realpath(path, NULL);
}

/* ------------------------------------------------------------ directories */

#define FAKE_DIR_MAGIC 0x6272646972ull

struct fake_dir {
	uint64_t magic;
	int fd;
	size_t n, pos;
	char *names; /* d_type, NUL-terminated name, ... */
	size_t *offs;
	struct dirent ent;
	struct dirent64 ent64;
	struct fake_dir *next;
};

static struct fake_dir *fake_dirs;
static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fake_dir *as_fake(DIR *d)
{
	pthread_mutex_lock(&dir_lock);
	struct fake_dir *f = fake_dirs;
	while (f && (DIR *)f != d)
		f = f->next;
	pthread_mutex_unlock(&dir_lock);
	return f;
}

/* NULL with errno, or (DIR *)-2 when the path is not the model's */
static DIR *model_opendir(const char *path)
{
	size_t cap = 65536;
	char *buf = malloc(cap);
	if (!buf) {
		errno = ENOMEM;
		return NULL;
	}
	struct br_req rq = {.op = BR_OP_READDIR};
	size_t got = 0;
	int64_t r = call(&rq, path, strlen(path), buf, cap, &got);
	if (r == BR_PASSTHROUGH) {
		free(buf);
		return (DIR *)-2;
	}
	if (r < 0) {
		free(buf);
		errno = (int)-r;
		return NULL;
	}
	struct fake_dir *f = calloc(1, sizeof(*f));
	size_t n = 2;
	for (size_t o = 0; o + 2 <= got; o += 2 + (uint8_t)buf[o + 1])
		n++;
	f->offs = calloc(n, sizeof(size_t));
	f->names = malloc(got + n * 2 + 8);
	if (!f || !f->offs || !f->names) {
		errno = ENOMEM;
		return NULL;
	}
	f->magic = FAKE_DIR_MAGIC;
	size_t w = 0, i = 0;
	const char *dots[2] = {".", ".."};
	for (int k = 0; k < 2; k++) {
		f->offs[i++] = w;
		f->names[w++] = DT_DIR;
		strcpy(f->names + w, dots[k]);
		w += strlen(dots[k]) + 1;
	}
	for (size_t o = 0; o + 2 <= got; o += 2 + (uint8_t)buf[o + 1]) {
		uint8_t len = (uint8_t)buf[o + 1];
		f->offs[i++] = w;
		f->names[w++] = buf[o];
		memcpy(f->names + w, buf + o + 2, len);
		w += len;
		f->names[w++] = 0;
	}
	free(buf);
	f->n = i;
	f->fd = reserve_fd(1);
	set_fd_path(f->fd, path);
	pthread_mutex_lock(&dir_lock);
	f->next = fake_dirs;
	fake_dirs = f;
	pthread_mutex_unlock(&dir_lock);
	return (DIR *)f;
}

EXPORT DIR *opendir(const char *path)
{
	if (is_model_path(path)) {
		DIR *d = model_opendir(path);
		if (d != (DIR *)-2)
			return d;
	}
	resolve_opendir();
	return real_opendir(path);
}

static const char *fake_next(struct fake_dir *f, unsigned char *type)
{
	if (f->pos >= f->n)
		return NULL;
	const char *e = f->names + f->offs[f->pos++];
	*type = (unsigned char)e[0];
	return e + 1;
}

EXPORT struct dirent *readdir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_readdir();
		return real_readdir(d);
	}
	unsigned char type;
	const char *name = fake_next(f, &type);
	if (!name)
		return NULL;
	memset(&f->ent, 0, sizeof(f->ent));
	f->ent.d_ino = f->pos;
	f->ent.d_off = (off_t)f->pos;
	f->ent.d_type = type;
	f->ent.d_reclen = sizeof(f->ent);
	snprintf(f->ent.d_name, sizeof(f->ent.d_name), "%s", name);
	return &f->ent;
}

EXPORT struct dirent64 *readdir64(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_readdir64();
		return real_readdir64(d);
	}
	unsigned char type;
	const char *name = fake_next(f, &type);
	if (!name)
		return NULL;
	memset(&f->ent64, 0, sizeof(f->ent64));
	f->ent64.d_ino = f->pos;
	f->ent64.d_off = (off64_t)f->pos;
	f->ent64.d_type = type;
	f->ent64.d_reclen = sizeof(f->ent64);
	snprintf(f->ent64.d_name, sizeof(f->ent64.d_name), "%s", name);
	return &f->ent64;
}

EXPORT int closedir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_closedir();
		return real_closedir(d);
	}
	pthread_mutex_lock(&dir_lock);
	struct fake_dir **pp = &fake_dirs;
	while (*pp != f)
		pp = &(*pp)->next;
	*pp = f->next;
	pthread_mutex_unlock(&dir_lock);
	resolve_close();
	if (f->fd >= 0) {
		set_fd_path(f->fd, NULL);
		real_close(f->fd);
	}
	free(f->names);
	free(f->offs);
	f->magic = 0;
	free(f);
	return 0;
}

EXPORT int dirfd(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_dirfd();
		return real_dirfd(d);
	}
	return f->fd;
}

EXPORT void rewinddir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_rewinddir();
		real_rewinddir(d);
		return;
	}
	f->pos = 0;
}

EXPORT int scandir(const char *path, struct dirent ***list, int (*filter)(const struct dirent *),
		   int (*compar)(const struct dirent **, const struct dirent **))
{
	if (!is_model_path(path)) {
		resolve_scandir();
		return real_scandir(path, list, filter, compar);
	}
	DIR *d = model_opendir(path);
	if (d == (DIR *)-2) {
		resolve_scandir();
		return real_scandir(path, list, filter, compar);
	}
	if (!d)
		return -1;
	size_t n = 0, cap = 16;
	struct dirent **v = malloc(cap * sizeof(*v));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (filter && !filter(e))
			continue;
		if (n == cap)
			v = realloc(v, (cap *= 2) * sizeof(*v));
		v[n] = malloc(sizeof(*e));
		memcpy(v[n++], e, sizeof(*e));
	}
	closedir(d);
	if (compar)
		qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))compar);
	*list = v;
	return (int)n;
}

/* ------------------------------------------------------------ stdio */

static ssize_t cookie_read(void *c, char *buf, size_t len)
{
	return read((int)(intptr_t)c, buf, len);
}

static ssize_t cookie_write(void *c, const char *buf, size_t len)
{
	return write((int)(intptr_t)c, buf, len);
}

static int cookie_seek(void *c, off64_t *off, int whence)
{
	off64_t r = lseek64((int)(intptr_t)c, *off, whence);
	if (r < 0)
		return -1;
	*off = r;
	return 0;
}

static int cookie_close(void *c)
{
	return close((int)(intptr_t)c);
}

static FILE *model_fopen(const char *path, const char *mode)
{
	int flags = O_RDONLY;
	if (mode[0] == 'w')
		flags = O_WRONLY | O_CREAT | O_TRUNC;
	else if (mode[0] == 'a')
		flags = O_WRONLY | O_CREAT | O_APPEND;
	if (strchr(mode, '+'))
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	if (strchr(mode, 'e'))
		flags |= O_CLOEXEC;
	int fd = model_open(path, flags, 0666);
	if (fd == -2)
		return (FILE *)-2;
	if (fd < 0)
		return NULL;
	cookie_io_functions_t io = {cookie_read, cookie_write, cookie_seek, cookie_close};
	return fopencookie((void *)(intptr_t)fd, mode, io);
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	if (is_model_path(path)) {
		FILE *f = model_fopen(path, mode);
		if (f != (FILE *)-2)
			return f;
	}
	resolve_fopen();
	return real_fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	if (is_model_path(path)) {
		FILE *f = model_fopen(path, mode);
		if (f != (FILE *)-2)
			return f;
	}
	resolve_fopen64();
	return real_fopen64(path, mode);
}
