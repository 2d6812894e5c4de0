/*
 * table_pending.h — permits of table buckets that transactions took and have
 * not committed yet.
 *
 * A put into a table bucket does not write its item when it is admitted: the
 * item waits in the transaction (and its units in shared memory, where every
 * other transaction's check counts them) until the transaction commits,
 * when it is written (engine_table.c).  So no transaction holds a bucket
 * between its statements, and a rollback — of the transaction or to a
 * savepoint — gives the permit back by forgetting it.  Needs
 * shared_preload_libraries; without it, and when the shared table is full,
 * items are written at once as before.
 */
#ifndef PYRATE_TABLE_PENDING_H
#define PYRATE_TABLE_PENDING_H

#include "bucket.h"
#include "storage/lwlock.h"

typedef struct PendingItem
{
	int64		ts;
	int64		weight;
	SubTransactionId subid;		/* the subtransaction that put it */
} PendingItem;

/* This transaction's items waiting for one bucket, in the order put. */
typedef struct PendingBucket
{
	uint64		key;
	PyrateBucket b;				/* a copy, with its own name */
	int			n;
	int			cap;
	PendingItem *items;
	int64		units;
	bool		seen;			/* a listing showed it (engine_table.c) */
} PendingBucket;

extern void pyrate_pending_init(void);
extern void pyrate_pending_shmem_request(void);
extern void pyrate_pending_shmem_startup(void);

/* Whether this backend's puts into table buckets wait for the commit. */
extern bool pyrate_pending_enabled(void);

/* Units other transactions hold pending in the bucket. */
extern int64 pyrate_pending_others(const PyrateBucket *b);

/* This transaction's pending items in the bucket, NULL when none. */
extern PendingBucket *pyrate_pending_own(const PyrateBucket *b);

/* Units of pb's items with ts >= since. */
extern int64 pyrate_pending_own_since(const PendingBucket *pb, int64 since);

/* Keep an admitted item for the commit; false when there is no room. */
extern bool pyrate_pending_add(const PyrateBucket *b, int64 ts, int64 weight);

/*
 * This transaction's pending buckets: in the order first put, or in an
 * order every backend shares (for taking locks that are kept: two
 * transactions never wait for each other's).
 */
extern PendingBucket **pyrate_pending_list(int *n, bool by_key_order);

/*
 * pb's items are rows now, written under the bucket's lock: others count
 * them there, not here.
 */
extern void pyrate_pending_stored(PendingBucket *pb);

/*
 * This transaction writes its items at commit: others may put after them
 * without waiting for it (the top transaction id must be assigned).
 */
extern void pyrate_pending_committing(void);

/*
 * The lightweight lock a bucket's checks and writes at commit take, by the
 * hash of its name (engine_table.c); NULL without shared memory.
 */
extern LWLock *pyrate_pending_bucket_lock(uint64 hash);
extern bool pyrate_pending_is_committing(TransactionId xid);

#endif							/* PYRATE_TABLE_PENDING_H */
