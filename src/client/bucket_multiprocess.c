/*
 * bucket_multiprocess.c — MultiprocessBucket: the core log in a fixed
 * shared mapping, guarded by a robust process-shared mutex (the ops are
 * locked_log.c's).
 *
 * The mapping holds a header (mutex, rates, readiness flag) followed by the
 * log.  A mapping cannot grow under processes that have it mapped, so its
 * capacity is fixed; a full log first drops the items outside every window.
 * CLOCK_MONOTONIC is one clock for every process of the host.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MP_MAGIC	0x70797261u	/* "pyra" */
#define MP_VERSION	1u
#define MP_DEFAULT_CAP 65536u
#define MP_HEADER	1024

typedef struct mp_shared
{
	uint32_t	magic;
	uint32_t	version;
	uint32_t	ready;			/* set (release) once the creator initialised it */
	int32_t		nrates;
	pthread_mutex_t mutex;		/* guards log */
	pyr_rate	rates[PYR_MAX_RATES];
} mp_shared;

_Static_assert(sizeof(mp_shared) <= MP_HEADER, "multiprocess header too large");

typedef struct mp_bucket
{
	pyr_locked_log ll;			/* its mutex and log in shared */
	mp_shared  *shared;
	size_t		size;
} mp_bucket;

#define MP_LOG(m) ((pyr_log *) ((char *) (m)->shared + MP_HEADER))

static int
mp_full(pyr_locked_log *l, int64_t ts, int64_t weight, pyrate_error *err)
{
	pyrate_bucket *b = &l->base;

	pyr_log_leak(l->log, ts - b->rates[b->nrates - 1].interval);
	if (!pyr_log_push(l->log, ts, weight))
		return pyr_fail(err, PYRATE_EFULL,
						"multiprocess bucket is full: %u items inside the window; create it with a larger capacity",
						l->log->cap);
	return PYRATE_OK;
}

static void
mp_close(pyrate_bucket *b)
{
	mp_bucket  *m = (mp_bucket *) b;

	munmap(m->shared, m->size);
	free(m);
}

static const pyrate_bucket_ops mp_ops = {
	"multiprocess", pyr_locked_put, pyr_locked_waiting, pyr_locked_leak, pyr_locked_flush,
	pyr_locked_count, pyr_locked_peek, pyr_locked_now, NULL, NULL, mp_close
};

/* the shared mapping is in place: the locked log's mutex and log are in it */
static pyrate_bucket *
mp_ready(mp_bucket *m)
{
	m->ll.mutex = &m->shared->mutex;
	m->ll.log = MP_LOG(m);
	m->ll.full = mp_full;
	return &m->ll.base;
}

static size_t
mp_size(uint32_t cap)
{
	return MP_HEADER + pyr_log_size(cap);
}

/* round the capacity up to the power of two the ring needs */
static bool
mp_capacity(uint32_t want, uint32_t *cap, pyrate_error *err)
{
	uint32_t	c = 16;

	if (want == 0)
		want = MP_DEFAULT_CAP;
	if (want > (UINT32_C(1) << 28))
	{
		pyr_fail(err, PYRATE_EINVAL, "capacity %u is above the largest, %u", want, UINT32_C(1) << 28);
		return false;
	}
	while (c < want)
		c <<= 1;
	*cap = c;
	return true;
}

static void
mp_init_shared(mp_shared *s, const pyrate_bucket *b, uint32_t cap)
{
	pthread_mutexattr_t attr;

	s->magic = MP_MAGIC;
	s->version = MP_VERSION;
	s->nrates = b->nrates;
	memcpy(s->rates, b->rates, b->nrates * sizeof(pyr_rate));
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&s->mutex, &attr);
	pthread_mutexattr_destroy(&attr);
	pyr_log_init((pyr_log *) ((char *) s + MP_HEADER), cap);
	__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
}

static mp_bucket *
mp_alloc(const pyrate_rate *rates, int n, pyrate_error *err)
{
	mp_bucket  *m = calloc(1, sizeof(mp_bucket));

	if (!m)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (pyrate_bucket_init(&m->ll.base, &mp_ops, rates, n, err) != PYRATE_OK)
	{
		free(m);
		return NULL;
	}
	return m;
}

pyrate_bucket *
pyrate_multiprocess_bucket_new(const pyrate_rate *rates, int n, uint32_t capacity, pyrate_error *err)
{
	mp_bucket  *m;
	uint32_t	cap;

	if (n < 1)
	{
		pyr_fail(err, PYRATE_EINVAL, "a multiprocess bucket needs at least one rate");
		return NULL;
	}
	if (!mp_capacity(capacity, &cap, err) || !(m = mp_alloc(rates, n, err)))
		return NULL;
	m->size = mp_size(cap);
	m->shared = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m->shared == MAP_FAILED)
	{
		pyr_fail(err, PYRATE_ESYSTEM, "cannot map %zu bytes of shared memory: %s", m->size, strerror(errno));
		free(m);
		return NULL;
	}
	mp_init_shared(m->shared, &m->ll.base, cap);
	return mp_ready(m);
}

/* attach an existing object: wait for its creator, check its rates */
static bool
mp_attach(mp_bucket *m, int fd, const char *name, pyrate_error *err)
{
	struct stat st;
	int			i;

	for (i = 0; i < 500; i++)
	{
		if (fstat(fd, &st) != 0)
		{
			pyr_fail(err, PYRATE_ESYSTEM, "cannot stat shared memory \"%s\": %s", name, strerror(errno));
			return false;
		}
		if (st.st_size >= MP_HEADER)
			break;
		pyr_sleep_ms(10);
	}
	if (st.st_size < (off_t) mp_size(16))
	{
		pyr_fail(err, PYRATE_ESYSTEM, "shared memory \"%s\" was never initialised", name);
		return false;
	}
	m->size = st.st_size;
	m->shared = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m->shared == MAP_FAILED)
	{
		pyr_fail(err, PYRATE_ESYSTEM, "cannot map shared memory \"%s\": %s", name, strerror(errno));
		return false;
	}
	for (i = 0; i < 500 && !__atomic_load_n(&m->shared->ready, __ATOMIC_ACQUIRE); i++)
		pyr_sleep_ms(10);
	if (!m->shared->ready || m->shared->magic != MP_MAGIC || m->shared->version != MP_VERSION ||
		m->size != mp_size(MP_LOG(m)->cap))
	{
		pyr_fail(err, PYRATE_ESYSTEM, "shared memory \"%s\" is not a pyrate bucket of this version", name);
		munmap(m->shared, m->size);
		return false;
	}
	if (m->ll.base.nrates == 0)
	{
		m->ll.base.nrates = m->shared->nrates;
		memcpy(m->ll.base.rates, m->shared->rates, m->shared->nrates * sizeof(pyr_rate));
	}
	else if (m->ll.base.nrates != m->shared->nrates ||
			 memcmp(m->ll.base.rates, m->shared->rates, m->ll.base.nrates * sizeof(pyr_rate)) != 0)
	{
		pyr_fail(err, PYRATE_EINVAL, "multiprocess bucket \"%s\" exists with other rates; "
				 "pass no rates to use its own, or unlink it", name);
		munmap(m->shared, m->size);
		return false;
	}
	return true;
}

pyrate_bucket *
pyrate_multiprocess_bucket_open(const char *name, const pyrate_rate *rates, int n,
								uint32_t capacity, pyrate_error *err)
{
	mp_bucket  *m;
	uint32_t	cap;
	int			fd;

	if (!name || name[0] != '/' || strchr(name + 1, '/'))
	{
		pyr_fail(err, PYRATE_EINVAL, "a shared memory name is one \"/\" followed by a name without \"/\"");
		return NULL;
	}
	if (!mp_capacity(capacity, &cap, err) || !(m = mp_alloc(rates, n, err)))
		return NULL;
	fd = n > 0 ? shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600) : -1;
	if (fd >= 0)
	{
		m->size = mp_size(cap);
		if (ftruncate(fd, m->size) != 0 ||
			(m->shared = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED)
		{
			pyr_fail(err, PYRATE_ESYSTEM, "cannot size or map shared memory \"%s\": %s", name, strerror(errno));
			close(fd);
			shm_unlink(name);
			free(m);
			return NULL;
		}
		mp_init_shared(m->shared, &m->ll.base, cap);
		close(fd);
		return mp_ready(m);
	}
	if (n > 0 && errno != EEXIST)
	{
		pyr_fail(err, PYRATE_ESYSTEM, "cannot create shared memory \"%s\": %s", name, strerror(errno));
		free(m);
		return NULL;
	}
	fd = shm_open(name, O_RDWR, 0600);
	if (fd < 0)
	{
		pyr_fail(err, errno == ENOENT ? PYRATE_ENOTFOUND : PYRATE_ESYSTEM,
				 "cannot open shared memory \"%s\": %s", name, strerror(errno));
		free(m);
		return NULL;
	}
	if (!mp_attach(m, fd, name, err))
	{
		close(fd);
		free(m);
		return NULL;
	}
	close(fd);
	return mp_ready(m);
}

int
pyrate_multiprocess_unlink(const char *name, pyrate_error *err)
{
	if (!name)
		return pyr_fail(err, PYRATE_EINVAL, "name is required");
	if (shm_unlink(name) != 0)
		return pyr_fail(err, errno == ENOENT ? PYRATE_ENOTFOUND : PYRATE_ESYSTEM,
						"cannot unlink shared memory \"%s\": %s", name, strerror(errno));
	return PYRATE_OK;
}
