/*
 * mmap of model fds (device BARs), and the address-space changes the model
 * must hear about: memory it may have pinned leaving the process (munmap,
 * mremap, MAP_FIXED, MADV_DONTNEED: the server keeps the contents) and
 * device mappings going away or moving.
 *
 * A BAR mapping is a PROT_NONE anonymous placeholder at the address the
 * kernel would pick (or the MAP_FIXED one) plus a model VMA at the same
 * address that maps the device (the device's own mmap decides, with its
 * errors); loads and stores trap (mmio.c).
 */
#include "shim.h"

#define PLACEHOLDER (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

static size_t page_up(size_t len)
{
	return (len + 4095) & ~(size_t)4095;
}

/* Memory the model may have pinned is about to leave the process: let it keep the contents. */
static void detach(void *va, size_t len)
{
	if (!br_has_pins || br_sock < 0)
		return;
	struct br_req rq = {.op = BR_OP_DETACH, .a = (uint64_t)(uintptr_t)va, .b = len};
	call(&rq, NULL, 0, NULL, 0, NULL);
}

/* [va, +len) no longer maps device memory (munmap, or a mapping on top of it). */
static void devmap_gone(void *va, size_t len)
{
	uintptr_t s = (uintptr_t)va, e = s + page_up(len);
	if (len == 0 || !devmap_overlaps(s, e))
		return;
	devmap_remove(s, e);
	struct br_req rq = {.op = BR_OP_MUNMAP, .a = s, .b = e - s};
	call(&rq, NULL, 0, NULL, 0, NULL);
}

static void hugemap_gone(uintptr_t s, uintptr_t e);

/* Something else now lives at [va, +len): the device or hugetlb mapping there is gone. */
static void mapping_gone(void *va, size_t len)
{
	devmap_gone(va, len);
	if (len)
		hugemap_gone((uintptr_t)va, (uintptr_t)va + page_up(len));
}

/*
 * MAP_HUGETLB memory the host has no huge pages for (the real mmap said
 * ENOMEM): an ordinary anonymous mapping aligned to the huge page size,
 * which the model's hugetlb pool backs (it reserves the pages, or says
 * ENOMEM as the kernel would; pins take whole folios of that size).
 * MAP_POPULATE is dropped (touching a 1 GiB page would cost the host 1 GiB).
 */
static void *model_hugetlb(void *addr, size_t len, int prot, int flags, int err)
{
	int shift = (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
	if (shift == 0)
		shift = 21; /* the default huge page size */
	if ((shift != 21 && shift != 30) || len == 0) {
		errno = err;
		return MAP_FAILED;
	}
	size_t hsz = (size_t)1 << shift, plen = (len + hsz - 1) & ~(hsz - 1);
	int base = flags & ~(MAP_HUGETLB | (MAP_HUGE_MASK << MAP_HUGE_SHIFT) | MAP_POPULATE);
	resolve_mmap();
	resolve_munmap();
	void *va;
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		if ((uintptr_t)addr & (hsz - 1)) {
			errno = EINVAL;
			return MAP_FAILED;
		}
		va = real_mmap(addr, plen, prot, base, -1, 0);
	} else {
		char *raw = real_mmap(NULL, plen + hsz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (raw == MAP_FAILED)
			return MAP_FAILED;
		char *a = (char *)(((uintptr_t)raw + hsz - 1) & ~(uintptr_t)(hsz - 1));
		if (a > raw)
			real_munmap(raw, (size_t)(a - raw));
		if (raw + plen + hsz > a + plen)
			real_munmap(a + plen, (size_t)(raw + plen + hsz - (a + plen)));
		va = real_mmap(a, plen, prot, base | MAP_FIXED, -1, 0);
	}
	if (va == MAP_FAILED)
		return va;
	struct br_req rq = {.op = BR_OP_HUGETLB, .a = (uint64_t)(uintptr_t)va, .b = plen,
			    .c = (uint64_t)shift | ((flags & MAP_NORESERVE) ? BR_HUGETLB_NORESERVE : 0)};
	int64_t r = call(&rq, NULL, 0, NULL, 0, NULL);
	if (r < 0 || range_add(&hugemaps, (uintptr_t)va, (uintptr_t)va + plen, shift) < 0) {
		if (r >= 0) {
			struct br_req un = {.op = BR_OP_HUGETLB, .flags = BR_HUGETLB_UNMAP, .a = rq.a, .b = plen};
			call(&un, NULL, 0, NULL, 0, NULL);
		}
		real_munmap(va, plen);
		errno = r == BR_PASSTHROUGH || r >= 0 ? err : (int)-r;
		return MAP_FAILED;
	}
	return va;
}

/* [va, +len) of a model-backed hugetlb mapping left the process. */
static void hugemap_gone(uintptr_t s, uintptr_t e)
{
	if (range_overlaps(&hugemaps, s, e) < 0)
		return;
	range_remove(&hugemaps, s, e);
	struct br_req rq = {.op = BR_OP_HUGETLB, .flags = BR_HUGETLB_UNMAP, .a = s, .b = e - s};
	call(&rq, NULL, 0, NULL, 0, NULL);
}

static void *model_mmap(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	size_t plen = page_up(len);
	int fixed = (flags & MAP_FIXED) != 0;
	void *va = addr;
	resolve_mmap();
	resolve_munmap();
	if (!fixed) {
		/* where the kernel would put it (a hint, MAP_FIXED_NOREPLACE honoured) */
		va = real_mmap(addr, plen, PROT_NONE, PLACEHOLDER | (flags & MAP_FIXED_NOREPLACE), -1, 0);
		if (va == MAP_FAILED)
			return MAP_FAILED;
	}
	uint64_t where = (uint64_t)(uintptr_t)va;
	struct br_req rq = {.op = BR_OP_MMAP, .fd = fd, .a = len, .b = (uint64_t)off,
			    .c = (uint64_t)(unsigned)prot | ((uint64_t)(unsigned)flags << 32)};
	int64_t r = call(&rq, &where, sizeof(where), NULL, 0, NULL);
	if (r == BR_PASSTHROUGH)
		r = -EBADF;
	if (r < 0) {
		if (!fixed)
			real_munmap(va, plen);
		errno = (int)-r;
		return MAP_FAILED;
	}
	if (fixed) {
		detach(va, plen);
		if (real_mmap(va, plen, PROT_NONE, PLACEHOLDER | MAP_FIXED, -1, 0) == MAP_FAILED) {
			int err = errno;
			struct br_req un = {.op = BR_OP_MUNMAP, .a = where, .b = plen};
			call(&un, NULL, 0, NULL, 0, NULL);
			errno = err;
			return MAP_FAILED;
		}
	}
	mmio_trap_install();
	if (devmap_add((uintptr_t)va, (uintptr_t)va + plen) < 0) {
		struct br_req un = {.op = BR_OP_MUNMAP, .a = where, .b = plen};
		call(&un, NULL, 0, NULL, 0, NULL);
		real_munmap(va, plen);
		errno = ENOMEM; /* more device mappings than the trap's table holds */
		return MAP_FAILED;
	}
	return va;
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
	void *r = real_mmap(addr, len, prot, flags, fd, off);
	if (r != MAP_FAILED && (flags & MAP_FIXED))
		mapping_gone(r, len);
	if (r == MAP_FAILED && errno == ENOMEM && (flags & (MAP_HUGETLB | MAP_ANONYMOUS)) == (MAP_HUGETLB | MAP_ANONYMOUS))
		return model_hugetlb(addr, len, prot, flags, ENOMEM);
	return r;
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
	void *r = real_mmap64(addr, len, prot, flags, fd, off);
	if (r != MAP_FAILED && (flags & MAP_FIXED))
		mapping_gone(r, len);
	if (r == MAP_FAILED && errno == ENOMEM && (flags & (MAP_HUGETLB | MAP_ANONYMOUS)) == (MAP_HUGETLB | MAP_ANONYMOUS))
		return model_hugetlb(addr, len, prot, flags, ENOMEM);
	return r;
}

EXPORT int munmap(void *addr, size_t len)
{
	uintptr_t s = (uintptr_t)addr;
	int shift = len ? range_overlaps(&hugemaps, s, s + page_up(len)) : -1;
	if (shift > 0) {
		/* hugetlb: the address must be huge-page aligned, the length rounds up (hugetlb_vm_op_split) */
		size_t hsz = (size_t)1 << shift;
		if (s & (hsz - 1)) {
			errno = EINVAL;
			return -1;
		}
		len = (len + hsz - 1) & ~(hsz - 1);
	}
	detach(addr, len);
	resolve_munmap();
	int r = real_munmap(addr, len);
	if (r == 0)
		mapping_gone(addr, len);
	return r;
}

/*
 * mremap of a device mapping (VM_PFNMAP | VM_DONTEXPAND): growing it is
 * EFAULT and MREMAP_DONTUNMAP EINVAL, as vma_to_resize says; shrinking
 * unmaps the tail; a move takes the device mapping along.
 */
static void *devmap_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	if (page_up(new_len) > page_up(old_len)) {
		errno = EFAULT;
		return MAP_FAILED;
	}
	if (flags & MREMAP_DONTUNMAP) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	resolve_mremap();
	void *r = real_mremap(old, old_len, new_len, flags, new_addr);
	if (r == MAP_FAILED)
		return r;
	uintptr_t o = (uintptr_t)old, n = (uintptr_t)r;
	size_t keep = page_up(new_len), was = page_up(old_len);
	if (keep < was)
		devmap_gone((void *)(o + keep), was - keep);
	if (n != o) {
		devmap_remove(o, o + keep);
		struct br_req rq = {.op = BR_OP_MREMAP, .a = o, .b = keep, .c = n};
		call(&rq, NULL, 0, NULL, 0, NULL);
		devmap_add(n, n + keep);
	}
	return r;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	uintptr_t o = (uintptr_t)old;
	if (old_len && devmap_contains(o, page_up(old_len)))
		return devmap_mremap(old, old_len, new_len, flags, new_addr);
	if (flags & MREMAP_FIXED)
		detach(new_addr, new_len);
	detach(old, old_len);
	resolve_mremap();
	void *r = real_mremap(old, old_len, new_len, flags, new_addr);
	if (r != MAP_FAILED && (flags & MREMAP_FIXED))
		mapping_gone(new_addr, new_len);
	return r;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	if (advice == MADV_DONTNEED || advice == MADV_REMOVE || advice == MADV_FREE)
		detach(addr, len);
	resolve_madvise();
	return real_madvise(addr, len, advice);
}
