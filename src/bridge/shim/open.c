/*
 * open, openat, creat (and their _2 and 64 forms) of model paths, and close.
 */
#include "shim.h"

int model_open(const char *path, int flags, mode_t mode)
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
