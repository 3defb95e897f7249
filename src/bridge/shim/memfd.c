/*
 * memfd_create(MFD_HUGETLB): huge pages from the model's hugetlb pool.
 *
 * The host may have no huge pages at all (DPDK's EAL in --in-memory mode
 * backs each segment with a MFD_HUGETLB memfd). The shim creates an
 * ordinary memfd instead and tells the server (BR_OP_HUGETLB_FD), which
 * treats every mapping of that file as hugetlb memory: a page the model pins
 * or looks up there belongs to a physically contiguous huge folio of the
 * model's pool, as on a kernel with huge pages. mmap of such a file asks
 * the server first (BR_OP_HUGETLB_MMAP: the pool must have the pages, as
 * hugetlb_reserve_pages checks) and does not prefault (MAP_POPULATE would
 * fill the host's memory with pages nobody touches). Without the bridge, or
 * without MFD_HUGETLB, the real call.
 */
#include "shim.h"

/* MFD_HUGE_SHIFT / MFD_HUGE_MASK of linux/memfd.h: the page size's log2 in bits 26..31 */
#define HUGE_SIZE_BITS (0x3fu << 26)

uint8_t br_hugetlb_fd[MAX_TRACKED_FD / 8];

static void set_hugetlb_fd(int fd)
{
	if (fd >= 0 && fd < MAX_TRACKED_FD)
		__atomic_fetch_or(&br_hugetlb_fd[fd >> 3], (uint8_t)(1u << (fd & 7)), __ATOMIC_RELAXED);
}

EXPORT int memfd_create(const char *name, unsigned int flags)
{
	resolve_memfd_create();
	if (!(flags & MFD_HUGETLB))
		return real_memfd_create(name, flags);
	pthread_mutex_lock(&br_lock);
	int on = connect_locked(0) == 0;
	pthread_mutex_unlock(&br_lock);
	if (!on)
		return real_memfd_create(name, flags);
	int fd = real_memfd_create(name, flags & ~(MFD_HUGETLB | HUGE_SIZE_BITS));
	if (fd < 0)
		return -1;
	struct br_req rq = {.op = BR_OP_HUGETLB_FD, .fd = fd, .a = flags};
	int64_t r = call(&rq, name, strlen(name), NULL, 0, NULL);
	if (r < 0) {
		resolve_close();
		real_close(fd);
		errno = (int)-r;
		return -1;
	}
	set_hugetlb_fd(fd);
	return fd;
}

/*
 * mmap of an fd memfd_create(MFD_HUGETLB) returned (the number may have
 * been reused since: the server checks the file): the flags to map it
 * with, or -1 with errno (ENOMEM: the model's pool is short; EINVAL: an
 * offset that is not a multiple of the huge page size).
 */
int hugetlb_mmap_flags(int fd, size_t len, off64_t off, int flags)
{
	struct br_req rq = {.op = BR_OP_HUGETLB_MMAP, .fd = fd, .a = len, .b = (uint64_t)off};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	if (r == BR_PASSTHROUGH || r == 0)
		return flags; /* not (any more) a hugetlb file of the model's */
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return flags & ~MAP_POPULATE;
}
