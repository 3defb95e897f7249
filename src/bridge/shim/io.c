/*
 * read, write, pread, pwrite, readv, writev, lseek on model fds.
 */
#include "shim.h"

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
