/*
 * dup, dup2, dup3, fcntl(F_DUPFD*): the model's fd table follows.
 */
#include "shim.h"

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
