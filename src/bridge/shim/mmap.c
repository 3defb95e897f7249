/*
 * mmap of model fds, and telling the server before memory the model has
 * pinned leaves the process (munmap, mremap, MAP_FIXED, MADV_DONTNEED).
 */
#include "shim.h"

/* Memory the model may have pinned is about to leave the process: let it keep the contents. */
static void detach(void *va, size_t len)
{
	if (!br_has_pins || br_sock < 0)
		return;
	struct br_req rq = {.op = BR_OP_DETACH, .a = (uint64_t)(uintptr_t)va, .b = len};
	call(&rq, NULL, 0, NULL, 0, NULL);
}

static void *model_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	(void)addr;
	struct br_req rq = {.op = BR_OP_MMAP, .fd = fd, .a = len, .b = (uint64_t)off,
			    .c = (uint64_t)(unsigned)prot | ((uint64_t)(unsigned)flags << 32)};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	errno = r < 0 ? (int)-r : ENODEV;
	return MAP_FAILED;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!(flags & MAP_ANONYMOUS) && is_model_fd(fd))
		return model_mmap(addr, len, prot, flags, fd, off);
	if (!(flags & MAP_ANONYMOUS) && is_hugetlb_fd(fd) && (flags = hugetlb_mmap_flags(fd, len, off, flags)) < 0)
		return MAP_FAILED;
	if (flags & MAP_FIXED)
		detach(addr, len);
	resolve_mmap();
	return real_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	if (!(flags & MAP_ANONYMOUS) && is_model_fd(fd))
		return model_mmap(addr, len, prot, flags, fd, off);
	if (!(flags & MAP_ANONYMOUS) && is_hugetlb_fd(fd) && (flags = hugetlb_mmap_flags(fd, len, off, flags)) < 0)
		return MAP_FAILED;
	if (flags & MAP_FIXED)
		detach(addr, len);
	resolve_mmap64();
	return real_mmap64(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	detach(addr, len);
	resolve_munmap();
	return real_munmap(addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
		detach(new_addr, new_len);
	}
	detach(old, old_len);
	resolve_mremap();
	return real_mremap(old, old_len, new_len, flags, new_addr);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_DONTNEED || advice == MADV_REMOVE || advice == MADV_FREE)
		detach(addr, len);
	resolve_madvise();
	return real_madvise(addr, len, advice);
}
