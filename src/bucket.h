/*
 * bucket.h — the bucket interface (the AbstractBucket of C) every storage
 * engine implements.
 *
 * Every engine answers these operations for one bucket; the decision itself
 * (which rate fails, how long to wait, what remains) is always made by
 * pyr_decide in the algorithm module, over the engine's view of the log.
 */
#ifndef PYRATE_BUCKET_H
#define PYRATE_BUCKET_H

#include "routing.h"

#include "storage/itemptr.h"

/*
 * What a listing knew of a bucket: for the table engine, its row id and row
 * version, to find it again without its name (id 0: not known); for the
 * memory engine, its oldest item's time, so a leak pass skips a bucket with
 * nothing old enough to leak (PG_INT64_MIN: not known).  Hints only: the
 * bucket may have changed since (a newer item never makes the oldest older).
 */
typedef struct PyrateListed
{
	int64		id;
	ItemPointerData tid;
	int64		oldest_ts;
} PyrateListed;

/* Whether a listed bucket holding units may have any older than before. */
static inline bool
pyrate_listed_may_leak(const PyrateListed *listed, int64 before)
{
	return listed->oldest_ts < before;
}

/* What a leak is asked to do. */
typedef struct PyrateLeakHow
{
	int64		before;			/* remove the items stamped before this */
	int64		max_items;		/* at most this many; 0: all */
	bool		reclaim;		/* forget a bucket it empties, where it can */
	/*
	 * When the caller leaks again (the worker's next pass), or 0: a table
	 * bucket that will be due by then keeps the due time it has
	 */
	int64		next_leak;
} PyrateLeakHow;

/* How a leak left its bucket. */
typedef enum PyrateLeakEnd
{
	PYRATE_LEAK_HOLDS,			/* units stay, or there was no bucket */
	PYRATE_LEAK_EMPTIED,		/* no unit left: reclaim may forget it */
	PYRATE_LEAK_RECLAIMED		/* forgotten by the leak itself */
} PyrateLeakEnd;

typedef struct PyrateBucket
{
	Oid			nsp;			/* the extension's schema */
	const char *name;
	PyrateDefinition def;		/* a copy: the routing cache may be rebuilt */
	bool		exact;			/* the decision's remaining must be exact */
	PyrateListed listed;		/* a leak of a listed bucket: where it was */
} PyrateBucket;

/* a listing's callback: listed is never NULL */
typedef void (*PyrateBucketCallback) (const char *name, int64 count,
									  const PyrateListed *listed, void *arg);

typedef struct PyrateEngine
{
	const char *name;
	/*
	 * keeps its buckets in WAL-logged tables: a change needs a transaction,
	 * and none can happen during recovery
	 */
	bool		in_tables;
	/*
	 * Decide for an item (ts, weight) and, when store is true and the item is
	 * admitted with weight > 0, store it — atomically with the decision.
	 */
	void		(*acquire) (const PyrateBucket *b, int64 ts, int64 weight, bool store,
							pyr_decision *d);
	int64		(*count) (const PyrateBucket *b);
	/*
	 * Entries stored: one per item, or per coarse entry where slots merged
	 * items (a table bucket's weight-0 tombstone holds no unit: not one).
	 */
	int64		(*entries) (const PyrateBucket *b);
	bool		(*peek) (const PyrateBucket *b, int64 index, int64 *ts, int64 *weight);
	/*
	 * Remove the items stamped before how->before, at most how->max_items
	 * of them when > 0 (the worker leaks table buckets in bounded batches);
	 * returns the units removed.  An engine whose leak is one O(log n) step
	 * whatever it removes (memory) may ignore max_items.  *end says whether
	 * the bucket holds units still, or none, and so nothing stamped at or
	 * after before (reclaim may forget it), or whether the leak, allowed to
	 * reclaim (how->reclaim), forgot it itself: one step where a leak and a
	 * reclaim would each find and lock the bucket (an engine may always
	 * leave that to reclaim).
	 */
	int64		(*leak) (const PyrateBucket *b, const PyrateLeakHow *how, PyrateLeakEnd *end);
	void		(*flush) (const PyrateBucket *b);
	/* forget the bucket; false when it did not exist */
	bool		(*dispose) (const PyrateBucket *b);
	/*
	 * Forget the bucket when it holds no item stamped at or after before:
	 * empty and idle since then (items older than before may go with it:
	 * they are past every window).  Decided under the engine's own lock, so
	 * a put racing it is never lost; false when the bucket stays.
	 */
	bool		(*reclaim) (const PyrateBucket *b, int64 before);
	/* every bucket of this engine in the current database */
	void		(*each_bucket) (Oid nsp, PyrateBucketCallback cb, void *arg);
	/*
	 * at least every bucket that may have something to leak, or be idle
	 * long enough to reclaim, at time at (a leak pass reads only these);
	 * cb's count is 0 for a bucket known to hold no unit, and any number
	 * from 1 up for one that may hold some (its leak says whether it was
	 * emptied)
	 */
	void		(*each_due) (Oid nsp, int64 at, PyrateBucketCallback cb, void *arg);
	/*
	 * the definition of pattern was stored anew: its buckets may have
	 * something to leak sooner than each_due knew (NULL: nothing to do)
	 */
	void		(*redefined) (Oid nsp, const char *pattern);
} PyrateEngine;

#endif							/* PYRATE_BUCKET_H */
