/*
 * The bridge server's one native helper: map a file shared into the
 * server, as an ArrayBuffer. Node has no mmap, and without it the server
 * reads and writes each request channel with pread/pwrite, two syscalls
 * and their binding cost (about 2 µs) in every round trip; mapped, it
 * polls and answers in plain memory, as the shim does on its side.
 *
 * Node-API is a stable C ABI that the node binary exports; the few
 * declarations used here are written out below (from the Node-API
 * documentation), so no headers package is needed to build it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#define TMPFS_MAGIC 0x01021994 /* shmem: a memfd's (not a hugetlb one's) file system */

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* 0: napi_ok */
typedef napi_value (*napi_callback)(napi_env, napi_callback_info);
typedef void (*napi_finalize)(napi_env, void *, void *);

napi_status napi_get_cb_info(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *, void **);
napi_status napi_get_value_int32(napi_env, napi_value, int32_t *);
napi_status napi_create_external_arraybuffer(napi_env, void *, size_t, napi_finalize, void *, napi_value *);
napi_status napi_create_function(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
napi_status napi_set_named_property(napi_env, napi_value, const char *, napi_value);
napi_status napi_throw_error(napi_env, const char *, const char *);
napi_status napi_create_int32(napi_env, int32_t, napi_value *);
napi_status napi_get_boolean(napi_env, bool, napi_value *);

#define EXPORT __attribute__((visibility("default")))

/* The ArrayBuffer was collected: its mapping goes (hint: the length). */
static void unmap(napi_env env, void *data, void *hint)
{
	(void)env;
	munmap(data, (size_t)(uintptr_t)hint);
}

/*
 * mapShared(fd, length): an ArrayBuffer over a MAP_SHARED read-write
 * mapping of fd from offset 0. The file must be shmem (a memfd, not a
 * hugetlb one, whose pool may be empty), at least length bytes and sealed
 * against shrinking (F_SEAL_SHRINK): the other side is a program that may
 * be hostile, and a fault the file cannot back would kill the server with
 * SIGBUS at its next look.
 */
static napi_value map_shared(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], ab;
	int32_t fd, len;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != 0 || argc != 2 ||
	    napi_get_value_int32(env, argv[0], &fd) != 0 || napi_get_value_int32(env, argv[1], &len) != 0 ||
	    fd < 0 || len <= 0) {
		napi_throw_error(env, "EINVAL", "mapShared(fd, length): a file descriptor and a positive length");
		return NULL;
	}
	struct stat st;
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
		napi_throw_error(env, "ENOTSHMEM", "mapShared: the file is not shmem (a memfd)");
		return NULL;
	}
	int seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &st) != 0 || st.st_size < len || seals < 0 || !(seals & F_SEAL_SHRINK)) {
		napi_throw_error(env, "ESEALS", "mapShared: the file is shorter than length or not sealed against shrinking");
		return NULL;
	}
	void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (p == MAP_FAILED) {
		napi_throw_error(env, "EMMAP", "mapShared: mmap failed");
		return NULL;
	}
	if (napi_create_external_arraybuffer(env, p, (size_t)len, unmap, (void *)(uintptr_t)len, &ab) != 0) {
		munmap(p, (size_t)len);
		napi_throw_error(env, "ENOMEM", "mapShared: no external ArrayBuffer");
		return NULL;
	}
	return ab;
}

/* getcpu(): the CPU the calling thread runs on (-1: unknown). */
static napi_value get_cpu(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	return napi_create_int32(env, sched_getcpu(), &v) == 0 ? v : NULL;
}

/*
 * stepAside(cpu): move the calling thread off cpu, then give it back its
 * CPUs: the scheduler migrates a thread at once when its mask excludes
 * the CPU it runs on, and leaves it where it is once the mask allows that
 * again. true when it moved.
 */
static napi_value step_aside(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], v;
	int32_t cpu;
	int moved = 0;
	cpu_set_t all, other;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == 0 && argc == 1 &&
	    napi_get_value_int32(env, argv[0], &cpu) == 0 && cpu >= 0 && cpu < CPU_SETSIZE &&
	    sched_getaffinity(0, sizeof(all), &all) == 0 && CPU_ISSET(cpu, &all) && CPU_COUNT(&all) > 1) {
		other = all;
		CPU_CLR(cpu, &other);
		moved = sched_setaffinity(0, sizeof(other), &other) == 0;
		if (moved)
			sched_setaffinity(0, sizeof(all), &all);
	}
	return napi_get_boolean(env, moved, &v) == 0 ? v : NULL;
}

static void export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb)
{
	napi_value f;
	if (napi_create_function(env, name, (size_t)-1, cb, NULL, &f) == 0)
		napi_set_named_property(env, exports, name, f);
}

EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports)
{
	export_fn(env, exports, "mapShared", map_shared);
	export_fn(env, exports, "getcpu", get_cpu);
	export_fn(env, exports, "stepAside", step_aside);
	return exports;
}
