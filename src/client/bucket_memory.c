/*
 * bucket_memory.c — InMemoryBucket: the core log behind a mutex.
 *
 * The log is a ring that doubles when full; the mutex is held only for the
 * O(log n) decision and update.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct memory_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;
	pyr_log    *log;
} memory_bucket;

#define INITIAL_CAP 64

static int64_t
stamp(int64_t ts)
{
	return ts == PYRATE_NOW ? pyr_monotonic_ms() : ts;
}

/*
 * double the ring; called with the mutex held.  realloc keeps the entries
 * where they are (and, for a large ring, remaps its pages rather than
 * copying them); only the part that wrapped round to the start of the old
 * ring moves, to just past its end, where the doubled mask now looks.
 */
static bool
grow(memory_bucket *m)
{
	pyr_log    *log = m->log;
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
	m->log = log;
	return true;
}

static int
mem_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;
	int64_t		ts = stamp(item->timestamp);
	pyr_decision dec;
	pyr_put_result r;

	pthread_mutex_lock(&m->mutex);
	r = pyr_log_put(m->log, CORE_RATES(b), b->nrates, ts, item->weight, &dec);
	if (r == PYR_PUT_FULL)
	{
		if (!grow(m))
		{
			pthread_mutex_unlock(&m->mutex);
			return pyr_fail(err, PYRATE_ENOMEM, "cannot grow the in-memory bucket past %u items",
							m->log->cap);
		}
		pyr_log_push(m->log, ts, item->weight);
	}
	pthread_mutex_unlock(&m->mutex);
	pyr_fill_decision(b, &dec, ts, d);
	return PYRATE_OK;
}

static int
mem_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;
	pyr_view	v;
	pyr_decision dec;

	(void) err;
	pthread_mutex_lock(&m->mutex);
	v = pyr_log_view(m->log);
	pyr_decide(&v, CORE_RATES(b), b->nrates, stamp(item->timestamp), item->weight, &dec);
	pthread_mutex_unlock(&m->mutex);
	*ms = dec.waiting;
	return PYRATE_OK;
}

static int
mem_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;
	int64_t		before = stamp(now) - b->rates[b->nrates - 1].interval;

	(void) err;
	pthread_mutex_lock(&m->mutex);
	*removed = pyr_log_leak(m->log, before);
	pthread_mutex_unlock(&m->mutex);
	return PYRATE_OK;
}

static int
mem_flush(pyrate_bucket *b, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;

	(void) err;
	pthread_mutex_lock(&m->mutex);
	pyr_log_flush(m->log);
	pthread_mutex_unlock(&m->mutex);
	return PYRATE_OK;
}

static int
mem_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;

	(void) err;
	pthread_mutex_lock(&m->mutex);
	*units = pyr_log_count(m->log);
	pthread_mutex_unlock(&m->mutex);
	return PYRATE_OK;
}

static int
mem_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	memory_bucket *m = (memory_bucket *) b;

	(void) err;
	pthread_mutex_lock(&m->mutex);
	*found = pyr_log_peek(m->log, index, ts, weight);
	pthread_mutex_unlock(&m->mutex);
	return PYRATE_OK;
}

static int
mem_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	(void) b;
	(void) err;
	*ms = pyr_monotonic_ms();
	return PYRATE_OK;
}

static void
mem_close(pyrate_bucket *b)
{
	memory_bucket *m = (memory_bucket *) b;

	pthread_mutex_destroy(&m->mutex);
	free(m->log);
	free(m);
}

static const pyrate_bucket_ops memory_ops = {
	"memory", mem_put, mem_waiting, mem_leak, mem_flush, mem_count, mem_peek,
	mem_now, NULL, NULL, mem_close
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
	if (pyrate_bucket_init(&m->base, &memory_ops, rates, n, err) != PYRATE_OK)
	{
		free(m);
		return NULL;
	}
	m->log = malloc(pyr_log_size(INITIAL_CAP));
	if (!m->log)
	{
		free(m);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	pyr_log_init(m->log, INITIAL_CAP);
	pthread_mutex_init(&m->mutex, NULL);
	return &m->base;
}
