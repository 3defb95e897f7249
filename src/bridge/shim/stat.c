/*
 * stat, fstat, statx and the glibc __xstat forms, access, of model paths
 * and fds.
 */
#include "shim.h"

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
