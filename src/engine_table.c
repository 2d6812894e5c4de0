/*
 * engine_table.c — the "table" storage engine: buckets in WAL-logged tables.
 *
 * pyrate_bucket_data(id, name, created) names each bucket;
 * pyrate_item_data(bucket, cum, ts, weight) holds its items, cum being the
 * units put into the bucket up to and including the item; its one index is
 * the primary key (bucket, cum).  Timestamps never decrease along cum, so
 *   units in a window since s = newest.cum - (first item with ts >= s).cum
 *                                + that item's weight
 * and the item holding a unit is the first with cum >= that unit.  The
 * first item at or after a time is found by a search on cum (find_since),
 * from where this backend last found the window to start (per-backend
 * hints, see view_since): usually one short read of the index.  Until 1.2
 * a second index on (bucket, ts, cum) answered it in one probe, at the cost
 * of an index entry per item.
 *
 * With slots (see compact_items), a put now and then merges the items older
 * than the smallest window: the merged items are deleted and a newer item
 * takes their units, keeping its cum and ts; units stay contiguous.
 *
 * Concurrency: with shared memory (table_pending.h) an admitted put's item
 * waits for its transaction's commit, counted by every other check from
 * shared memory meanwhile, and is written at commit (pending_xact_cb).
 * Check-and-insert is serialized by a lightweight lock picked by the name's
 * hash; the name's heavyweight lock (an advisory-class tag, visible in
 * pg_locks) is what is held to the end of a transaction (see bucket_lock).
 * Whoever locks waits first for any other transaction whose item (or new
 * bucket row) is still in progress, unless that transaction is writing its
 * items to commit: a put then goes on top of them (ITEM_STACKED).  Items
 * written at once (no shared memory, pyrate.defer_table_puts off, the
 * shared table full) hold the heavyweight lock to the end of the
 * transaction; past max_locks_per_transaction buckets, the uncommitted items
 * alone hold the buckets.  A rejected attempt releases the lock at once.
 * Decisions read with the dirty snapshot (committed items, the
 * transaction's own, and those being committed), other probes with
 * SnapshotSelf, whatever the isolation level, and no SSI read locks.
 */
#include "engine_table.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "table_pending.h"
#include "tuples.h"

#define BUCKETS_TABLE	"pyrate_bucket_data"
#define ITEMS_TABLE		"pyrate_item_data"
#define BUCKET_ID_SEQ	"pyrate_bucket_id_seq"

/* field4 of the bucket lock tag; advisory locks proper use 1 and 2 */
#define PYRATE_LOCK_CLASS	0x7072
#define PYRATE_LOCK_SEED	UINT64CONST(0x7079726174650001)

enum
{
	Anum_bucket_id = 1,
	Anum_bucket_name,
	Anum_bucket_created,
	Anum_bucket_due,			/* 1.1 */
	Natts_bucket = Anum_bucket_due
};

enum
{
	Anum_item_bucket = 1,
	Anum_item_cum,
	Anum_item_ts,
	Anum_item_weight,
	Natts_item = Anum_item_weight
};

static const PyrateTable buckets_table = {
	BUCKETS_TABLE, Natts_bucket, Anum_bucket_created,
	{{"id", INT8OID}, {"name", TEXTOID}, {"created", TIMESTAMPTZOID}, {"due", INT8OID}}
};
static const PyrateTable items_table = {
	ITEMS_TABLE, Natts_item, Natts_item,
	{{"bucket", INT8OID}, {"cum", INT8OID}, {"ts", INT8OID}, {"weight", INT4OID}}
};

static const AttrNumber bucket_name_key[] = {Anum_bucket_name};
static const AttrNumber item_cum_key[] = {Anum_item_bucket, Anum_item_cum};

/*
 * 1.5 on, the items table packs the bucket and cum into one key, so a row
 * and its index entry are 8 bytes shorter each: pyrate_item_data(key, ts,
 * weight), key = bucket << 40 | cum.  Bucket ids then stay below 2^23 - 1
 * (the id sequence cycles, and a new bucket takes the next id no bucket
 * holds), and a bucket whose cum passes 2^39 has its items renumbered under
 * a new id (renumber_items).
 */
enum
{
	Anum_packed_key = 1,
	Anum_packed_ts,
	Anum_packed_weight,
	Natts_packed = Anum_packed_weight
};

static const PyrateTable packed_items_table = {
	ITEMS_TABLE, Natts_packed, Natts_packed,
	{{"key", INT8OID}, {"ts", INT8OID}, {"weight", INT4OID}}
};
static const AttrNumber item_key_key[] = {Anum_packed_key};

#define ITEM_CUM_BITS		40
#define ITEM_CUM_MAX		((INT64CONST(1) << ITEM_CUM_BITS) - 1)
#define ITEM_CUM_RENUMBER	(INT64CONST(1) << (ITEM_CUM_BITS - 1))
/* so that even (id + 1) << 40 fits in a bigint */
#define ITEM_MAX_BUCKET_ID	((INT64CONST(1) << (63 - ITEM_CUM_BITS)) - 2)

static inline int64
packed_key(int64 id, int64 cum)
{
	return (id << ITEM_CUM_BITS) + cum;
}

#define WINDOW_HINTS 4

typedef struct BucketIdEntry BucketIdEntry;

typedef struct TableBucket
{
	const PyrateBucket *b;
	BucketIdEntry *cached;		/* the cache entry, when the id came from it */
	PyrateRel	items;
	bool		packed;			/* items are (key, ts, weight): 1.5 on */
	Relation	by_cum;
	int64		id;				/* -1: the bucket has no row yet */
	bool		have_newest;
	bool		empty;
	int64		newest_cum;
	int64		newest_ts;
	LOCKTAG		tag;
	bool		locked;
	bool		lock_new;		/* taken now, not held from before */
	LOCKMODE	lock_mode;
	bool		brief;			/* see bucket_lock */
	LWLock	   *lw;				/* held while deciding and writing */
	/*
	 * What probes see: SnapshotSelf, or for a decision the dirty snapshot,
	 * which sees also the items of transactions writing them to commit.
	 */
	Snapshot	snap;
	SnapshotData dirty;
	/* the newest item is another transaction's, still in progress */
	bool		stacked;
	/* the id is of a bucket row another transaction is still creating */
	bool		id_in_progress;
	/* permits not written yet: this transaction's, and others' units */
	PendingBucket *own;
	int64		others;
	int64		now;			/* the decision's time */
	/* the expired newest item a leak left for its reclaim (spare_newest) */
	ItemPointerData spared;
	int32		spared_weight;
	/* the time of the first item delete_items read, PG_INT64_MIN: none */
	int64		first_ts;
	/* the cum of the first item delete_items kept, 0: none */
	int64		kept_cum;
} TableBucket;

/* Bucket locks this transaction keeps to its end (see keep_lock). */
static int	locks_kept = 0;

static uint64 name_hash(const char *name);
static void bucket_unlock(TableBucket *tb);

/*
 * What a caller of lock_bucket waits for, besides the lock.  Every caller
 * waits for a transaction that wrote an item without writing it to commit
 * (its puts hold the bucket until it ends); a transaction writing its items
 * to commit (table_pending.h) is waited for only by LOCK_ALL.
 */
typedef enum LockFor
{
	LOCK_NONE,					/* tb_open: no lock */
	LOCK_CHECK,					/* a decision whose item waits for the commit */
	LOCK_INSERT,				/* a decision whose item is written now */
	LOCK_COMMIT,				/* items written at commit, the lock let go at once */
	LOCK_ALL					/* flush, dispose, reclaim: every put is done */
} LockFor;

/*
 * Lock the bucket's name; with dont_wait, false when another holds it.
 *
 * brief: for a decision whose item waits for the commit, and for writing
 * items at commit — held for a few index reads, never to the end of the
 * transaction.  Check-and-insert is serialized by a lightweight lock picked
 * by the name's hash, which every decision and every write of items takes
 * while it works: a heavyweight lock queues its waiters in turn, each woken
 * by a signal, and a hot key's checks spent most of their time in that
 * queue.  The name's heavyweight lock is what is held to the end of a
 * transaction (an item written at once, a flush, a dispose, a reclaim:
 * EXCLUSIVE); writing items at commit takes it in ROW EXCLUSIVE mode, so it
 * waits for those; a decision whose item waits for the commit takes none:
 * it only reads, and an item written at once and not yet committed makes it
 * wait for that transaction (put_in_progress).
 */
static bool
bucket_lock(TableBucket *tb, bool dont_wait, LockFor lock_for)
{
	uint64		h = name_hash(tb->b->name);
	LWLock	   *lw = lock_for == LOCK_ALL ? NULL : pyrate_pending_bucket_lock(h);

	tb->brief = lw != NULL && (lock_for == LOCK_CHECK || lock_for == LOCK_COMMIT);
	tb->lock_mode = tb->brief ? RowExclusiveLock : ExclusiveLock;
	SET_LOCKTAG_ADVISORY(tb->tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 PYRATE_LOCK_CLASS);
	if (lw == NULL || lock_for != LOCK_CHECK)
	{
		switch (LockAcquire(&tb->tag, tb->lock_mode, false, dont_wait))
		{
			case LOCKACQUIRE_NOT_AVAIL:
				return false;
			case LOCKACQUIRE_OK:
				tb->lock_new = true;
				break;
			default:
				tb->lock_new = false;
				break;
		}
		tb->locked = true;
	}
	if (lw)
	{
		if (dont_wait && !LWLockConditionalAcquire(lw, LW_EXCLUSIVE))
		{
			bucket_unlock(tb);
			return false;
		}
		if (!dont_wait)
			LWLockAcquire(lw, LW_EXCLUSIVE);
		tb->lw = lw;
	}
	return true;
}

static void
bucket_unlock(TableBucket *tb)
{
	if (tb->lw)
		LWLockRelease(tb->lw);
	tb->lw = NULL;
	if (tb->locked)
		LockRelease(&tb->tag, tb->lock_mode, false);
	tb->locked = false;
}

/*
 * Bucket ids by name, cached per backend.  An id changes only when a bucket
 * is flushed, renumbered (1.5 on) or disposed of; those send a relcache
 * invalidation for the bucket table, which empties every backend's cache,
 * and hold the bucket's heavyweight lock until they commit, so a caller that
 * takes that lock and then accepts invalidations never uses a stale id.  A
 * decision whose item waits for the commit takes no heavyweight lock:
 * between such a commit and its invalidation it may read by the old id,
 * whose items are all gone.  No item under a cached id is therefore taken
 * for a stale id and looked up again (load_newest_in): a renumbered bucket
 * still holds its units, under its new id.  Its item is written at commit
 * under the heavyweight lock, by the id then.  Only existing buckets are
 * cached.
 *
 * The invalidation only marks the cache stale; the next bucket_id() empties
 * it.  Invalidations also arrive in the middle of an operation (any relation
 * opened, an overflowed invalidation queue), and emptying the cache there
 * would free the entry the operation holds.
 */
struct BucketIdEntry
{
	uint64		hash;			/* hash key */
	int64		id;
	char	   *name;
	int64		newest_hint;	/* a cum this backend saw as the newest, or 0 */
	/*
	 * Window starts this backend found: for since_hint, the units put before
	 * the first item at or after it (base_hint; -1 for an empty slot).
	 */
	int64		since_hint[WINDOW_HINTS];
	int64		base_hint[WINDOW_HINTS];
};

#define BUCKET_ID_CACHE_MAX 65536

static HTAB *bucket_ids = NULL;
static MemoryContext bucket_ids_cxt = NULL;
static Oid	bucket_table_relid = InvalidOid;
static bool bucket_ids_stale = false;
/* the definitions the hints were found under (see view_since_bound) */
static uint64 bucket_ids_generation = 0;

static void
bucket_ids_reset(void)
{
	if (bucket_ids_cxt)
		MemoryContextReset(bucket_ids_cxt);
	bucket_ids = NULL;
	bucket_ids_stale = false;
}

static void
bucket_ids_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == bucket_table_relid)
		bucket_ids_stale = true;
}

/* A bucket row created by an aborted (sub)transaction never existed. */
static void
bucket_ids_xact_cb(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		bucket_ids_reset();
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
		event != XACT_EVENT_PRE_PREPARE)
		locks_kept = 0;
}

static void
bucket_ids_subxact_cb(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	/* marked only: pyrate's own subtransactions abort in the middle of an operation */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		bucket_ids_stale = true;
}

/*
 * A bucket's id or its cum changed (flush, dispose, reclaim, a leak that
 * emptied it): every backend forgets the ids and hints it cached, this one
 * at once — its own invalidation would reach it only at the next command,
 * and a put later in the same statement must not use the old id.
 */
static void
forget_bucket_ids(Oid buckets_relid)
{
	CacheInvalidateRelcacheByRelid(buckets_relid);
	bucket_ids_stale = true;
}

static uint64
name_hash(const char *name)
{
	return hash_bytes_extended((const unsigned char *) name, strlen(name), PYRATE_LOCK_SEED);
}

static BucketIdEntry *
bucket_ids_find(const char *name, bool *found)
{
	uint64		h = name_hash(name);

	if (bucket_ids == NULL)
	{
		HASHCTL		ctl;

		if (bucket_ids_cxt == NULL)
		{
			bucket_ids_cxt = AllocSetContextCreate(TopMemoryContext, "pyrate bucket ids",
												   ALLOCSET_DEFAULT_SIZES);
			CacheRegisterRelcacheCallback(bucket_ids_relcache_cb, (Datum) 0);
			RegisterXactCallback(bucket_ids_xact_cb, NULL);
			RegisterSubXactCallback(bucket_ids_subxact_cb, NULL);
		}
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(BucketIdEntry);
		ctl.hcxt = bucket_ids_cxt;
		bucket_ids = hash_create("pyrate bucket ids", 1024, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return hash_search(bucket_ids, &h, found ? HASH_ENTER : HASH_FIND, found);
}

/* The bucket's id from its row as snap sees it in rel, -1 when it has none. */
static int64
probe_name(PyrateRel *rel, const char *name, Snapshot snap)
{
	ScanKeyData key;

	pyrate_key_text(&key, 1, name);
	if (pyrate_probe(rel, pyrate_rel_index(rel, 1, bucket_name_key), &key, 1,
					 ForwardScanDirection, snap))
		return DatumGetInt64(rel->slot->tts_values[Anum_bucket_id - 1]);
	return -1;
}

static void
open_buckets(PyrateRel *rel, Oid nsp, LOCKMODE mode)
{
	pyrate_rel_open(rel, nsp, &buckets_table, mode);
	bucket_table_relid = RelationGetRelid(rel->heap);
}

/* The bucket's id from its row as snap sees it, -1 when it has none. */
static int64
lookup_bucket_in(Oid nsp, const char *name, LOCKMODE mode, PyrateRel *keep, Snapshot snap)
{
	PyrateRel	rel;
	int64		id;

	open_buckets(&rel, nsp, mode);
	id = probe_name(&rel, name, snap);
	if (keep)
		*keep = rel;
	else
		pyrate_rel_close(&rel);
	return id;
}

/*
 * The bucket's id from its row: committed, or this transaction's own.  A
 * scan with SnapshotSelf can miss a row that another transaction updates
 * meanwhile (a leak moving its due time): it may check the new version
 * before that commits and the old one after.  A miss is looked up again
 * with a fresh MVCC snapshot, which sees every committed row consistently
 * (and the transaction's own from earlier commands; SnapshotSelf saw those
 * of this one).
 */
static int64
lookup_bucket(Oid nsp, const char *name, LOCKMODE mode, PyrateRel *keep)
{
	PyrateRel	rel;
	int64		id;

	open_buckets(&rel, nsp, mode);
	id = probe_name(&rel, name, SnapshotSelf);
	if (id < 0)
	{
		Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());

		id = probe_name(&rel, name, snap);
		UnregisterSnapshot(snap);
		/* ... but a row this command deleted (dispose) is gone all the same */
		if (id >= 0 && !table_tuple_satisfies_snapshot(rel.heap, rel.slot, SnapshotSelf))
			id = -1;
	}
	if (keep)
		*keep = rel;
	else
		pyrate_rel_close(&rel);
	return id;
}

/* The bucket's id, from the cache when it can be; *entry is its entry. */
static int64
bucket_id(Oid nsp, const char *name, BucketIdEntry **entry)
{
	BucketIdEntry *e;
	bool		found;
	int64		id;

	AcceptInvalidationMessages();
	if (bucket_ids_stale || bucket_ids_generation != pyrate_definitions_generation)
		bucket_ids_reset();
	bucket_ids_generation = pyrate_definitions_generation;
	*entry = NULL;
	e = bucket_ids_find(name, NULL);
	if (e && strcmp(e->name, name) == 0)
	{
		*entry = e;
		return e->id;
	}
	id = lookup_bucket(nsp, name, AccessShareLock, NULL);
	/* absent, a hash collision, or the cache went stale meanwhile: do not cache */
	if (id < 0 || e != NULL || bucket_ids_stale)
		return id;
	if (hash_get_num_entries(bucket_ids) >= BUCKET_ID_CACHE_MAX)
		bucket_ids_reset();
	e = bucket_ids_find(name, &found);
	e->id = id;
	e->name = MemoryContextStrdup(bucket_ids_cxt, name);
	e->newest_hint = 0;
	for (int i = 0; i < WINDOW_HINTS; i++)
		e->base_hint[i] = -1;
	*entry = e;
	return id;
}


static bool lock_bucket(TableBucket *tb, bool dont_wait, LockFor lock_for);

static void
open_items(TableBucket *tb, Oid nsp, LOCKMODE mode)
{
	tb->packed = pyrate_rel_open_either(&tb->items, nsp, &items_table, &packed_items_table,
										mode) == &packed_items_table;
	tb->by_cum = tb->packed ? pyrate_rel_index(&tb->items, 1, item_key_key)
		: pyrate_rel_index(&tb->items, 2, item_cum_key);
}

static bool renumber_items(const PyrateBucket *b);
static int64 count_units(TableBucket *tb);

/*
 * Scan keys for the bucket's items whose cum is ops[i] values[i], for each
 * of the nops given (keys has room for nops + 2); returns how many keys.
 */
static int
item_keys(const TableBucket *tb, ScanKey keys, int nops, const StrategyNumber *ops,
		  const int64 *values)
{
	int			n = 0;

	if (!tb->packed)
	{
		pyrate_key_int8(&keys[n++], 1, BTEqualStrategyNumber, tb->id);
		for (int i = 0; i < nops; i++)
			pyrate_key_int8(&keys[n++], 2, ops[i], values[i]);
		return n;
	}
	pyrate_key_int8(&keys[n++], 1, BTGreaterEqualStrategyNumber, packed_key(tb->id, 0));
	pyrate_key_int8(&keys[n++], 1, BTLessEqualStrategyNumber, packed_key(tb->id, ITEM_CUM_MAX));
	/* a value out of the range gives a key just outside it: same answer */
	for (int i = 0; i < nops; i++)
		pyrate_key_int8(&keys[n++], 1, ops[i],
						packed_key(tb->id, Min(Max(values[i], -1), ITEM_CUM_MAX + 1)));
	return n;
}

/* Keys for every item of the bucket. */
static int
bucket_keys(const TableBucket *tb, ScanKey keys)
{
	return item_keys(tb, keys, 0, NULL, NULL);
}

/* With lock_for, the bucket's lock is taken (see lock_bucket). */
static void
tb_open(TableBucket *tb, const PyrateBucket *b, LOCKMODE mode, LockFor lock_for)
{
	memset(tb, 0, sizeof(*tb));
	tb->b = b;
	tb->snap = SnapshotSelf;
	open_items(tb, b->nsp, mode);
	if (lock_for != LOCK_NONE)
		(void) lock_bucket(tb, false, lock_for);
	else if (b->listed.id > 0)
		tb->id = b->listed.id;	/* a listed bucket: its id as listed */
	else
		tb->id = bucket_id(b->nsp, b->name, &tb->cached);
}

static void
tb_close(TableBucket *tb)
{
	pyrate_rel_close(&tb->items);
}

/* First (dir forward) or last item of the bucket with cum op value. */
static bool
probe_cum_in(TableBucket *tb, ScanDirection dir, StrategyNumber op, int64 value, Snapshot snap)
{
	ScanKeyData keys[3];
	int			n = item_keys(tb, keys, 1, &op, &value);

	return pyrate_probe(&tb->items, tb->by_cum, keys, n, dir, snap);
}

static bool
probe_cum(TableBucket *tb, ScanDirection dir, StrategyNumber op, int64 value)
{
	return probe_cum_in(tb, dir, op, value, tb->snap);
}

/*
 * From 1.5 an item of weight 1, not stacked, stores its weight as NULL: the
 * null bitmap fits in the tuple header's padding, so the row (and its WAL
 * record) is 8 bytes shorter.  Rows written before the update keep a 1.
 */
static inline AttrNumber
weight_att(const TableBucket *tb)
{
	return tb->packed ? Anum_packed_weight : Anum_item_weight;
}

static inline int32
item_raw_weight(const TableBucket *tb, const Datum *values, const bool *nulls)
{
	AttrNumber	att = weight_att(tb);

	return nulls[att - 1] ? 1 : DatumGetInt32(values[att - 1]);
}

/*
 * An item's weight is stored negated when it was put on top of another
 * transaction's item still being committed ("stacked"): if that commit then
 * fails (a crash, an error after the commit began), its units leave a gap
 * below the stacked item, and only there.  Counts keep the gap's units (a
 * failed transaction's permits stay counted until they leak: never too
 * few), and a search for the oldest item looks below a stacked one.
 */
#define ITEM_RAW_WEIGHT(tb) item_raw_weight((tb), (tb)->items.slot->tts_values, (tb)->items.slot->tts_isnull)
#define ITEM_WEIGHT(tb) Abs(ITEM_RAW_WEIGHT(tb))
#define ITEM_STACKED(tb) (ITEM_RAW_WEIGHT(tb) < 0)

/* The cum and ts of the item in the slot. */
static inline int64
item_cum(const TableBucket *tb)
{
	const Datum *v = tb->items.slot->tts_values;

	return tb->packed ? DatumGetInt64(v[Anum_packed_key - 1]) & ITEM_CUM_MAX
		: DatumGetInt64(v[Anum_item_cum - 1]);
}

static inline int64
item_ts(const TableBucket *tb)
{
	return DatumGetInt64(tb->items.slot->tts_values[(tb->packed ? Anum_packed_ts : Anum_item_ts) - 1]);
}

/*
 * The newest item.  A btree scan reads every matching entry of a leaf page
 * before returning the first, so the probe is bounded below by the newest
 * cum this backend saw last time: it then reads only the items put since.
 * Nothing found above the hint means the bucket was emptied meanwhile.
 */
static void
load_newest_in(TableBucket *tb, Snapshot snap)
{
	int64		hint;

	tb->have_newest = true;
	tb->empty = true;
	if (tb->id < 0)
		return;
	hint = tb->cached ? tb->cached->newest_hint : 0;
	if ((hint > 0 && probe_cum_in(tb, BackwardScanDirection, BTGreaterEqualStrategyNumber, hint, snap)) ||
		probe_cum_in(tb, BackwardScanDirection, BTGreaterStrategyNumber, 0, snap))
	{
		tb->empty = false;
		tb->newest_cum = item_cum(tb);
		tb->newest_ts = item_ts(tb);
		if (tb->cached)
			tb->cached->newest_hint = tb->newest_cum;
	}
	else if (tb->cached)
	{
		/*
		 * A bucket row is made with its first item, and a leak leaves a
		 * tombstone: no item under a cached id means the bucket has a new id
		 * since (a flush, a renumbering), committed before its invalidation
		 * reached this backend.  Look it up again.
		 */
		int64		id = lookup_bucket(tb->b->nsp, tb->b->name, AccessShareLock, NULL);

		if (id != tb->id)
		{
			tb->id = id;
			tb->cached = NULL;
			bucket_ids_stale = true;
			load_newest_in(tb, snap);
		}
	}
}

static void
load_newest(TableBucket *tb)
{
	if (!tb->have_newest)
		load_newest_in(tb, tb->snap);
}

/*
 * Another transaction whose item in the bucket, or whose new bucket row, is
 * still in progress, and that lock_for waits for; InvalidTransactionId when
 * there is none.  An item's transaction put it (a leak's tombstone, an
 * update, is not a put: it holds the same units as the version it
 * replaces).  Loads the newest item, with the items of transactions writing
 * them to commit; tb->stacked says the newest is such an item.
 */
static TransactionId
put_in_progress(TableBucket *tb, LockFor lock_for)
{
	SnapshotData dirty;
	TransactionId xid;

	InitDirtySnapshot(dirty);
	dirty.xmin = dirty.xmax = InvalidTransactionId;
	tb->stacked = false;
	tb->id_in_progress = false;
	if (tb->id < 0)
	{
		int64		id;

		tb->have_newest = true;
		tb->empty = true;
		id = lookup_bucket_in(tb->b->nsp, tb->b->name, AccessShareLock, NULL, &dirty);
		if (id < 0)
			return InvalidTransactionId;
		xid = dirty.xmin;
		/*
		 * The bucket is that row's: one a transaction now committing is
		 * creating (a decision may count its items), or one committed since
		 * current_id() looked (a transaction writing its items at commit
		 * holds no lock by then), with the items it came with.
		 */
		if (TransactionIdIsValid(xid))
		{
			if (lock_for != LOCK_CHECK || !pyrate_pending_is_committing(xid))
				return xid;
			tb->id_in_progress = true;
		}
		tb->id = id;
		tb->cached = NULL;
		dirty.xmin = InvalidTransactionId;
	}
	load_newest_in(tb, &dirty);
	xid = dirty.xmin;
	if (tb->empty || !TransactionIdIsValid(xid) ||
		(ExecFetchSlotHeapTuple(tb->items.slot, false, NULL)->t_data->t_infomask & HEAP_UPDATED))
		return InvalidTransactionId;
	if (lock_for != LOCK_ALL && pyrate_pending_is_committing(xid))
	{
		tb->stacked = true;
		return InvalidTransactionId;
	}
	return xid;
}

/*
 * Take the bucket's lock (bucket_lock, as lock_for says) once no other
 * transaction's put in the bucket that lock_for waits for is in progress;
 * false (without the lock) when dont_wait and either is taken.
 *
 * A transaction that wrote an item at once keeps the heavyweight lock to
 * its end (keep_lock), up to max_locks_per_transaction buckets; past that
 * its uncommitted items hold the buckets instead, so one transaction can
 * take permits from any number of keys without a lock-table slot each.
 * Either way the next caller waits for that transaction, and waits for it
 * without the bucket's lock: the transaction may come back to the bucket
 * for more.
 */
static int64 listed_row(TableBucket *tb, PyrateRel *buckets);

/*
 * The bucket's id now: a listed bucket's from the row version its listing
 * read, when that is still the latest and still has the listed id (a leak
 * pass reclaiming many buckets looks none up by name); otherwise by name.
 */
static int64
current_id(TableBucket *tb)
{
	if (tb->b->listed.id > 0)
	{
		PyrateRel	rel;
		int64		id;

		tb->id = tb->b->listed.id;
		id = listed_row(tb, &rel);
		if (id >= 0)
		{
			pyrate_rel_close(&rel);
			tb->cached = NULL;
			return id;
		}
	}
	return bucket_id(tb->b->nsp, tb->b->name, &tb->cached);
}

/*
 * Another transaction's item anywhere in the bucket, still in progress (a
 * transaction writing its items to commit may be below a newer item that
 * committed first); reads every item.
 */
static TransactionId
any_put_in_progress(TableBucket *tb)
{
	ScanKeyData keys[2];
	int			n;
	IndexScanDesc scan;
	SnapshotData dirty;
	TransactionId xid = InvalidTransactionId;

	if (tb->id < 0)
		return InvalidTransactionId;
	InitDirtySnapshot(dirty);
	n = bucket_keys(tb, keys);
	scan = index_beginscan(tb->items.heap, tb->by_cum, &dirty, n, 0);
	index_rescan(scan, keys, n, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, tb->items.slot))
	{
		CHECK_FOR_INTERRUPTS();
		if (TransactionIdIsValid(dirty.xmin))
		{
			xid = dirty.xmin;
			break;
		}
	}
	index_endscan(scan);
	return xid;
}

static bool
lock_bucket(TableBucket *tb, bool dont_wait, LockFor lock_for)
{
	for (;;)
	{
		TransactionId xid;

		if (!bucket_lock(tb, dont_wait, lock_for))
			return false;
		/* ids and items as they are now that the lock is held */
		tb->id = current_id(tb);
		xid = put_in_progress(tb, lock_for);
		if (!TransactionIdIsValid(xid) && lock_for == LOCK_ALL)
			xid = any_put_in_progress(tb);
		if (!TransactionIdIsValid(xid))
			return true;
		bucket_unlock(tb);
		if (dont_wait)
			return false;
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	}
}

/*
 * After a put: keep the lock to the end of the transaction while this
 * transaction keeps fewer than max_locks_per_transaction; past that the item
 * just put holds the bucket (lock_bucket).
 */
static void
keep_lock(TableBucket *tb)
{
	if (tb->lw)
		LWLockRelease(tb->lw);
	tb->lw = NULL;
	if (tb->lock_new && locks_kept < max_locks_per_xact)
		locks_kept++;
	else
		bucket_unlock(tb);
}

/*
 * The window hints.  cum only grows in a bucket (leaks keep its newest item
 * as a weight-0 tombstone, flushes move it to a new id), and, unless its
 * definition has slots, an item's weight only ever drops to 0, so the units
 * put before the first item at or after a time never decrease: a base found
 * for an earlier since is a lower bound of the base for any later since.
 * That bounds the window from above without a probe (since_bound), and lets
 * the probe walk forward from the hint.  A merge (slots) adds older units to
 * a newer item, which can lower a base below a hint: see view_since_bound.
 */
static int
best_hint(const BucketIdEntry *e, int64 since)
{
	int			best = -1;
	int			i;

	for (i = 0; i < WINDOW_HINTS; i++)
		if (e->base_hint[i] >= 0 && e->since_hint[i] <= since &&
			(best < 0 || e->since_hint[i] > e->since_hint[best]))
			best = i;
	return best;
}

static void
keep_hint(BucketIdEntry *e, int64 since, int64 base)
{
	int			slot = 0;
	int			i;

	/* the slot nearest this since, or an empty one */
	for (i = 0; i < WINDOW_HINTS; i++)
	{
		if (e->base_hint[i] < 0)
		{
			slot = i;
			break;
		}
		if (Abs(e->since_hint[i] - since) < Abs(e->since_hint[slot] - since))
			slot = i;
	}
	e->since_hint[slot] = since;
	e->base_hint[slot] = base;
}

/*
 * The first item at or after since, walking (bucket, cum) in chunks from a
 * base: the chunks' upper bounds stop each index read after a few entries,
 * where an open-ended probe reads the rest of a leaf page.
 */
static bool
walk_from_hint(TableBucket *tb, int64 since, int64 base)
{
	static const StrategyNumber ops[] = {BTGreaterEqualStrategyNumber, BTLessEqualStrategyNumber};
	ScanKeyData keys[4];
	IndexScanDesc scan = NULL;
	int64		from = base + 1;
	int64		chunk = 16;
	bool		found = false;

	while (!found && from <= tb->newest_cum)
	{
		int64		values[2] = {from, Min(from + chunk - 1, tb->newest_cum)};
		int			nkeys = item_keys(tb, keys, 2, ops, values);

		if (scan == NULL)
			scan = index_beginscan(tb->items.heap, tb->by_cum, tb->snap, nkeys, 0);
		index_rescan(scan, keys, nkeys, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, tb->items.slot))
		{
			slot_getallattrs(tb->items.slot);
			if (item_ts(tb) >= since)
			{
				found = true;
				break;
			}
		}
		from = values[1] + 1;
		chunk *= 4;
	}
	if (scan)
		index_endscan(scan);
	return found;
}

/*
 * The first item at or after since (in the slot), the newest item being at
 * or after it; lo is a cum whose item, if any, is before since.  "The first
 * item with cum >= c is at or after since" only turns from false to true as
 * c grows, so a search on cum narrows (lo, hi] to 64 units, keeping every
 * item before the answer and after lo in that range; the walk then reads at
 * most 64 items.  The search gallops from lo (a hint is usually just below
 * the answer) before it bisects: O(log d) probes for an answer d units on.
 */
static bool
find_since(TableBucket *tb, int64 since, int64 lo)
{
	int64		hi = tb->newest_cum;
	int64		step = 64;

	while (hi - lo > 64)
	{
		int64		mid = lo + Min(step, (hi - lo) / 2);

		if (probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, mid) &&
			item_ts(tb) < since)
		{
			lo = item_cum(tb);
			step *= 2;
		}
		else
			hi = mid - 1;		/* the answer, or no item, from mid on */
	}
	return walk_from_hint(tb, since, lo);
}

/*
 * The slot holds an item that holds no unit at or below base (its cum less
 * its weight): true, with the slot on the nearest item below it, when it is
 * stacked and such an item exists (the units between are a gap's); else
 * false, the slot as it was.
 */
static bool
item_below_gap(TableBucket *tb)
{
	int64		cum = item_cum(tb);
	int64		base = cum - ITEM_WEIGHT(tb);

	if (!ITEM_STACKED(tb) || base < 1)
		return false;
	if (probe_cum(tb, BackwardScanDirection, BTLessEqualStrategyNumber, base))
		return true;
	(void) probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, cum);
	return false;
}

/*
 * From the newest item down, the first probe that lands on an item before
 * since (*before), else the oldest item; false when the bucket has none.
 * The probes go 64, 128, 256 ... units below the newest: items a leak
 * removed stay in the index as dead entries until VACUUM, all below the
 * oldest item, and a probe from the bottom would read every one of them.
 * A probe that lands below the oldest item reads only those between it and
 * the oldest, fewer than the units stored.  (Units are held contiguously
 * from the oldest item up, so the first item at or after c not holding unit
 * c means nothing holds any unit below it: it is the oldest.)
 */
static bool
down_from_newest(TableBucket *tb, int64 since, bool *before)
{
	int64		step = 64;
	int64		c = Max(tb->newest_cum - step, 1);

	*before = false;
	if (!probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, c))
		return false;
	for (;;)
	{
		int64		cum = item_cum(tb);
		int64		base = cum - ITEM_WEIGHT(tb);

		if (item_ts(tb) < since)
		{
			*before = true;
			return true;
		}
		if (c > 1 && base < c)
		{
			/* it holds unit c: further down */
			step *= 2;
			c = Max(c - step, 1);
			if (!probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, c))
				return false;
			continue;
		}
		/* nothing holds a unit below it: the oldest, unless a gap is below it */
		if (!item_below_gap(tb))
			return true;
		/* an item below the gap: it holds unit c for its own cum */
		c = item_cum(tb);
	}
}

/* Units of the items with ts >= since. */
static int64
view_since(void *ctx, int64 since)
{
	TableBucket *tb = ctx;
	BucketIdEntry *e = tb->cached;
	int			best = e ? best_hint(e, since) : -1;
	bool		found;
	int64		base;

	load_newest(tb);
	if (tb->empty || since > tb->newest_ts)
		return 0;
	if (best >= 0)
		found = find_since(tb, since, e->base_hint[best]);
	else
	{
		bool		before;

		/* else the oldest item, at or after since */
		found = down_from_newest(tb, since, &before);
		if (found && before)
			found = find_since(tb, since, item_cum(tb));
	}
	if (!found)
		return 0;
	base = item_cum(tb) - ITEM_WEIGHT(tb);
	if (e)
		keep_hint(e, since, base);
	return tb->newest_cum - base;
}

/*
 * An upper bound of view_since from the hints alone; -1 when none.  Not for
 * a bucket whose entries merge (slots): a merge moves older units into a
 * newer entry, so a window's base can drop below a hint.  (view_since stays
 * exact from such a hint: the entry that now holds units at or below it is
 * read, and the base comes from that entry.)  Hints found before a
 * definition changed are dropped with the id cache (bucket_id), so none
 * found before a bucket's entries began to merge survives into a time
 * after they stopped.
 */
static int64
view_since_bound(void *ctx, int64 since)
{
	TableBucket *tb = ctx;
	int			best;

	load_newest(tb);
	if (tb->empty || since > tb->newest_ts)
		return 0;
	if (tb->cached == NULL || (best = best_hint(tb->cached, since)) < 0)
		return -1;
	return tb->newest_cum - tb->cached->base_hint[best];
}

static bool
view_peek(void *ctx, int64 index, int64 *ts, int64 *weight)
{
	TableBucket *tb = ctx;
	int64		unit;

	load_newest(tb);
	if (tb->empty || index < 0)
		return false;
	unit = tb->newest_cum - index;
	if (unit < 1 || !probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, unit))
		return false;
	/*
	 * The first item at or past the unit must hold it, else it was leaked —
	 * or it is a unit of a gap below a stacked item with items below the
	 * gap: it is counted, and shown as the item above it.
	 */
	if (item_cum(tb) - ITEM_WEIGHT(tb) >= unit)
	{
		int64		cum = item_cum(tb);

		if (!item_below_gap(tb) ||
			!probe_cum(tb, ForwardScanDirection, BTGreaterEqualStrategyNumber, cum))
			return false;
	}
	*ts = item_ts(tb);
	*weight = ITEM_WEIGHT(tb);
	return true;
}

/*
 * The oldest item, in the slot: found from the newest down (since
 * PG_INT64_MIN: nothing is before it), so past no dead index entry; false
 * when the bucket holds none.
 */
static bool
find_oldest(TableBucket *tb)
{
	bool		before;

	load_newest(tb);
	return !tb->empty && down_from_newest(tb, PG_INT64_MIN, &before);
}

/*
 * An index scan of the bucket's items from its oldest up, with SnapshotSelf
 * (the oldest found from the newest down, past no dead index entry); NULL
 * when the bucket holds none.
 */
static IndexScanDesc
scan_from_oldest(TableBucket *tb)
{
	static const StrategyNumber op = BTGreaterEqualStrategyNumber;
	ScanKeyData keys[3];
	IndexScanDesc scan;
	int64		oldest;
	int			n;

	if (!find_oldest(tb))
		return NULL;
	oldest = item_cum(tb);
	n = item_keys(tb, keys, 1, &op, &oldest);
	scan = index_beginscan(tb->items.heap, tb->by_cum, SnapshotSelf, n, 0);
	index_rescan(scan, keys, n, NULL, 0);
	return scan;
}

/*
 * A new bucket id, buckets being pyrate_bucket_data opened.  With packed
 * items (1.5 on) the sequence cycles below ITEM_MAX_BUCKET_ID, so an id
 * that a bucket row holds (or that one being deleted still holds) is
 * skipped; before, ids never came round.
 */
static int64
new_bucket_id(PyrateRel *buckets, Oid nsp, bool packed)
{
	static const AttrNumber bucket_id_key[] = {Anum_bucket_id};
	Oid			seq = get_relname_relid(BUCKET_ID_SEQ, nsp);
	SnapshotData dirty;
	int64		id;
	int64		first = 0;

	if (!OidIsValid(seq))
		elog(ERROR, "sequence %s is missing from pyrate's schema", BUCKET_ID_SEQ);
	if (!packed)
		return nextval_internal(seq, false);
	InitDirtySnapshot(dirty);
	for (;;)
	{
		ScanKeyData key;

		CHECK_FOR_INTERRUPTS();
		id = nextval_internal(seq, false);
		if (id < 1 || id > ITEM_MAX_BUCKET_ID)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pyrate's bucket id sequence gave %lld, out of the range of table bucket ids",
							(long long) id),
					 errdetail("Table bucket ids go from 1 to %lld.", (long long) ITEM_MAX_BUCKET_ID),
					 errhint("Restore the sequence as the extension made it: ALTER SEQUENCE %s.%s MINVALUE 1 MAXVALUE %lld START WITH 1 RESTART CYCLE;",
							 quote_identifier(get_namespace_name(nsp)), BUCKET_ID_SEQ,
							 (long long) ITEM_MAX_BUCKET_ID)));
		pyrate_key_int8(&key, 1, BTEqualStrategyNumber, id);
		if (!pyrate_probe(buckets, pyrate_rel_index(buckets, 1, bucket_id_key), &key, 1,
						  ForwardScanDirection, &dirty))
			return id;
		/* the sequence came round to the first id tried: every id is held */
		if (first == 0)
			first = id;
		else if (id == first)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("every table bucket id is taken"),
					 errdetail("A bucket holds each id that sequence %s gives (the table engine holds at most %lld buckets).",
							   BUCKET_ID_SEQ, (long long) ITEM_MAX_BUCKET_ID),
					 errhint("Dispose of buckets no longer needed with pyrate_dispose(), or let leaks reclaim idle ones.")));
	}
}

/*
 * Give the bucket's row a new id (*new_id), due at due when that is 0 or
 * more, and make every backend forget the old one: a flush, a renumbering.
 * Returns the id the row had; -1, nothing changed, when it has none.
 */
static int64
move_to_new_id(const PyrateBucket *b, bool packed, int64 due, int64 *new_id)
{
	PyrateRel	buckets;
	int64		old = lookup_bucket(b->nsp, b->name, RowExclusiveLock, &buckets);

	if (old >= 0)
	{
		Datum		values[Natts_bucket];
		bool		nulls[Natts_bucket];

		slot_getallattrs(buckets.slot);
		memcpy(values, buckets.slot->tts_values, sizeof(Datum) * buckets.ncolumns);
		memcpy(nulls, buckets.slot->tts_isnull, sizeof(bool) * buckets.ncolumns);
		*new_id = new_bucket_id(&buckets, b->nsp, packed);
		values[Anum_bucket_id - 1] = Int64GetDatum(*new_id);
		if (due >= 0)
		{
			values[Anum_bucket_due - 1] = Int64GetDatum(due);
			nulls[Anum_bucket_due - 1] = false;
		}
		pyrate_rel_update(&buckets, &buckets.slot->tts_tid,
						  pyrate_rel_form(&buckets, values, nulls));
		forget_bucket_ids(RelationGetRelid(buckets.heap));
	}
	pyrate_rel_close(&buckets);
	return old;
}

/* The bucket's largest interval: its definition's, else what a leak used. */
static int64
largest_interval(const PyrateBucket *b, int64 before)
{
	if (b->def.nrates > 0)
		return b->def.rates[b->def.nrates - 1].interval;
	return Max(pyrate_now_ms() - before, 0);
}

/* due: when the bucket first has something to leak or reclaim (1.1 on) */
static int64
create_bucket(const PyrateBucket *b, int64 due, bool packed)
{
	PyrateRel	rel;
	Datum		values[Natts_bucket];
	bool		nulls[Natts_bucket] = {false};
	int64		id;

	pyrate_rel_open(&rel, b->nsp, &buckets_table, RowExclusiveLock);
	id = new_bucket_id(&rel, b->nsp, packed);
	values[Anum_bucket_id - 1] = Int64GetDatum(id);
	values[Anum_bucket_name - 1] = CStringGetTextDatum(b->name);
	values[Anum_bucket_created - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[Anum_bucket_due - 1] = Int64GetDatum(due);
	pyrate_rel_insert(&rel, pyrate_rel_form(&rel, values, nulls));
	pyrate_rel_close(&rel);
	return id;
}

/* A row of the bucket's items. */
static HeapTuple
form_item(TableBucket *tb, int64 cum, int64 ts, int64 weight, bool stacked)
{
	Datum		values[Natts_item];
	bool		nulls[Natts_item] = {false};
	AttrNumber	w = weight_att(tb);

	if (tb->packed)
	{
		values[Anum_packed_key - 1] = Int64GetDatum(packed_key(tb->id, cum));
		values[Anum_packed_ts - 1] = Int64GetDatum(ts);
	}
	else
	{
		values[Anum_item_bucket - 1] = Int64GetDatum(tb->id);
		values[Anum_item_cum - 1] = Int64GetDatum(cum);
		values[Anum_item_ts - 1] = Int64GetDatum(ts);
	}
	values[w - 1] = Int32GetDatum(stacked && weight > 0 ? (int32) -weight : (int32) weight);
	/* the column is NOT NULL before 1.5 */
	nulls[w - 1] = weight == 1 && !stacked &&
		!TupleDescAttr(RelationGetDescr(tb->items.heap), w - 1)->attnotnull;
	return pyrate_rel_form(&tb->items, values, nulls);
}

static void
insert_item(TableBucket *tb, int64 ts, int64 weight)
{
	int64		cum;

	load_newest(tb);
	if (tb->id < 0)
		tb->id = create_bucket(tb->b, ts + largest_interval(tb->b, 0), tb->packed);
	/* a clock stepping back never breaks the order of the log */
	if (!tb->empty && ts < tb->newest_ts)
		ts = tb->newest_ts;
	/* a bucket is empty only before its first item: leaks leave a tombstone */
	if (!tb->empty &&
		tb->newest_cum > (tb->packed ? ITEM_CUM_MAX : PG_INT64_MAX) - PYR_MAX_WEIGHT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("table bucket \"%s\" has counted every unit it can", tb->b->name),
				 tb->packed ?
				 errhint("A leak (the worker's, or pyrate_leak()) renumbers a bucket whose count passed 2^39 and that holds less than 2^38 units; or flush it with pyrate_flush() to restart its count.") :
				 errhint("Flush the bucket with pyrate_flush() to restart its count.")));
	cum = (tb->empty ? 0 : tb->newest_cum) + weight;
	pyrate_rel_insert(&tb->items, form_item(tb, cum, ts, weight, tb->stacked));
	tb->stacked = false;		/* the newest is this transaction's now */
	tb->empty = false;
	tb->newest_cum = cum;
	tb->newest_ts = ts;
}

/*
 * slots => n: once every so many units (pyr_slots_due), merge the items
 * older than the smallest window as the algorithm module's compaction does,
 * on a log of their (ts, cum): an item merged into a newer one is deleted,
 * and the newer one takes its units.  The caller holds the bucket's lock and
 * has just put the newest item, so no put races this; a leak may (it takes
 * no bucket lock): an item it deleted first is not counted again, and a
 * survivor it deleted held only expired units, as did everything merged
 * into it.
 */
static void
compact_items(TableBucket *tb, int64 weight)
{
	pyr_slots	s;
	IndexScanDesc scan;
	int64		now = tb->newest_ts;
	int64		since;
	int			n = 0;
	int			cap = 64;
	ItemPointerData *tids;
	int32	   *weights;
	bool	   *stacked;
	int64	   *cums;
	pyr_log    *log;
	uint32		kept;
	int64		absorbed = 0;
	bool		absorbed_stacked = false;
	int			i;

	pyr_slots_init(&s, tb->b->def.rates, tb->b->def.nrates, tb->b->def.slots);
	if (!pyr_slots_due(&s, tb->newest_cum - weight, tb->newest_cum))
		return;
	since = now - tb->b->def.rates[0].interval;
	/* items this command put (the one just now, too) can be changed only after this */
	CommandCounterIncrement();
	if ((scan = scan_from_oldest(tb)) == NULL)
		return;
	tids = palloc(sizeof(ItemPointerData) * cap);
	weights = palloc(sizeof(int32) * cap);
	stacked = palloc(sizeof(bool) * cap);
	cums = palloc(sizeof(int64) * cap);
	log = palloc(pyr_log_size(cap));
	pyr_log_init(log, cap);
	while (index_getnext_slot(scan, ForwardScanDirection, tb->items.slot))
	{
		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(tb->items.slot);
		if (item_ts(tb) >= since)
			break;
		if (n == 0)
			log->base = item_cum(tb) - ITEM_WEIGHT(tb);
		if (n == cap)
		{
			pyr_log    *bigger = palloc(pyr_log_size(cap * 2));

			pyr_log_init(bigger, cap * 2);
			pyr_log_move(bigger, log);
			pfree(log);
			log = bigger;
			cap *= 2;
			tids = repalloc(tids, sizeof(ItemPointerData) * cap);
			weights = repalloc(weights, sizeof(int32) * cap);
			stacked = repalloc(stacked, sizeof(bool) * cap);
			cums = repalloc(cums, sizeof(int64) * cap);
		}
		/* the items' own (ts, cum): the log holds them as they are */
		log->e[n].ts = item_ts(tb);
		cums[n] = log->e[n].cum = item_cum(tb);
		tids[n] = tb->items.slot->tts_tid;
		weights[n] = ITEM_WEIGHT(tb);
		stacked[n] = ITEM_STACKED(tb);
		log->len = ++n;
	}
	index_endscan(scan);

	(void) pyr_log_compact(log, &s, now);
	/* the log's entries are the items kept, in order; the rest merge up */
	kept = 0;
	for (i = 0; i < n; i++)
	{
		const pyr_entry *e = &log->e[(log->head + kept) & (log->cap - 1)];

		if (kept >= log->len || e->cum != cums[i])
		{
			if (pyrate_rel_delete(&tb->items, &tids[i]))
			{
				absorbed += weights[i];
				/* a gap below a merged item is below the survivor now */
				absorbed_stacked |= stacked[i];
			}
			continue;
		}
		kept++;
		if (absorbed == 0)
			continue;
		/* a kept entry has its own (ts, cum) still */
		(void) pyrate_rel_update_if_unchanged(&tb->items, &tids[i],
											  form_item(tb, e->cum, e->ts, weights[i] + absorbed,
														stacked[i] || absorbed_stacked));
		absorbed = 0;
		absorbed_stacked = false;
	}
	pfree(log);
	pfree(tids);
	pfree(weights);
	pfree(stacked);
	pfree(cums);
}

/* Table buckets write WAL: not in a read-only transaction, not on a standby. */
static void
prevent_writes(const char *what, const char *name)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s table bucket \"%s\" during recovery", what, name),
				 errhint("Table buckets live on the primary; a standby can use buckets with storage 'memory'.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s table bucket \"%s\" in a read-only transaction", what, name),
				 errhint("Table buckets store their items in tables: use a read-write transaction, or storage 'memory'.")));
}

/*
 * The view of a decision: the items written (with those of transactions
 * writing theirs to commit), this transaction's pending items by their
 * time, and the units other transactions hold pending in every window:
 * their items' places are fixed only when they commit.
 */
static int64
own_total(const TableBucket *tb)
{
	return tb->own ? tb->own->units : 0;
}

static int64
decide_since(void *ctx, int64 since)
{
	TableBucket *tb = ctx;

	return view_since(tb, since) + tb->others +
		(tb->own ? pyrate_pending_own_since(tb->own, since) : 0);
}

static int64
decide_since_bound(void *ctx, int64 since)
{
	TableBucket *tb = ctx;
	int64		bound = view_since_bound(tb, since);

	return bound < 0 ? -1 : bound + tb->others + own_total(tb);
}

/*
 * This transaction's pending items are the newest it knows of; others'
 * pending units leave no window before they commit, shown as one item of
 * now.
 */
static bool
decide_peek(void *ctx, int64 index, int64 *ts, int64 *weight)
{
	TableBucket *tb = ctx;

	if (index < 0)
		return false;
	if (tb->own)
	{
		for (int i = tb->own->n - 1; i >= 0; i--)
		{
			if (index < tb->own->items[i].weight)
			{
				*ts = tb->own->items[i].ts;
				*weight = tb->own->items[i].weight;
				return true;
			}
			index -= tb->own->items[i].weight;
		}
	}
	if (index < tb->others)
	{
		*ts = tb->now;
		*weight = tb->others;
		return true;
	}
	return view_peek(tb, index - tb->others, ts, weight);
}

static void materialize(const PyrateBucket *b);

/* This transaction's pending items of the bucket, NULL when it has none. */
static PendingBucket *
own_items(const PyrateBucket *b)
{
	PendingBucket *pb = pyrate_pending_own(b);

	return pb != NULL && pb->n > 0 ? pb : NULL;
}

/*
 * A flush or a dispose in the transaction that holds pending items of the
 * bucket: they go with the rest, unwritten (a rollback to a savepoint
 * brings them back); true when there were some.
 */
static bool
forget_pending(const PyrateBucket *b)
{
	PendingBucket *pb = own_items(b);

	if (pb == NULL)
		return false;
	pyrate_pending_stored(pb);
	return true;
}
static void pending_xact_cb(XactEvent event, void *arg);

typedef struct MovedItem
{
	ItemPointerData tid;
	int64		cum;
	int64		ts;
	int32		weight;			/* as stored: negative when stacked */
} MovedItem;

/*
 * A packed key holds 40 bits of cum (1.5 on): once the oldest item a leak
 * keeps is past 2^39 units, the leak renumbers the bucket's items under a
 * new id, their cums less the units below the oldest (all but one: cums
 * stay 1 or more).  Writers must
 * not go on under the old id meanwhile, so this takes the lock of a flush,
 * kept to commit: a leak's transaction is short (the worker's), where an
 * acquire's may stay open.  It never waits: a bucket whose lock is taken or
 * with a put in progress is renumbered by a later leak (the margin is
 * 2^39 units).  Every other backend forgets the old id at the commit; one
 * that still reads by it finds no item and looks the id up again (see
 * load_newest_in).  An item is moved only once it is deleted here: another
 * leak may take it first.  false when nothing was renumbered: the bucket
 * busy, holding 2^38 units or more (renumbering would gain little), or
 * renumbered already.
 */
static bool
renumber_items(const PyrateBucket *b)
{
	TableBucket tb;
	IndexScanDesc scan;
	MovedItem  *items;
	int			n = 0;
	int			cap = 64;
	int64		shift;
	int64		old_id;
	int64		new_id;

	/* items this command put can be moved only after this */
	CommandCounterIncrement();
	tb_open(&tb, b, RowExclusiveLock, LOCK_NONE);
	/* a bucket whose lock is taken, or with a put in progress, is in use: never wait */
	if (!lock_bucket(&tb, true, LOCK_ALL))
	{
		tb_close(&tb);
		return false;
	}
	load_newest(&tb);
	if (!tb.packed || tb.id < 0 || tb.empty || tb.newest_cum <= ITEM_CUM_RENUMBER ||
		count_units(&tb) >= ITEM_CUM_RENUMBER / 2 ||
		(scan = scan_from_oldest(&tb)) == NULL)
	{
		bucket_unlock(&tb);
		tb_close(&tb);
		return false;
	}
	/* scan_from_oldest left the oldest item in the slot */
	shift = item_cum(&tb) - ITEM_WEIGHT(&tb) - 1;
	items = palloc(sizeof(MovedItem) * cap);
	while (index_getnext_slot(scan, ForwardScanDirection, tb.items.slot))
	{
		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(tb.items.slot);
		if (n == cap)
		{
			cap *= 2;
			items = repalloc_huge(items, sizeof(MovedItem) * cap);
		}
		items[n].tid = tb.items.slot->tts_tid;
		items[n].cum = item_cum(&tb);
		items[n].ts = item_ts(&tb);
		items[n].weight = ITEM_RAW_WEIGHT(&tb);
		n++;
	}
	index_endscan(scan);
	old_id = tb.id;
	/* the lock held since the items were read: the row still has their id */
	if (move_to_new_id(b, true, -1, &new_id) != old_id)
		elog(ERROR, "table bucket \"%s\" changed its id while its items were renumbered", b->name);
	for (int i = 0; i < n; i++)
	{
		MovedItem	it = items[i];
		bool		moved;

		/* a leak deleted it meanwhile, or made it a tombstone: move what is left */
		while (!(moved = pyrate_rel_delete(&tb.items, &it.tid)) &&
			   probe_cum_in(&tb, ForwardScanDirection, BTEqualStrategyNumber, it.cum, SnapshotSelf))
		{
			it.tid = tb.items.slot->tts_tid;
			it.ts = item_ts(&tb);
			it.weight = ITEM_RAW_WEIGHT(&tb);
		}
		if (!moved)
			continue;
		tb.id = new_id;
		pyrate_rel_insert(&tb.items, form_item(&tb, it.cum - shift, it.ts,
											   Abs(it.weight), it.weight < 0));
		tb.id = old_id;
	}
	pfree(items);
	tb_close(&tb);
	return true;
}

static void
table_acquire(const PyrateBucket *b, int64 ts, int64 weight, bool store, pyr_decision *d)
{
	TableBucket tb;
	pyr_view	view;
	/*
	 * A slotted bucket's later put in the same transaction writes what is
	 * pending first, so its items merge as each is put (as the memory
	 * engine's do).
	 */
	PendingBucket *own = pyrate_pending_own(b);
	bool		defer = store && weight > 0 && pyrate_pending_enabled() &&
		!(b->def.slots > 0 && own != NULL && own->n > 0);

	if (store)
		prevent_writes("take permits from", b->name);
again:
	/* a put of weight 0 stores nothing: a brief lock, as for a put written at commit */
	tb_open(&tb, b, store ? RowExclusiveLock : AccessShareLock,
			!store ? LOCK_NONE :
			defer || (weight == 0 && pyrate_pending_enabled()) ? LOCK_CHECK : LOCK_INSERT);
	InitDirtySnapshot(tb.dirty);
	tb.snap = &tb.dirty;
	tb.own = own;
	tb.others = pyrate_pending_others(b);
	tb.now = ts;
	view.ctx = &tb;
	view.since = decide_since;
	view.peek = decide_peek;
	view.since_bound = b->exact || b->def.slots > 0 ? NULL : decide_since_bound;
	pyr_decide(&view, b->def.rates, b->def.nrates, ts, weight, d);
	if (store && d->admitted && weight > 0)
	{
		/* a clock stepping back never breaks the order (see insert_item) */
		int64		store_ts = ts;

		if (!tb.empty && store_ts < tb.newest_ts)
			store_ts = tb.newest_ts;
		if (tb.own && tb.own->n > 0 && store_ts < tb.own->items[tb.own->n - 1].ts)
			store_ts = tb.own->items[tb.own->n - 1].ts;
		if (defer && pyrate_pending_add(b, store_ts, weight))
		{
			static bool registered = false;

			if (!registered)
				RegisterXactCallback(pending_xact_cb, NULL);
			registered = true;
			/* written at commit: nothing holds the bucket till then */
			bucket_unlock(&tb);
			tb_close(&tb);
			return;
		}
		if (tb.id_in_progress)
		{
			/* written now, under a bucket row that is still being created: decide again */
			bucket_unlock(&tb);
			tb_close(&tb);
			defer = false;
			goto again;
		}
		/* this transaction's pending items go first: they were admitted first */
		if (tb.own && tb.own->n > 0)
		{
			bucket_unlock(&tb);
			tb_close(&tb);
			materialize(b);
			defer = false;
			goto again;
		}
		insert_item(&tb, ts, weight);
		if (b->def.slots > 0)
			compact_items(&tb, weight);
		/* a brief lock is never kept: the uncommitted item holds the bucket */
		if (tb.brief)
			bucket_unlock(&tb);
		else
			keep_lock(&tb);
	}
	else
		bucket_unlock(&tb);
	tb_close(&tb);
}

/* Units stored and the item bounds, for count. */
static int64
count_units(TableBucket *tb)
{
	int64		oldest_base;

	if (!find_oldest(tb))
		return 0;
	oldest_base = item_cum(tb) - ITEM_WEIGHT(tb);
	return tb->newest_cum - oldest_base;
}

/* Counts, entries and peeks see this transaction's pending items too. */
static int64
table_count(const PyrateBucket *b)
{
	TableBucket tb;
	int64		n;

	tb_open(&tb, b, AccessShareLock, LOCK_NONE);
	tb.own = pyrate_pending_own(b);
	n = count_units(&tb) + own_total(&tb);
	tb_close(&tb);
	return n;
}

/* Items holding units, read from the oldest up. */
static int64
table_entries(const PyrateBucket *b)
{
	TableBucket tb;
	IndexScanDesc scan;
	PendingBucket *own = pyrate_pending_own(b);
	int64		n = own ? own->n : 0;

	tb_open(&tb, b, AccessShareLock, LOCK_NONE);
	if ((scan = scan_from_oldest(&tb)) != NULL)
	{
		while (index_getnext_slot(scan, ForwardScanDirection, tb.items.slot))
		{
			CHECK_FOR_INTERRUPTS();
			slot_getallattrs(tb.items.slot);
			n += ITEM_WEIGHT(&tb) > 0;
		}
		index_endscan(scan);
	}
	tb_close(&tb);
	return n;
}

static bool
table_peek(const PyrateBucket *b, int64 index, int64 *ts, int64 *weight)
{
	TableBucket tb;
	bool		found;

	tb_open(&tb, b, AccessShareLock, LOCK_NONE);
	tb.own = pyrate_pending_own(b);
	found = decide_peek(&tb, index, ts, weight);
	tb_close(&tb);
	return found;
}

typedef enum TombstoneResult
{
	TOMBSTONE_MADE,
	TOMBSTONE_RACED,			/* another transaction changed it first */
	TOMBSTONE_FAILED			/* no room for the new row version */
} TombstoneResult;

/*
 * Replace the item at tid by tup, in a subtransaction: on a full disk the
 * new row version cannot be written, and the leak must still free what it
 * can.
 */
static TombstoneResult
make_tombstone(TableBucket *tb, ItemPointer tid, HeapTuple tup)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile TombstoneResult result = TOMBSTONE_FAILED;
	Buffer		buf;
	bool		room;

	/*
	 * The usual case needs no subtransaction (a leak pass over many buckets
	 * must not take a subtransaction id for each): when the item's page has
	 * room, the new version normally stays there and the disk is not needed.
	 * The free space is read under the page's share lock; another backend
	 * may still fill the page before heap_update locks it, and then the new
	 * version goes to another page.  Only if that also needs a new page on a
	 * full disk does this leak fail with an error (the next pass retries);
	 * a page seen without room takes the careful path below.
	 */
	buf = ReadBuffer(tb->items.heap, ItemPointerGetBlockNumber(tid));
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	room = PageGetHeapFreeSpace(BufferGetPage(buf)) >= MAXALIGN(tup->t_len) + sizeof(ItemIdData);
	UnlockReleaseBuffer(buf);
	if (room)
		return pyrate_rel_update_if_unchanged(&tb->items, tid, tup)
			? TOMBSTONE_MADE : TOMBSTONE_RACED;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = pyrate_rel_update_if_unchanged(&tb->items, tid, tup)
			? TOMBSTONE_MADE : TOMBSTONE_RACED;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		/* only a lack of space is survivable here */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_INSUFFICIENT_RESOURCES)
			ReThrowError(edata);
		ereport(DEBUG1,
				(errmsg("pyrate: bucket \"%s\" emptied by a leak: %s", tb->b->name, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return result;
}

/*
 * Delete the bucket's items with ts < before (all of them when before is
 * PG_INT64_MAX), at most max_items when > 0; returns the units removed.
 * Items another transaction deleted first are skipped: only the deleter
 * counts them.  A leak keeps the bucket's newest item as a weight-0
 * tombstone, which holds no unit, so cum never starts over in a bucket: the
 * window hints of view_since rely on it.  (Where the disk has no room for
 * the tombstone, the item is deleted and every backend drops its hints.)
 *
 * The scan runs one item behind: an item is deleted once the scan has read
 * another after it, and the last one it reads, with nothing after it, is
 * the newest.  *emptied says the leak reached the newest item (made it the
 * tombstone, or found it one already): the bucket holds no unit.  With
 * spare_newest an expired newest item is left as it is (the caller means to
 * drop the bucket whole: reclaim_spared) and its units are not among those
 * returned.
 */
static int64
delete_items(TableBucket *tb, int64 before, int64 max_items, bool spare_newest,
			 bool *emptied)
{
	ScanKeyData keys[2];
	int			nkeys;
	IndexScanDesc scan;
	Snapshot	snap;
	int64		removed = 0;
	int64		n = 0;
	bool		keep_newest = before != PG_INT64_MAX;
	bool		forget = false;
	bool		pending = false;	/* an item read and not yet removed */
	bool		first = true;	/* nothing read yet */
	bool		more;
	ItemPointerData pending_tid;
	Datum		values[Natts_item];
	bool		nulls[Natts_item];

	*emptied = false;
	ItemPointerSetInvalid(&tb->spared);
	tb->first_ts = PG_INT64_MIN;
	tb->kept_cum = 0;
	if (tb->id < 0)
		return 0;
	nkeys = bucket_keys(tb, keys);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = index_beginscan(tb->items.heap, tb->by_cum, snap, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		more = index_getnext_slot(scan, ForwardScanDirection, tb->items.slot);
		/* in cum order, hence in time order: the rest are newer */
		if (more)
		{
			slot_getallattrs(tb->items.slot);
			if (first)
				tb->first_ts = item_ts(tb);
			if (item_ts(tb) >= before)
			{
				tb->kept_cum = item_cum(tb);
				break;
			}
		}
		/* the item read before: newer ones follow it, or none does */
		if (pending && (more || !keep_newest))
		{
			if (pyrate_rel_delete(&tb->items, &pending_tid))
			{
				removed += Abs(item_raw_weight(tb, values, nulls));
				n++;
			}
			pending = false;
		}
		if (!more || (max_items > 0 && n >= max_items))
		{
			/* a bucket without a single item holds nothing either */
			if (!more && keep_newest && first)
				*emptied = true;
			break;
		}
		first = false;
		pending = true;
		pending_tid = tb->items.slot->tts_tid;
		memcpy(values, tb->items.slot->tts_values, sizeof(Datum) * tb->items.ncolumns);
		memcpy(nulls, tb->items.slot->tts_isnull, sizeof(bool) * tb->items.ncolumns);
	}
	if (pending && more)
	{
		/* the next item is newer: this one is not the newest */
		if (pyrate_rel_delete(&tb->items, &pending_tid))
		{
			removed += Abs(item_raw_weight(tb, values, nulls));
			n++;
		}
	}
	else if (pending && !more)
	{
		/* the newest, expired: it becomes the tombstone */
		int32		w = Abs(item_raw_weight(tb, values, nulls));

		*emptied = true;
		if (spare_newest)
		{
			tb->spared = pending_tid;
			tb->spared_weight = w;
		}
		else if (w > 0)
		{
			values[weight_att(tb) - 1] = Int32GetDatum(0);
			nulls[weight_att(tb) - 1] = false;
			switch (make_tombstone(tb, &pending_tid, pyrate_rel_form(&tb->items, values, nulls)))
			{
				case TOMBSTONE_MADE:
					removed += w;
					break;
				case TOMBSTONE_RACED:
					break;
				case TOMBSTONE_FAILED:
					/* no room for the new row version: delete it after all */
					if (pyrate_rel_delete(&tb->items, &pending_tid))
					{
						removed += w;
						forget = true;
					}
					break;
			}
		}
	}
	index_endscan(scan);
	UnregisterSnapshot(snap);

	/*
	 * The bucket's cum starts over from its next item: make every backend
	 * forget its hints for it (they forget all buckets' ids and hints).
	 */
	if (forget)
		forget_bucket_ids(get_relname_relid(BUCKETS_TABLE, tb->b->nsp));
	return removed;
}

/*
 * A listed bucket's row, read by the row version the listing saw when that
 * is still the latest and still has the listed id (a leak moving the due
 * time, a flush or a dispose makes a newer one; a vacuum may give the slot
 * to another row): its id, with the buckets table opened in *buckets; -1,
 * and nothing opened, when the name must be looked up instead.
 */
static int64
listed_row(TableBucket *tb, PyrateRel *buckets)
{
	Snapshot	snap;
	int64		id = -1;

	if (tb->b->listed.id <= 0 || tb->b->listed.id != tb->id ||
		!ItemPointerIsValid(&tb->b->listed.tid))
		return -1;
	pyrate_rel_open(buckets, tb->b->nsp, &buckets_table, RowExclusiveLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (table_tuple_fetch_row_version(buckets->heap, (ItemPointer) &tb->b->listed.tid, snap,
									  buckets->slot))
	{
		slot_getallattrs(buckets->slot);
		id = DatumGetInt64(buckets->slot->tts_values[Anum_bucket_id - 1]);
	}
	UnregisterSnapshot(snap);
	if (id != tb->b->listed.id)
	{
		pyrate_rel_close(buckets);
		return -1;
	}
	return id;
}

/*
 * The bucket's row, with the buckets table opened in *buckets (always; the
 * caller closes it): by the listed row version when it can, else by name.
 * Its id, -1 when it has no row.
 */
static int64
bucket_row(TableBucket *tb, PyrateRel *buckets)
{
	int64		id = listed_row(tb, buckets);

	if (id < 0)
		id = lookup_bucket(tb->b->nsp, tb->b->name, RowExclusiveLock, buckets);
	return id;
}

/*
 * After a leak: the bucket is next due when its oldest item (the tombstone,
 * when that is all it holds) leaves the largest window, or, holding
 * nothing, one largest interval from now.  Written only when it changed; a
 * concurrent leak that wrote it first wins.
 */
static void
update_due(TableBucket *tb, int64 before, int64 next_leak, int64 oldest_ts)
{
	PyrateRel	buckets;
	ScanKeyData keys[2];
	int64		interval = largest_interval(tb->b, before);
	int64		at = before + interval; /* the leak's time */
	int64		due;
	int64		id;

	/* the oldest item's time, known to a leak that removed nothing */
	if (oldest_ts != PG_INT64_MIN)
		due = oldest_ts + interval;
	else if (pyrate_probe(&tb->items, tb->by_cum, keys, bucket_keys(tb, keys),
						  ForwardScanDirection, SnapshotSelf))
		due = item_ts(tb) + interval;
	else
		due = pyrate_now_ms() + interval;
	id = bucket_row(tb, &buckets);
	/* the id the items were read by: a flush or dispose meanwhile left it alone */
	if (id == tb->id && buckets.ncolumns >= Anum_bucket_due)
	{
		bool		was_null;
		int64		was;

		slot_getallattrs(buckets.slot);
		was_null = buckets.slot->tts_isnull[Anum_bucket_due - 1];
		was = was_null ? 0 : DatumGetInt64(buckets.slot->tts_values[Anum_bucket_due - 1]);

		/*
		 * Due then and due by the caller's next leak: that leak lists it
		 * either way, and the new version of the row (an entry in each of
		 * its indexes) buys nothing.  That is the case after every leak that
		 * empties a bucket (its tombstone left the largest window already),
		 * and for an item that leaves it before the worker's next pass.
		 */
		if (!was_null && was <= at && due <= Max(at, next_leak))
			;
		else if (was_null || was != due)
		{
			Datum		values[Natts_bucket];
			bool		nulls[Natts_bucket];

			memcpy(values, buckets.slot->tts_values, sizeof(Datum) * buckets.ncolumns);
			memcpy(nulls, buckets.slot->tts_isnull, sizeof(bool) * buckets.ncolumns);
			values[Anum_bucket_due - 1] = Int64GetDatum(due);
			nulls[Anum_bucket_due - 1] = false;
			(void) pyrate_rel_update_if_unchanged(&buckets, &buckets.slot->tts_tid,
												  pyrate_rel_form(&buckets, values, nulls));
		}
	}
	pyrate_rel_close(&buckets);
}

static int64 listed_row(TableBucket *tb, PyrateRel *buckets);

/*
 * Whether the bucket's items, read with a dirty snapshot, are exactly the
 * one at tid (none at all for an invalid tid), that one committed: no other
 * transaction's item, committed or not, and no deletion in progress.
 */
static bool
only_item_is(TableBucket *tb, ItemPointer tid)
{
	ScanKeyData keys[2];
	int			n;
	IndexScanDesc scan;
	SnapshotData dirty;
	int			seen = 0;
	bool		only = true;

	InitDirtySnapshot(dirty);
	n = bucket_keys(tb, keys);
	scan = index_beginscan(tb->items.heap, tb->by_cum, &dirty, n, 0);
	index_rescan(scan, keys, n, NULL, 0);
	while (only && index_getnext_slot(scan, BackwardScanDirection, tb->items.slot))
	{
		CHECK_FOR_INTERRUPTS();
		seen++;
		only = seen == 1 && ItemPointerIsValid(tid) &&
			ItemPointerEquals(&tb->items.slot->tts_tid, tid) &&
			!TransactionIdIsValid(dirty.xmin) && !TransactionIdIsValid(dirty.xmax);
	}
	index_endscan(scan);
	return only;
}

/*
 * The leak that left the bucket's expired newest item (tb->spared) drops the
 * bucket in one step: with its lock (never waited for), its row still the
 * version listed and that item still all it holds, it deletes both.  The
 * lock is kept to commit, as a reclaim's.  *units: the item's units.  false
 * (nothing locked) when the bucket is busy or changed; the item may then be
 * gone already, and its units counted.
 */
static bool
reclaim_spared(TableBucket *tb, int64 *units)
{
	PyrateRel	buckets;
	bool		gone = false;

	*units = 0;
	if (own_items(tb->b) != NULL || tb->b->listed.id != tb->id ||
		!bucket_lock(tb, true, LOCK_ALL))
		return false;
	if (listed_row(tb, &buckets) < 0)
	{
		bucket_unlock(tb);
		return false;
	}
	if (only_item_is(tb, &tb->spared))
	{
		bool		item_gone = false;

		if (ItemPointerIsValid(&tb->spared) && pyrate_rel_delete(&tb->items, &tb->spared))
		{
			*units = tb->spared_weight;
			item_gone = true;
		}
		gone = pyrate_rel_delete(&buckets, &buckets.slot->tts_tid);

		/*
		 * Gone, or (its row changed meanwhile by a leak's new due time)
		 * left without its newest item, so its cum starts over: either way
		 * every backend forgets the ids and hints it cached.
		 */
		if (gone || item_gone)
			forget_bucket_ids(RelationGetRelid(buckets.heap));
	}
	pyrate_rel_close(&buckets);
	if (!gone)
		bucket_unlock(tb);
	return gone;
}

static int64
table_leak(const PyrateBucket *b, const PyrateLeakHow *how, PyrateLeakEnd *end)
{
	int64		before = how->before;
	int64		max_items = how->max_items;
	bool		reclaim = how->reclaim;
	TableBucket tb;
	PendingBucket *own;
	int64		removed;
	int64		units;
	bool		emptied;
	bool		renumber;

	prevent_writes("leak", b->name);
	/* this transaction's items the leak would remove are written first */
	if ((own = own_items(b)) != NULL && own->items[0].ts < before)
		materialize(b);
	tb_open(&tb, b, RowExclusiveLock, LOCK_NONE);

	/*
	 * A leak allowed to reclaim leaves an expired newest item alone and then
	 * drops the bucket whole: no tombstone written only for the reclaim to
	 * delete it, and the bucket found and locked once.  Where the bucket is
	 * busy (its lock taken, a put in progress, a new item since the scan),
	 * the leak reads the bucket again and ends as any other (the items it
	 * deleted already, in this command, it passes by).
	 */
	removed = delete_items(&tb, before, max_items, reclaim, &emptied);
	if (reclaim && emptied)
	{
		bool		gone = reclaim_spared(&tb, &units);

		removed += units;
		if (gone)
		{
			*end = PYRATE_LEAK_RECLAIMED;
			tb_close(&tb);
			return removed;
		}
		removed += delete_items(&tb, before, max_items, false, &emptied);
	}

	/*
	 * A leak that removed items and left the newest holds units still: the
	 * bucket is in use, and its due time stays where it was (past), so the
	 * next pass comes back to it.  Moving due costs a new version of the
	 * bucket's row and an entry in each of its indexes; it is written only
	 * when a leak finds nothing to remove (the next thing to remove is then
	 * some time off), or when it leaves nothing but the tombstone of a bucket
	 * no pass listed (a pass lists what is due; a bucket emptied just now is
	 * due to be reclaimed, and stays listed).
	 */
	if (tb.id >= 0 && (emptied ? b->listed.id != tb.id : removed == 0))
		update_due(&tb, before, how->next_leak, removed == 0 && !emptied ? tb.first_ts : PG_INT64_MIN);
	*end = tb.id >= 0 && emptied ? PYRATE_LEAK_EMPTIED : PYRATE_LEAK_HOLDS;
	/*
	 * The oldest item it keeps past 2^39 units: the leak renumbers the
	 * bucket (see renumber_items).  (Read as the leak went: no probe more.)
	 */
	renumber = tb.packed && tb.kept_cum > ITEM_CUM_RENUMBER;
	tb_close(&tb);
	if (renumber)
		(void) renumber_items(b);
	return removed;
}

static void
table_flush(const PyrateBucket *b)
{
	TableBucket tb;
	bool		emptied;
	int64		new_id;

	prevent_writes("flush", b->name);
	forget_pending(b);
	tb_open(&tb, b, RowExclusiveLock, LOCK_ALL);
	(void) delete_items(&tb, PG_INT64_MAX, 0, false, &emptied);

	/*
	 * Give the bucket a new id: its items start in a fresh range of the
	 * indexes, away from the dead entries of the flushed ones.  Nothing to
	 * leak: it is due to be reclaimed if it stays idle.
	 */
	(void) move_to_new_id(b, tb.packed, pyrate_now_ms() + largest_interval(b, 0), &new_id);
	tb_close(&tb);
}

/*
 * Forget the bucket of tb, opened with its lock: its items, its row, and
 * every backend's cached id.  The lock is kept to commit.  false when the
 * row was gone already.
 */
static bool
drop_bucket(TableBucket *tb)
{
	PyrateRel	buckets;
	bool		gone;
	bool		emptied;
	int64		id;

	(void) delete_items(tb, PG_INT64_MAX, 0, false, &emptied);
	id = bucket_row(tb, &buckets);
	gone = id >= 0 && pyrate_rel_delete(&buckets, &buckets.slot->tts_tid);
	if (gone)
		forget_bucket_ids(RelationGetRelid(buckets.heap));
	pyrate_rel_close(&buckets);
	return gone;
}

static bool
table_dispose(const PyrateBucket *b)
{
	TableBucket tb;
	bool		existed;
	bool		had_pending;
	BucketIdEntry *cached;

	/*
	 * Nothing to do, and no lock to keep, for a name the table engine never
	 * stored: disposing of memory buckets works in read-only transactions and
	 * on standbys, and of many at once without a lock per name.
	 */
	had_pending = forget_pending(b);
	if (bucket_id(b->nsp, b->name, &cached) < 0)
		return had_pending;
	prevent_writes("dispose of", b->name);
	tb_open(&tb, b, RowExclusiveLock, LOCK_ALL);
	existed = drop_bucket(&tb);
	tb_close(&tb);
	return existed;
}

static bool
table_reclaim(const PyrateBucket *b, int64 before)
{
	TableBucket tb;
	bool		gone;
	BucketIdEntry *cached;

	/* a listed bucket existed a moment ago: lock_bucket finds what is left */
	if (b->listed.id <= 0 && bucket_id(b->nsp, b->name, &cached) < 0)
		return false;
	prevent_writes("reclaim", b->name);
	/* a bucket this transaction holds permits of is in use */
	if (own_items(b) != NULL)
		return false;
	tb_open(&tb, b, RowExclusiveLock, LOCK_NONE);
	/* a bucket whose lock is taken, or with a put in progress, is in use: never wait */
	if (!lock_bucket(&tb, true, LOCK_ALL))
	{
		tb_close(&tb);
		return false;
	}
	if (tb.id < 0 || (!tb.empty && tb.newest_ts >= before))
	{
		/* gone meanwhile, or a put came first: nothing to do, nothing changed */
		bucket_unlock(&tb);
		tb_close(&tb);
		return false;
	}
	gone = drop_bucket(&tb);
	tb_close(&tb);
	return gone;
}

/*
 * Listing buckets: the items table is opened once for all of them, and each
 * bucket's items are read by the id in its row (at_listed), never looked up
 * again by name.
 */
static void
open_listed(TableBucket *tb, PyrateBucket *b, Oid nsp)
{
	memset(b, 0, sizeof(*b));
	b->nsp = nsp;
	memset(tb, 0, sizeof(*tb));
	tb->b = b;
	tb->snap = SnapshotSelf;
	open_items(tb, nsp, AccessShareLock);
}

static void
at_listed(TableBucket *tb, PyrateRel *buckets, PyrateListed *listed)
{
	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(buckets->slot);
	tb->id = DatumGetInt64(buckets->slot->tts_values[Anum_bucket_id - 1]);
	tb->have_newest = false;
	listed->id = tb->id;
	listed->tid = buckets->slot->tts_tid;
	listed->oldest_ts = PG_INT64_MIN;
}

static void
table_foreach(Oid nsp, PyrateBucketCallback cb, void *arg)
{
	PyrateRel	buckets;
	Snapshot	snap;
	TableScanDesc scan;
	PyrateBucket b;
	TableBucket tb;
	PyrateListed listed;
	PendingBucket **own;
	int			nown;

	/* with this transaction's pending items, and its buckets that have only those */
	own = pyrate_pending_list(&nown, false);
	for (int i = 0; i < nown; i++)
		own[i]->seen = false;
	pyrate_rel_open(&buckets, nsp, &buckets_table, AccessShareLock);
	open_listed(&tb, &b, nsp);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(buckets.heap, snap, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, buckets.slot))
	{
		char	   *name;
		int64		count;
		PendingBucket *pb;

		at_listed(&tb, &buckets, &listed);
		name = TextDatumGetCString(buckets.slot->tts_values[Anum_bucket_name - 1]);
		count = count_units(&tb);
		b.name = name;
		if (nown > 0 && (pb = pyrate_pending_own(&b)) != NULL)
		{
			count += pb->units;
			pb->seen = true;
		}
		cb(name, count, &listed, arg);
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	tb_close(&tb);
	pyrate_rel_close(&buckets);
	memset(&listed, 0, sizeof(listed));
	listed.oldest_ts = PG_INT64_MIN;
	for (int i = 0; i < nown; i++)
		if (!own[i]->seen && own[i]->b.nsp == nsp)
			cb(own[i]->b.name, own[i]->units, &listed, arg);
}

/*
 * The buckets due by at: those whose oldest item may have left its largest
 * window, or that may have been idle long enough to reclaim, from the index
 * on due — a leak reads what it has to do, not every bucket.  Before the
 * update to 1.1 (no due column), every bucket.
 */
static void
table_each_due(Oid nsp, int64 at, PyrateBucketCallback cb, void *arg)
{
	static const AttrNumber due_key[] = {Anum_bucket_due};
	PyrateRel	buckets;
	ScanKeyData key;
	IndexScanDesc scan;
	Snapshot	snap;
	PyrateBucket b;
	TableBucket tb;
	PyrateListed listed;

	pyrate_rel_open(&buckets, nsp, &buckets_table, AccessShareLock);
	if (buckets.ncolumns < Anum_bucket_due)
	{
		pyrate_rel_close(&buckets);
		table_foreach(nsp, cb, arg);
		return;
	}
	/*
	 * Every bucket due is listed as one that may hold units, without reading
	 * its items: its leak reads them anyway, and says whether it emptied the
	 * bucket (then it may be reclaimed).
	 */
	open_listed(&tb, &b, nsp);
	pyrate_key_int8(&key, 1, BTLessEqualStrategyNumber, at);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = index_beginscan(buckets.heap, pyrate_rel_index(&buckets, 1, due_key), snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, buckets.slot))
	{
		at_listed(&tb, &buckets, &listed);
		cb(TextDatumGetCString(buckets.slot->tts_values[Anum_bucket_name - 1]),
		   1, &listed, arg);
	}
	index_endscan(scan);
	UnregisterSnapshot(snap);
	tb_close(&tb);
	pyrate_rel_close(&buckets);
}

/*
 * The definition of pattern changed: the buckets it routes may leak sooner
 * than their due time says (a smaller largest interval), and a pass reads
 * only the buckets due.  Those with a due time still to come are made due
 * now; the next leak of each sets its due time by the new definition.  The
 * buckets whose name starts as the pattern does are read by the name index
 * (its collation is "C": they are one range of it), or, for a pattern that
 * starts with '*', those due later than now by the due index.
 */
static void
table_redefined(Oid nsp, const char *pattern)
{
	static const AttrNumber due_key[] = {Anum_bucket_due};
	PyrateRel	buckets;
	ScanKeyData key;
	IndexScanDesc scan;
	Snapshot	snap;
	int64		now = pyrate_now_ms();
	size_t		prefix_len = strcspn(pattern, "*");
	char	   *prefix = pnstrdup(pattern, prefix_len);

	pyrate_rel_open(&buckets, nsp, &buckets_table, RowExclusiveLock);
	if (buckets.ncolumns < Anum_bucket_due)
	{
		pyrate_rel_close(&buckets);
		return;
	}
	snap = RegisterSnapshot(GetLatestSnapshot());
	if (prefix_len > 0)
	{
		pyrate_key_text_op(&key, 1, BTGreaterEqualStrategyNumber, prefix);
		scan = index_beginscan(buckets.heap, pyrate_rel_index(&buckets, 1, bucket_name_key), snap, 1, 0);
	}
	else
	{
		pyrate_key_int8(&key, 1, BTGreaterStrategyNumber, now);
		scan = index_beginscan(buckets.heap, pyrate_rel_index(&buckets, 1, due_key), snap, 1, 0);
	}
	index_rescan(scan, &key, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, buckets.slot))
	{
		char	   *name;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(buckets.slot);
		name = TextDatumGetCString(buckets.slot->tts_values[Anum_bucket_name - 1]);
		/* past the names that start with the prefix */
		if (prefix_len > 0 && strncmp(name, prefix, prefix_len) != 0)
			break;
		if (!buckets.slot->tts_isnull[Anum_bucket_due - 1] &&
			DatumGetInt64(buckets.slot->tts_values[Anum_bucket_due - 1]) > now &&
			pyrate_pattern_match(pattern, name))
		{
			Datum		values[Natts_bucket];
			bool		nulls[Natts_bucket];

			memcpy(values, buckets.slot->tts_values, sizeof(Datum) * buckets.ncolumns);
			memcpy(nulls, buckets.slot->tts_isnull, sizeof(bool) * buckets.ncolumns);
			values[Anum_bucket_due - 1] = Int64GetDatum(now);
			/* a leak that moved it meanwhile read the new definition, or will */
			(void) pyrate_rel_update_if_unchanged(&buckets, &buckets.slot->tts_tid,
												  pyrate_rel_form(&buckets, values, nulls));
		}
		pfree(name);
	}
	index_endscan(scan);
	UnregisterSnapshot(snap);
	pyrate_rel_close(&buckets);
}

/*
 * Write this transaction's pending items of pb as rows, under the bucket's
 * lock.  keep: the lock is kept to the end of the transaction, and the rows
 * hold the bucket as any written at once do (materialize); else the lock goes
 * at once: the transaction is committing, and the next put may go on top.
 */
static void
write_pending(PendingBucket *pb, bool keep)
{
	TableBucket tb;
	int64		units = 0;

	if (pb->n == 0)
		return;
	if (!OidIsValid(get_relname_relid(ITEMS_TABLE, pb->b.nsp)))
	{
		/* the extension was dropped in this transaction: nowhere to write */
		pyrate_pending_stored(pb);
		return;
	}
	tb_open(&tb, &pb->b, RowExclusiveLock, keep ? LOCK_INSERT : LOCK_COMMIT);
	for (int i = 0; i < pb->n; i++)
	{
		insert_item(&tb, pb->items[i].ts, pb->items[i].weight);
		units += pb->items[i].weight;
	}
	if (pb->b.def.slots > 0)
		compact_items(&tb, units);
	pyrate_pending_stored(pb);
	if (keep)
		keep_lock(&tb);
	else
		bucket_unlock(&tb);
	tb_close(&tb);
}

/*
 * This transaction's pending items in a bucket are written now, held to
 * commit as items written at once are: before a put that cannot wait for
 * the commit, and before a leak that would remove some of them.
 */
static void
materialize(const PyrateBucket *b)
{
	PendingBucket *pb = own_items(b);

	if (pb == NULL)
		return;
	write_pending(pb, true);
	/* the rows are seen by what this command reads next, snapshots too */
	CommandCounterIncrement();
}

/*
 * At commit, the pending items are written, each bucket's lock taken only
 * while they are; the transaction says it is committing first, so puts into
 * the same buckets go on top of its items without waiting for its commit.
 * Its commit can still fail after this (a crash; an error at commit, such
 * as a full NOTIFY queue): the items stacked on it then keep its units
 * counted (see ITEM_STACKED).  A serializable transaction can fail its
 * commit on a serialization conflict, so it keeps each lock to the end, as
 * does one being prepared (two-phase commit holds its permits until COMMIT
 * PREPARED or ROLLBACK PREPARED).
 */
static void
pending_xact_cb(XactEvent event, void *arg)
{
	PendingBucket **list;
	int			n;
	bool		keep;

	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE)
		return;
	keep = event == XACT_EVENT_PRE_PREPARE || IsolationIsSerializable();
	list = pyrate_pending_list(&n, keep);
	if (n == 0)
		return;
	(void) GetTopTransactionId();
	if (!keep)
		pyrate_pending_committing();
	for (int i = 0; i < n; i++)
		write_pending(list[i], keep);
}

const PyrateEngine pyrate_table_engine = {
	"table",
	true,
	table_acquire,
	table_count,
	table_entries,
	table_peek,
	table_leak,
	table_flush,
	table_dispose,
	table_reclaim,
	table_foreach,
	table_each_due,
	table_redefined
};
