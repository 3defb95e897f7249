/*
 * Which fd numbers are the model's, the path each was opened by, and the
 * reserved /dev/null fds that hold their numbers.
 */
#include "shim.h"

uint8_t br_model_fd[MAX_TRACKED_FD / 8];

char *br_fd_path[MAX_TRACKED_FD];

void set_fd_path(int fd, const char *path)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD)
		return;
	free(br_fd_path[fd]);
	br_fd_path[fd] = path ? strdup(path) : NULL;
}

void set_model_fd(int fd, int on)
{
	if (fd < 0 || fd >= MAX_TRACKED_FD)
		return;
	/* atomic: threads open and close model fds at once, and numbers 8k..8k+7 share a byte */
	if (on)
		__atomic_fetch_or(&br_model_fd[fd >> 3], (uint8_t)(1u << (fd & 7)), __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&br_model_fd[fd >> 3], (uint8_t)~(1u << (fd & 7)), __ATOMIC_RELEASE);
}

int reserve_fd(int cloexec)
{
	resolve_open();
	return real_open("/dev/null", O_RDWR | (cloexec ? O_CLOEXEC : 0));
}

/* The spare fd for ioctls that create files; the caller holds br_lock. */
int spare_locked(void)
{
	if (br_spare < 0)
		br_spare = reserve_fd(1);
	return br_spare;
}
