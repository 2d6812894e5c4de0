/*
 * bucket_memory.c — InMemoryBucket: the core log behind a mutex
 * (locked_log.c), in a ring that doubles when full.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct memory_bucket
{
	pyr_locked_log ll;
	pthread_mutex_t mutex;
} memory_bucket;

#define INITIAL_CAP 64

/*
 * double the ring; called with the mutex held.  realloc keeps the entries
 * where they are (and, for a large ring, remaps its pages rather than
 * copying them); only the part that wrapped round to the start of the old
 * ring moves, to just past its end, where the doubled mask now looks.
 */
static bool
grow(pyr_locked_log *l)
{
	pyr_log    *log = l->log;
	uint32_t	cap = log->cap;
	uint32_t	wrapped;

	if (cap >= UINT32_C(1) << 31)
		return false;
	log = realloc(log, pyr_log_size(cap * 2));
	if (!log)
		return false;
	/* logical entries at e[head .. cap) stay; those at e[0 .. head + len - cap) move */
	wrapped = log->head + log->len > cap ? log->head + log->len - cap : 0;
	memcpy(&log->e[cap], &log->e[0], (size_t) wrapped * sizeof(pyr_entry));
	log->cap = cap * 2;
	l->log = log;
	return true;
}

static int
mem_full(pyr_locked_log *l, int64_t ts, int64_t weight, pyrate_error *err)
{
	if (!grow(l))
		return pyr_fail(err, PYRATE_ENOMEM, "cannot grow the in-memory bucket past %u items",
						l->log->cap);
	pyr_log_push(l->log, ts, weight);
	return PYRATE_OK;
}

static void
mem_close(pyrate_bucket *b)
{
	memory_bucket *m = (memory_bucket *) b;

	pthread_mutex_destroy(&m->mutex);
	free(m->ll.log);
	free(m);
}

static const pyrate_bucket_ops memory_ops = {
	"memory", pyr_locked_put, pyr_locked_waiting, pyr_locked_leak, pyr_locked_flush,
	pyr_locked_count, pyr_locked_peek, pyr_locked_now, NULL, NULL, mem_close
};

pyrate_bucket *
pyrate_memory_bucket_new(const pyrate_rate *rates, int n, pyrate_error *err)
{
	memory_bucket *m = calloc(1, sizeof(memory_bucket));

	if (!m)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (n < 1)
	{
		free(m);
		pyr_fail(err, PYRATE_EINVAL, "an in-memory bucket needs at least one rate");
		return NULL;
	}
	if (pyrate_bucket_init(&m->ll.base, &memory_ops, rates, n, err) != PYRATE_OK)
	{
		free(m);
		return NULL;
	}
	m->ll.log = malloc(pyr_log_size(INITIAL_CAP));
	if (!m->ll.log)
	{
		free(m);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	pyr_log_init(m->ll.log, INITIAL_CAP);
	pthread_mutex_init(&m->mutex, NULL);
	m->ll.mutex = &m->mutex;
	m->ll.full = mem_full;
	return &m->ll.base;
}
