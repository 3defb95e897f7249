/*
 * opendir, readdir, scandir of model directories: an in-memory listing
 * fetched in one round trip.
 */
#include "shim.h"

#define FAKE_DIR_MAGIC 0x6272646972ull

struct fake_dir {
	uint64_t magic;
	int fd;
	size_t n, pos;
	char *names; /* d_type, NUL-terminated name, ... */
	size_t *offs;
	struct dirent ent;
	struct dirent64 ent64;
	struct fake_dir *next;
};

static struct fake_dir *fake_dirs;
static pthread_mutex_t dir_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fake_dir *as_fake(DIR *d)
{
	pthread_mutex_lock(&dir_lock);
	struct fake_dir *f = fake_dirs;
	while (f && (DIR *)f != d)
		f = f->next;
	pthread_mutex_unlock(&dir_lock);
	return f;
}

/* NULL with errno, or (DIR *)-2 when the path is not the model's */
static DIR *model_opendir(const char *path)
{
	size_t cap = 65536;
	char *buf = malloc(cap);
	if (!buf) {
		errno = ENOMEM;
		return NULL;
	}
	struct br_req rq = {.op = BR_OP_READDIR};
	size_t got = 0;
	int64_t r = call(&rq, path, strlen(path), buf, cap, &got);
	if (r == BR_PASSTHROUGH) {
		free(buf);
		return (DIR *)-2;
	}
	if (r < 0) {
		free(buf);
		errno = (int)-r;
		return NULL;
	}
	struct fake_dir *f = calloc(1, sizeof(*f));
	size_t n = 2;
	for (size_t o = 0; o + 2 <= got; o += 2 + (uint8_t)buf[o + 1])
		n++;
	f->offs = calloc(n, sizeof(size_t));
	f->names = malloc(got + n * 2 + 8);
	if (!f || !f->offs || !f->names) {
		errno = ENOMEM;
		return NULL;
	}
	f->magic = FAKE_DIR_MAGIC;
	size_t w = 0, i = 0;
	const char *dots[2] = {".", ".."};
	for (int k = 0; k < 2; k++) {
		f->offs[i++] = w;
		f->names[w++] = DT_DIR;
		strcpy(f->names + w, dots[k]);
		w += strlen(dots[k]) + 1;
	}
	for (size_t o = 0; o + 2 <= got; o += 2 + (uint8_t)buf[o + 1]) {
		uint8_t len = (uint8_t)buf[o + 1];
		f->offs[i++] = w;
		f->names[w++] = buf[o];
		memcpy(f->names + w, buf + o + 2, len);
		w += len;
		f->names[w++] = 0;
	}
	free(buf);
	f->n = i;
	f->fd = reserve_fd(1);
	set_fd_path(f->fd, path);
	pthread_mutex_lock(&dir_lock);
	f->next = fake_dirs;
	fake_dirs = f;
	pthread_mutex_unlock(&dir_lock);
	return (DIR *)f;
}

EXPORT DIR *opendir(const char *path)
{
	if (is_model_path(path)) {
		DIR *d = model_opendir(path);
		if (d != (DIR *)-2)
			return d;
	}
	resolve_opendir();
	return real_opendir(path);
}

static const char *fake_next(struct fake_dir *f, unsigned char *type)
{
	if (f->pos >= f->n)
		return NULL;
	const char *e = f->names + f->offs[f->pos++];
	*type = (unsigned char)e[0];
	return e + 1;
}

EXPORT struct dirent *readdir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_readdir();
		return real_readdir(d);
	}
	unsigned char type;
	const char *name = fake_next(f, &type);
	if (!name)
		return NULL;
	memset(&f->ent, 0, sizeof(f->ent));
	f->ent.d_ino = f->pos;
	f->ent.d_off = (off_t)f->pos;
	f->ent.d_type = type;
	f->ent.d_reclen = sizeof(f->ent);
	snprintf(f->ent.d_name, sizeof(f->ent.d_name), "%s", name);
	return &f->ent;
}

EXPORT struct dirent64 *readdir64(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_readdir64();
		return real_readdir64(d);
	}
	unsigned char type;
	const char *name = fake_next(f, &type);
	if (!name)
		return NULL;
	memset(&f->ent64, 0, sizeof(f->ent64));
	f->ent64.d_ino = f->pos;
	f->ent64.d_off = (off64_t)f->pos;
	f->ent64.d_type = type;
	f->ent64.d_reclen = sizeof(f->ent64);
	snprintf(f->ent64.d_name, sizeof(f->ent64.d_name), "%s", name);
	return &f->ent64;
}

EXPORT int closedir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_closedir();
		return real_closedir(d);
	}
	pthread_mutex_lock(&dir_lock);
	struct fake_dir **pp = &fake_dirs;
	while (*pp != f)
		pp = &(*pp)->next;
	*pp = f->next;
	pthread_mutex_unlock(&dir_lock);
	resolve_close();
	if (f->fd >= 0) {
		set_fd_path(f->fd, NULL);
		real_close(f->fd);
	}
	free(f->names);
	free(f->offs);
	f->magic = 0;
	free(f);
	return 0;
}

EXPORT int dirfd(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_dirfd();
		return real_dirfd(d);
	}
	return f->fd;
}

EXPORT void rewinddir(DIR *d)
{
	struct fake_dir *f = as_fake(d);
	if (!f) {
		resolve_rewinddir();
		real_rewinddir(d);
		return;
	}
	f->pos = 0;
}

EXPORT int scandir(const char *path, struct dirent ***list, int (*filter)(const struct dirent *),
		   int (*compar)(const struct dirent **, const struct dirent **))
{
	if (!is_model_path(path)) {
		resolve_scandir();
		return real_scandir(path, list, filter, compar);
	}
	DIR *d = model_opendir(path);
	if (d == (DIR *)-2) {
		resolve_scandir();
		return real_scandir(path, list, filter, compar);
	}
	if (!d)
		return -1;
	size_t n = 0, cap = 16;
	struct dirent **v = malloc(cap * sizeof(*v));
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (filter && !filter(e))
			continue;
		if (n == cap)
			v = realloc(v, (cap *= 2) * sizeof(*v));
		v[n] = malloc(sizeof(*e));
		memcpy(v[n++], e, sizeof(*e));
	}
	closedir(d);
	if (compar)
		qsort(v, n, sizeof(*v), (int (*)(const void *, const void *))compar);
	*list = v;
	return (int)n;
}
