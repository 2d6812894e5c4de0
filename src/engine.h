/*
 * engine.h — the bucket interface (the AbstractBucket of C).
 *
 * Every storage engine answers these operations for one bucket; the decision
 * itself (which rate fails, how long to wait, what remains) is always made
 * by pyr_decide in the algorithm module, over the engine's view of the log.
 */
#ifndef PYRATE_ENGINE_H
#define PYRATE_ENGINE_H

#include "pyrate.h"

typedef struct PyrateBucket
{
	Oid			nsp;			/* the extension's schema */
	const char *name;
	PyrateDefinition def;		/* a copy: the routing cache may be rebuilt */
	bool		exact;			/* the decision's remaining must be exact */
} PyrateBucket;

typedef void (*PyrateBucketCallback) (const char *name, int64 count, void *arg);

typedef struct PyrateEngine
{
	const char *name;
	/*
	 * Decide for an item (ts, weight) and, when store is true and the item is
	 * admitted with weight > 0, store it — atomically with the decision.
	 */
	void		(*acquire) (const PyrateBucket *b, int64 ts, int64 weight, bool store,
							pyr_decision *d);
	int64		(*count) (const PyrateBucket *b);
	bool		(*peek) (const PyrateBucket *b, int64 index, int64 *ts, int64 *weight);
	/*
	 * Remove items with ts < before, at most max_items of them when max_items
	 * > 0 (the worker leaks table buckets in bounded batches); returns the
	 * units removed.  An engine whose leak is one O(log n) step whatever it
	 * removes (memory) may ignore max_items.
	 */
	int64		(*leak) (const PyrateBucket *b, int64 before, int64 max_items);
	void		(*flush) (const PyrateBucket *b);
	/* forget the bucket; false when it did not exist */
	bool		(*dispose) (const PyrateBucket *b);
	/* every bucket of this engine in the current database */
	void		(*each_bucket) (Oid nsp, PyrateBucketCallback cb, void *arg);
} PyrateEngine;

extern const PyrateEngine pyrate_table_engine;
extern const PyrateEngine pyrate_memory_engine;

/* Whether the memory engine's shared memory exists (pyrate was preloaded). */
bool		pyrate_memory_available(void);

/* The engine for a storage; ERROR when it is not available here. */
const PyrateEngine *pyrate_engine(PyrateStorage storage);

/* The engines available in this backend (table; memory when preloaded). */
#define PYRATE_MAX_ENGINES 2
int			pyrate_engines(const PyrateEngine **engines);

/* Leak every bucket of every engine at time at; returns units removed. */
int64		pyrate_leak_every_bucket(Oid nsp, int64 at);

/* Limiter.try_acquire (limiter.c); see there. */
typedef struct PyrateAcquireResult
{
	pyr_rate	failing_rate;	/* when rejected */
	int64		retry_after;
} PyrateAcquireResult;

bool		pyrate_limiter_acquire(Oid nsp, const char *name, int64 weight, bool blocking,
								   int64 deadline, PyrateAcquireResult *r);

/* ERROR with SQLSTATE PT429 for a rejection; context is appended to the message. */
void		pyrate_raise_limited(const char *name, const pyr_rate *failing, int64 weight,
								 int64 retry_after, const char *context) pg_attribute_noreturn();

/* Fill b for a name: route it, copy the definition. */
void		pyrate_bucket_init(PyrateBucket *b, Oid nsp, const char *name);

#endif							/* PYRATE_ENGINE_H */
