/*
 * fork and exit: the model forks its fd table and pins with the process,
 * and releases them at exit.
 */
#include "shim.h"

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
