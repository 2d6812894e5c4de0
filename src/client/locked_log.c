/*
 * locked_log.c — the bucket ops over the core log behind a mutex, shared by
 * the in-memory and the multiprocess bucket.
 *
 * They differ in where the log and its mutex live (the heap; a shared
 * mapping, with a robust process-shared mutex) and in what a full log does
 * (grow; drop the items outside every window), which their full callback
 * says.  The mutex is held only for the O(log n) decision and update.
 * Timestamps are CLOCK_MONOTONIC, one clock for every process of a host.
 */
#include "internal.h"

#include <errno.h>

static int64_t
stamp(int64_t ts)
{
	return ts == PYRATE_NOW ? pyr_monotonic_ms() : ts;
}

/* b's log, locked (a robust mutex is recovered from a process that died holding it) */
static pyr_log *
lock_log(pyrate_bucket *b)
{
	pyr_locked_log *l = (pyr_locked_log *) b;

	if (pthread_mutex_lock(l->mutex) == EOWNERDEAD)
		pthread_mutex_consistent(l->mutex);
	return l->log;
}

static void
unlock_log(pyrate_bucket *b)
{
	pthread_mutex_unlock(((pyr_locked_log *) b)->mutex);
}

int
pyr_locked_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	pyr_locked_log *l = (pyr_locked_log *) b;
	int64_t		ts = stamp(item->timestamp);
	pyr_decision dec;
	int			rc = PYRATE_OK;

	if (pyr_log_put(lock_log(b), CORE_RATES(b), b->nrates, ts, item->weight, true, &dec) == PYR_PUT_FULL)
		rc = l->full(l, ts, item->weight, err);
	unlock_log(b);
	if (rc == PYRATE_OK)
		pyr_fill_decision(b, &dec, ts, d);
	return rc;
}

int
pyr_locked_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	pyr_view	v = pyr_log_view(lock_log(b));
	pyr_decision dec;

	(void) err;
	pyr_decide(&v, CORE_RATES(b), b->nrates, stamp(item->timestamp), item->weight, &dec);
	unlock_log(b);
	*ms = dec.waiting;
	return PYRATE_OK;
}

int
pyr_locked_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	int64_t		before = stamp(now) - b->rates[b->nrates - 1].interval;

	(void) err;
	*removed = pyr_log_leak(lock_log(b), before);
	unlock_log(b);
	return PYRATE_OK;
}

int
pyr_locked_flush(pyrate_bucket *b, pyrate_error *err)
{
	(void) err;
	pyr_log_flush(lock_log(b));
	unlock_log(b);
	return PYRATE_OK;
}

int
pyr_locked_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	(void) err;
	*units = pyr_log_count(lock_log(b));
	unlock_log(b);
	return PYRATE_OK;
}

int
pyr_locked_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight,
				pyrate_error *err)
{
	(void) err;
	*found = pyr_log_peek(lock_log(b), index, ts, weight);
	unlock_log(b);
	return PYRATE_OK;
}

int
pyr_locked_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	(void) b;
	(void) err;
	*ms = pyr_monotonic_ms();
	return PYRATE_OK;
}
