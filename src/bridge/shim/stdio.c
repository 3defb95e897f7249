/*
 * fopen of model paths: a cookie FILE over a model fd.
 */
#include "shim.h"

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
