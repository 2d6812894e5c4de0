/*
 * internal.h — what the modules of libpyrate share and users never see.
 */
#ifndef PYRATE_INTERNAL_H
#define PYRATE_INTERNAL_H

#include "pyrate.h"
#include "pyrate_core.h"

#include <pthread.h>
#include <time.h>

/* the public and the core rate are one layout, so arrays convert freely */
_Static_assert(sizeof(pyrate_rate) == sizeof(pyr_rate), "pyrate_rate layout");
_Static_assert(offsetof(pyrate_rate, interval) == offsetof(pyr_rate, interval), "pyrate_rate layout");

#define CORE_RATES(b) ((const pyr_rate *) (b)->rates)

/* fill err (when not NULL; no server fields) and return code */
int			pyr_fail(pyrate_error *err, int code, const char *fmt, ...)
			__attribute__((format(printf, 3, 4)));
/* hand e on to err (when not NULL), server fields and all, as code; returns code */
int			pyr_forward(pyrate_error *err, const pyrate_error *e, int code);
/* copy src (NULL: "") into a field of size bytes, cut at a character boundary */
void		pyr_set_text(char *dst, size_t size, const char *src);

/* an error holding nothing, cheaply: the first byte of each text */
static inline void
pyr_clear_error(pyrate_error *e)
{
	e->code = PYRATE_OK;
	e->message[0] = '\0';
	e->sqlstate[0] = '\0';
	e->detail[0] = '\0';
	e->hint[0] = '\0';
}

/* CLOCK_MONOTONIC in ms (inline: the in-memory put path reads it per call) */
static inline int64_t
pyr_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* the same in microseconds */
static inline int64_t
pyr_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t		pyr_realtime_ms(void);
void		pyr_sleep_ms(int64_t ms);

/* a pyr_decision (from pyr_decide) as the public decision (inline: the put paths) */
static inline void
pyr_fill_decision(const pyrate_bucket *b, const pyr_decision *src, int64_t ts, pyrate_decision *d)
{
	d->acquired = src->admitted;
	if (src->admitted)
		d->failing_rate = (pyrate_rate) {0, 0};
	else
		d->failing_rate = b->rates[src->failing];
	d->retry_after_ms = src->retry_after;
	d->remaining = src->remaining;
	d->timestamp = ts;
}

/*
 * A bucket over the core log behind a mutex (locked_log.c): embed it first
 * and use the pyr_locked_* ops.  mutex and log point where the bucket keeps
 * them; full is called, with the mutex held, when the log is full and the
 * item (ts, weight) admitted: it makes room and pushes the item, or fails.
 */
typedef struct pyr_locked_log pyr_locked_log;
struct pyr_locked_log
{
	pyrate_bucket base;
	pthread_mutex_t *mutex;
	pyr_log    *log;
	int			(*full) (pyr_locked_log *l, int64_t ts, int64_t weight, pyrate_error *err);
};

int			pyr_locked_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err);
int			pyr_locked_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err);
int			pyr_locked_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err);
int			pyr_locked_flush(pyrate_bucket *b, pyrate_error *err);
int			pyr_locked_count(pyrate_bucket *b, int64_t *units, pyrate_error *err);
int			pyr_locked_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight,
							pyrate_error *err);
int			pyr_locked_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err);

/* the Redis bucket's script (bucket_redis.lua, embedded by the Makefile) */
extern const char pyr_redis_script[];
/* a Redis bucket on key sharing like's connections, rates and script (bucket_redis.c) */
pyrate_bucket *pyr_redis_bucket_sibling(pyrate_bucket *like, const char *key, pyrate_error *err);

/* hand f a block that release (free when NULL) frees after f's buckets are closed */
void		pyr_factory_own(pyrate_factory *f, void *ptr, void (*release) (void *));

/* check a weight argument (inline: the put paths; the message is out of line) */
int			pyr_bad_weight(int64_t weight, pyrate_error *err);

static inline int
pyr_check_weight(int64_t weight, pyrate_error *err)
{
	if (__builtin_expect(weight < 0 || weight > PYR_MAX_LIMIT, 0))
		return pyr_bad_weight(weight, err);
	return PYRATE_OK;
}

/*
 * Deadlines for calls that block without one (watchdog.c): arm a watch on
 * the socket before the call, disarm after; past the deadline the socket is
 * shut down, and disarm says so.  Users hold the watchdog while they may
 * arm (a bucket from open to close).
 */
typedef struct pyr_watch
{
	int			fd;
	int64_t		deadline;		/* monotonic ms */
	bool		armed;
	bool		fired;
	struct pyr_watch *prev;
	struct pyr_watch *next;
} pyr_watch;

void		pyr_watchdog_hold(void);
void		pyr_watchdog_release(void);
int			pyr_watch_arm(pyr_watch *w, int fd, int64_t deadline, pyrate_error *err);
bool		pyr_watch_disarm(pyr_watch *w);

#endif							/* PYRATE_INTERNAL_H */
