/*
 * ioctl on a model fd: the argument stays a pointer into this process's
 * memory, which the server reads and writes through /proc/PID/mem.
 */
#include "shim.h"

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
