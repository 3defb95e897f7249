/*
 * readlink and realpath of model paths (glibc's realpath makes its own
 * syscalls, invisible to LD_PRELOAD).
 */
#include "shim.h"

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
