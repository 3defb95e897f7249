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
	if (on)
		br_model_fd[fd >> 3] |= (uint8_t)(1u << (fd & 7));
	else
		br_model_fd[fd >> 3] &= (uint8_t)~(1u << (fd & 7));
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
