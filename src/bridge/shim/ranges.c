/*
 * Address ranges the shim keeps track of: the device mappings (BAR mmaps,
 * a PROT_NONE placeholder each, so every load and store traps into
 * mmio.c) and the MAP_HUGETLB mappings the model's pool backs. The trap
 * reads the device table without a lock (it runs in a signal handler):
 * writers hold the set's lock and publish each slot with atomic stores.
 */
#include "shim.h"

#define MAX_DEVMAPS 256

struct devmap {
	uintptr_t start, end; /* end 0: a free slot */
	int tag;              /* the hugetlb page shift */
};

struct rangeset {
	struct devmap slots[MAX_DEVMAPS];
	pthread_mutex_t lock;
};

struct rangeset devmaps = {.lock = PTHREAD_MUTEX_INITIALIZER};
struct rangeset hugemaps = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void slot_set(struct devmap *d, uintptr_t start, uintptr_t end, int tag)
{
	__atomic_store_n(&d->end, 0, __ATOMIC_RELEASE);
	d->tag = tag;
	__atomic_store_n(&d->start, start, __ATOMIC_RELEASE);
	__atomic_store_n(&d->end, end, __ATOMIC_RELEASE);
}

static struct devmap *free_slot(struct rangeset *rs)
{
	for (int i = 0; i < MAX_DEVMAPS; i++)
		if (__atomic_load_n(&rs->slots[i].end, __ATOMIC_ACQUIRE) == 0)
			return &rs->slots[i];
	return NULL;
}

/* Trim [start, end) out of every entry; the caller holds the lock. 0, or -1 when a split finds no slot. */
static int remove_locked(struct rangeset *rs, uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		struct devmap *d = &rs->slots[i];
		uintptr_t s = d->start, e = d->end;
		if (e == 0 || e <= start || s >= end)
			continue;
		int tag = d->tag;
		if (start <= s && end >= e) {
			slot_set(d, 0, 0, 0);
		} else if (start <= s) {
			slot_set(d, end, e, tag);
		} else if (end >= e) {
			slot_set(d, s, start, tag);
		} else {
			struct devmap *t = free_slot(rs);
			if (!t)
				return -1;
			slot_set(t, end, e, tag);
			slot_set(d, s, start, tag);
		}
	}
	return 0;
}

int range_add(struct rangeset *rs, uintptr_t start, uintptr_t end, int tag)
{
	pthread_mutex_lock(&rs->lock);
	int r = remove_locked(rs, start, end);
	struct devmap *d = r == 0 ? free_slot(rs) : NULL;
	if (d)
		slot_set(d, start, end, tag);
	pthread_mutex_unlock(&rs->lock);
	return d ? 0 : -1;
}

void range_remove(struct rangeset *rs, uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&rs->lock);
	remove_locked(rs, start, end);
	pthread_mutex_unlock(&rs->lock);
}

/* async-signal-safe: is [a, a + len) inside one range? Its tag, or -1. */
int range_find(struct rangeset *rs, uintptr_t a, size_t len)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		uintptr_t e = __atomic_load_n(&rs->slots[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&rs->slots[i].start, __ATOMIC_ACQUIRE);
		if (e != 0 && a >= s && a < e && len <= e - a)
			return rs->slots[i].tag;
	}
	return -1;
}

/* The tag of a range [start, end) overlaps, or -1. */
int range_overlaps(struct rangeset *rs, uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		uintptr_t e = __atomic_load_n(&rs->slots[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&rs->slots[i].start, __ATOMIC_ACQUIRE);
		if (e != 0 && s < end && start < e)
			return rs->slots[i].tag;
	}
	return -1;
}
