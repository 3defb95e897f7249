/*
 * The device mappings (BAR mmaps) in this process: address ranges whose
 * placeholder is PROT_NONE so every load and store traps into mmio.c. The
 * trap reads the table without a lock (it runs in a signal handler):
 * writers hold devmap_lock and publish each slot with atomic stores.
 */
#include "shim.h"

#define MAX_DEVMAPS 256

struct devmap {
	uintptr_t start, end; /* end 0: a free slot */
};

static struct devmap devmaps[MAX_DEVMAPS];
static pthread_mutex_t devmap_lock = PTHREAD_MUTEX_INITIALIZER;

static void slot_set(struct devmap *d, uintptr_t start, uintptr_t end)
{
	__atomic_store_n(&d->end, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&d->start, start, __ATOMIC_RELEASE);
	__atomic_store_n(&d->end, end, __ATOMIC_RELEASE);
}

static struct devmap *free_slot(void)
{
	for (int i = 0; i < MAX_DEVMAPS; i++)
		if (__atomic_load_n(&devmaps[i].end, __ATOMIC_ACQUIRE) == 0)
			return &devmaps[i];
	return NULL;
}

/* Trim [start, end) out of every entry; the caller holds devmap_lock. 0, or -1 when a split finds no slot. */
static int remove_locked(uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		struct devmap *d = &devmaps[i];
		uintptr_t s = d->start, e = d->end;
		if (e == 0 || e <= start || s >= end)
			continue;
		if (start <= s && end >= e) {
			slot_set(d, 0, 0);
		} else if (start <= s) {
			slot_set(d, end, e);
		} else if (end >= e) {
			slot_set(d, s, start);
		} else {
			struct devmap *t = free_slot();
			if (!t)
				return -1;
			slot_set(t, end, e);
			slot_set(d, s, start);
		}
	}
	return 0;
}

int devmap_add(uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&devmap_lock);
	int r = remove_locked(start, end);
	struct devmap *d = r == 0 ? free_slot() : NULL;
	if (d)
		slot_set(d, start, end);
	pthread_mutex_unlock(&devmap_lock);
	return d ? 0 : -1;
}

void devmap_remove(uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&devmap_lock);
	remove_locked(start, end);
	pthread_mutex_unlock(&devmap_lock);
}

/* async-signal-safe: is [a, a + len) inside one device mapping? */
int devmap_contains(uintptr_t a, size_t len)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		uintptr_t e = __atomic_load_n(&devmaps[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&devmaps[i].start, __ATOMIC_ACQUIRE);
		if (e != 0 && a >= s && a < e && len <= e - a)
			return 1;
	}
	return 0;
}

int devmap_overlaps(uintptr_t start, uintptr_t end)
{
	for (int i = 0; i < MAX_DEVMAPS; i++) {
		uintptr_t e = __atomic_load_n(&devmaps[i].end, __ATOMIC_ACQUIRE);
		uintptr_t s = __atomic_load_n(&devmaps[i].start, __ATOMIC_ACQUIRE);
		if (e != 0 && s < end && start < e)
			return 1;
	}
	return 0;
}
