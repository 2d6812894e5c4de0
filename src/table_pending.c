/*
 * table_pending.c — permits of table buckets that transactions took and have
 * not committed yet (see table_pending.h).
 *
 * Shared memory holds, per bucket (a 64-bit hash of database, schema and
 * name: two names that collide only count together, never less), the units
 * that transactions in progress hold pending; a check counts them in every
 * window, since the item's place in the log is fixed only at commit.  Each
 * backend keeps its own items, which it counts exactly, with the
 * subtransaction that put each, so a rollback to a savepoint forgets just
 * those.  A slot per backend says that its transaction is writing its items
 * to commit: another put may then go after them without waiting for that
 * commit (engine_table.c).
 */
#include "table_pending.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#define PENDING_PARTITIONS 16
#define BUCKET_LOCKS 256

typedef struct SharedPending
{
	uint64		key;
	int64		units;
} SharedPending;

typedef struct PendingShared
{
	LWLockPadded *locks;
	LWLockPadded *bucket_locks;
	int			nslots;
	/* buckets transactions hold past their share (see pending_room) */
	pg_atomic_uint32 beyond_shares;
	pg_atomic_uint32 committing[FLEXIBLE_ARRAY_MEMBER];
} PendingShared;

static bool defer_table_puts = true;
static int	table_pending_buckets = 131072;

static PendingShared *shared = NULL;
static HTAB *shared_units = NULL;

/* this transaction's */
static MemoryContext pending_cxt = NULL;
static HTAB *own = NULL;
static PendingBucket **order = NULL;
static int	norder = 0;
static int	order_cap = 0;
static int	own_beyond_share = 0;	/* of norder, counted in beyond_shares */
static bool callbacks_registered = false;

/*
 * Items written as rows inside a subtransaction: if it aborts, the rows go
 * and the items are pending again; their shared units are kept until the
 * subtransaction commits into the top transaction.
 */
typedef struct StoredItems
{
	PendingBucket *pb;
	SubTransactionId subid;
	int			n;
	PendingItem *items;
	int64		units;
} StoredItems;

static StoredItems *stored = NULL;
static int	nstored = 0;
static int	stored_cap = 0;

static int
slot_count(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
pending_size(void)
{
	return add_size(offsetof(PendingShared, committing),
					mul_size(sizeof(pg_atomic_uint32), slot_count()));
}

void
pyrate_pending_shmem_request(void)
{
	RequestAddinShmemSpace(pending_size());
	if (table_pending_buckets > 0)
		RequestAddinShmemSpace(hash_estimate_size(table_pending_buckets, sizeof(SharedPending)));
	RequestNamedLWLockTranche("pyrate_pending", PENDING_PARTITIONS);
	RequestNamedLWLockTranche("pyrate_bucket", BUCKET_LOCKS);
}

void
pyrate_pending_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pyrate pending", pending_size(), &found);
	if (!found)
	{
		shared->locks = GetNamedLWLockTranche("pyrate_pending");
		shared->bucket_locks = GetNamedLWLockTranche("pyrate_bucket");
		shared->nslots = slot_count();
		pg_atomic_init_u32(&shared->beyond_shares, 0);
		for (int i = 0; i < shared->nslots; i++)
			pg_atomic_init_u32(&shared->committing[i], InvalidTransactionId);
	}
	if (table_pending_buckets > 0)
	{
		HASHCTL		info;

		info.keysize = sizeof(uint64);
		info.entrysize = sizeof(SharedPending);
		info.num_partitions = PENDING_PARTITIONS;
		shared_units = ShmemInitHash("pyrate pending units", table_pending_buckets,
									 table_pending_buckets, &info,
									 HASH_ELEM | HASH_BLOBS | HASH_PARTITION | HASH_FIXED_SIZE);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
pyrate_pending_init(void)
{
	DefineCustomBoolVariable("pyrate.defer_table_puts",
							 "Write the items of table buckets when the transaction commits.",
							 "An admitted put then holds its bucket only while it is checked and, at "
							 "commit, while its item is written; until then other transactions count "
							 "its units in every window.  Needs shared_preload_libraries.",
							 &defer_table_puts, true, PGC_SUSET, 0, NULL, NULL, NULL);
	/* a PGC_POSTMASTER setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pyrate.table_pending_buckets",
							"Table buckets that can hold uncommitted permits at once, per server.",
							"Past this, a put writes its item at once and holds its bucket to commit.",
							&table_pending_buckets, 131072, 0, 1 << 24, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
}

bool
pyrate_pending_enabled(void)
{
	return shared_units != NULL && defer_table_puts;
}

static uint64
bucket_key(const PyrateBucket *b)
{
	uint64		seed = ((uint64) MyDatabaseId << 32) | b->nsp;

	return hash_bytes_extended((const unsigned char *) b->name, strlen(b->name), seed);
}

static LWLock *
partition_lock(uint32 hashcode)
{
	return &shared->locks[hashcode % PENDING_PARTITIONS].lock;
}

/* Add delta to the bucket's shared units; false when a new entry finds no room. */
static bool
shared_add(uint64 key, int64 delta)
{
	uint32		hashcode = get_hash_value(shared_units, &key);
	LWLock	   *lock = partition_lock(hashcode);
	SharedPending *e;
	bool		found;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (delta > 0)
	{
		e = hash_search_with_hash_value(shared_units, &key, hashcode, HASH_ENTER_NULL, &found);
		if (e == NULL)
		{
			LWLockRelease(lock);
			return false;
		}
		if (!found)
			e->units = 0;
		e->units += delta;
	}
	else
	{
		e = hash_search_with_hash_value(shared_units, &key, hashcode, HASH_FIND, NULL);
		if (e != NULL)
		{
			e->units += delta;
			if (e->units <= 0)
				hash_search_with_hash_value(shared_units, &key, hashcode, HASH_REMOVE, NULL);
		}
	}
	LWLockRelease(lock);
	return true;
}

static int64
shared_get(uint64 key)
{
	uint32		hashcode = get_hash_value(shared_units, &key);
	LWLock	   *lock = partition_lock(hashcode);
	SharedPending *e;
	int64		units = 0;

	LWLockAcquire(lock, LW_SHARED);
	e = hash_search_with_hash_value(shared_units, &key, hashcode, HASH_FIND, NULL);
	if (e != NULL)
		units = e->units;
	LWLockRelease(lock);
	return units;
}

static PendingBucket *
own_find(const PyrateBucket *b, uint64 key)
{
	PendingBucket *pb;

	if (own == NULL)
		return NULL;
	pb = hash_search(own, &key, HASH_FIND, NULL);
	if (pb == NULL || pb->b.nsp != b->nsp || strcmp(pb->b.name, b->name) != 0)
		return NULL;
	return pb;
}

PendingBucket *
pyrate_pending_own(const PyrateBucket *b)
{
	if (own == NULL)
		return NULL;
	return own_find(b, bucket_key(b));
}

/* Units this transaction counts in shared memory for key. */
static int64
own_shared_units(uint64 key)
{
	int64		units = 0;
	PendingBucket *pb = own ? hash_search(own, &key, HASH_FIND, NULL) : NULL;

	if (pb)
		units += pb->units;
	for (int i = 0; i < nstored; i++)
		if (stored[i].pb->key == key)
			units += stored[i].units;
	return units;
}

int64
pyrate_pending_others(const PyrateBucket *b)
{
	uint64		key;
	int64		units;

	if (shared_units == NULL)
		return 0;
	key = bucket_key(b);
	units = shared_get(key) - own_shared_units(key);
	return Max(units, 0);
}

int64
pyrate_pending_own_since(const PendingBucket *pb, int64 since)
{
	int64		units = 0;

	for (int i = 0; i < pb->n; i++)
		if (pb->items[i].ts >= since)
			units += pb->items[i].weight;
	return units;
}

/*
 * Room for one more bucket of this transaction.  pyrate.table_pending_buckets
 * is shared so that no role can take it all: every backend may hold a share
 * (half the buckets over MaxBackends) at any time, and the other half goes
 * to whoever comes first.  A backend's buckets beyond its share are counted
 * in beyond_shares, which never passes what the shares leave; so a backend
 * within its share always finds an entry (each backend counts every bucket
 * it holds units in, though two may share one entry).  Past that, a put
 * writes its item at once.
 */
static int
pending_share(void)
{
	return Max(table_pending_buckets / (2 * MaxBackends), 1);
}

static bool
pending_room(void)
{
	uint32		limit;
	uint32		cur;

	if (norder < pending_share())
		return true;
	limit = (uint32) Max(table_pending_buckets - pending_share() * MaxBackends, 0);
	cur = pg_atomic_read_u32(&shared->beyond_shares);
	while (cur < limit)
		if (pg_atomic_compare_exchange_u32(&shared->beyond_shares, &cur, cur + 1))
		{
			own_beyond_share++;
			return true;
		}
	return false;
}

/* The room just taken went unused (the shared table had no entry after all). */
static void
pending_room_unused(void)
{
	if (norder >= pending_share() && own_beyond_share > 0)
	{
		pg_atomic_fetch_sub_u32(&shared->beyond_shares, 1);
		own_beyond_share--;
	}
}

static void pending_xact_cb(XactEvent event, void *arg);
static void pending_subxact_cb(SubXactEvent event, SubTransactionId mySubid,
							   SubTransactionId parentSubid, void *arg);

bool
pyrate_pending_add(const PyrateBucket *b, int64 ts, int64 weight)
{
	uint64		key = bucket_key(b);
	PendingBucket *pb;
	bool		found;
	MemoryContext old;

	if (!pyrate_pending_enabled())
		return false;
	if (!callbacks_registered)
	{
		RegisterXactCallback(pending_xact_cb, NULL);
		RegisterSubXactCallback(pending_subxact_cb, NULL);
		callbacks_registered = true;
	}
	if (pending_cxt == NULL)
		pending_cxt = AllocSetContextCreate(TopMemoryContext, "pyrate pending puts",
											ALLOCSET_DEFAULT_SIZES);
	if (own == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(PendingBucket);
		ctl.hcxt = pending_cxt;
		own = hash_create("pyrate pending buckets", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	pb = hash_search(own, &key, HASH_FIND, NULL);
	if (pb != NULL && (pb->b.nsp != b->nsp || strcmp(pb->b.name, b->name) != 0))
		return false;			/* another name with the same hash: write at once */
	if (pb == NULL && !pending_room())
		return false;
	if (!shared_add(key, weight))
	{
		if (pb == NULL)
			pending_room_unused();
		return false;
	}
	old = MemoryContextSwitchTo(pending_cxt);
	if (pb == NULL)
	{
		pb = hash_search(own, &key, HASH_ENTER, &found);
		pb->b = *b;
		pb->b.name = pstrdup(b->name);
		pb->b.def.pattern = b->def.pattern ? pstrdup(b->def.pattern) : NULL;
		memset(&pb->b.listed, 0, sizeof(pb->b.listed));
		pb->n = 0;
		pb->cap = 4;
		pb->items = palloc(sizeof(PendingItem) * pb->cap);
		pb->units = 0;
		if (norder == order_cap)
		{
			order_cap = Max(16, order_cap * 2);
			order = order ? repalloc(order, sizeof(PendingBucket *) * order_cap)
				: palloc(sizeof(PendingBucket *) * order_cap);
		}
		order[norder++] = pb;
	}
	if (pb->n == pb->cap)
	{
		pb->cap *= 2;
		pb->items = repalloc(pb->items, sizeof(PendingItem) * pb->cap);
	}
	pb->items[pb->n].ts = ts;
	pb->items[pb->n].weight = weight;
	pb->items[pb->n].subid = GetCurrentSubTransactionId();
	pb->n++;
	pb->units += weight;
	MemoryContextSwitchTo(old);
	return true;
}

static int
by_key(const void *a, const void *b)
{
	uint64		ka = (*(PendingBucket *const *) a)->key;
	uint64		kb = (*(PendingBucket *const *) b)->key;

	return ka < kb ? -1 : ka > kb ? 1 : 0;
}

PendingBucket **
pyrate_pending_list(int *n, bool by_key_order)
{
	PendingBucket **list;
	int			k = 0;

	*n = 0;
	if (norder == 0)
		return NULL;
	list = MemoryContextAlloc(pending_cxt, sizeof(PendingBucket *) * norder);

	/* those with items: in the order put, or by key (see the header) */
	for (int i = 0; i < norder; i++)
		if (order[i]->n > 0)
			list[k++] = order[i];
	if (k > 1 && by_key_order)
		qsort(list, k, sizeof(PendingBucket *), by_key);
	*n = k;
	return list;
}

void
pyrate_pending_stored(PendingBucket *pb)
{
	if (pb->n == 0)
		return;
	if (GetCurrentTransactionNestLevel() > 1)
	{
		MemoryContext old = MemoryContextSwitchTo(pending_cxt);
		StoredItems *s;

		if (nstored == stored_cap)
		{
			stored_cap = Max(8, stored_cap * 2);
			stored = stored ? repalloc(stored, sizeof(StoredItems) * stored_cap)
				: palloc(sizeof(StoredItems) * stored_cap);
		}
		s = &stored[nstored++];
		s->pb = pb;
		s->subid = GetCurrentSubTransactionId();
		s->n = pb->n;
		s->items = pb->items;
		s->units = pb->units;
		pb->cap = 4;
		pb->items = palloc(sizeof(PendingItem) * pb->cap);
		MemoryContextSwitchTo(old);
	}
	else
		(void) shared_add(pb->key, -pb->units);
	pb->n = 0;
	pb->units = 0;
}

void
pyrate_pending_committing(void)
{
	if (shared != NULL)
		pg_atomic_write_u32(&shared->committing[MyProc->pgprocno], GetTopTransactionIdIfAny());
}

LWLock *
pyrate_pending_bucket_lock(uint64 hash)
{
	return shared ? &shared->bucket_locks[hash % BUCKET_LOCKS].lock : NULL;
}

bool
pyrate_pending_is_committing(TransactionId xid)
{
	if (shared == NULL || !TransactionIdIsValid(xid))
		return false;
	for (int i = 0; i < shared->nslots; i++)
		if (pg_atomic_read_u32(&shared->committing[i]) == xid)
			return true;
	return false;
}

/* Forget this transaction's pending items, and their shared units. */
static void
pending_reset(bool release)
{
	if (release && shared_units != NULL)
	{
		for (int i = 0; i < norder; i++)
			if (order[i]->units > 0)
				(void) shared_add(order[i]->key, -order[i]->units);
		for (int i = 0; i < nstored; i++)
			(void) shared_add(stored[i].pb->key, -stored[i].units);
	}
	if (own_beyond_share > 0)
		pg_atomic_fetch_sub_u32(&shared->beyond_shares, own_beyond_share);
	own_beyond_share = 0;
	if (pending_cxt)
		MemoryContextReset(pending_cxt);
	own = NULL;
	order = NULL;
	norder = order_cap = 0;
	stored = NULL;
	nstored = stored_cap = 0;
}

static void
pending_xact_cb(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* written at PRE_COMMIT / PRE_PREPARE; on abort, given back */
			pending_reset(true);
			if (shared != NULL)
				pg_atomic_write_u32(&shared->committing[MyProc->pgprocno], InvalidTransactionId);
			break;
		default:
			break;
	}
}

static void
pending_subxact_cb(SubXactEvent event, SubTransactionId mySubid,
				   SubTransactionId parentSubid, void *arg)
{
	int			k = 0;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = 0; i < norder; i++)
			for (int j = 0; j < order[i]->n; j++)
				if (order[i]->items[j].subid == mySubid)
					order[i]->items[j].subid = parentSubid;
		/* rows written in it are the top transaction's now, or its parent's */
		for (int i = 0; i < nstored; i++)
		{
			if (stored[i].subid != mySubid)
				stored[k++] = stored[i];
			else if (parentSubid == TopSubTransactionId)
				(void) shared_add(stored[i].pb->key, -stored[i].units);
			else
			{
				for (int j = 0; j < stored[i].n; j++)
					if (stored[i].items[j].subid == mySubid)
						stored[i].items[j].subid = parentSubid;
				stored[i].subid = parentSubid;
				stored[k++] = stored[i];
			}
		}
		nstored = k;
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* its items are given back */
		for (int i = 0; i < norder; i++)
		{
			PendingBucket *pb = order[i];
			int64		gone = 0;
			int			m = 0;

			for (int j = 0; j < pb->n; j++)
			{
				if (pb->items[j].subid == mySubid)
					gone += pb->items[j].weight;
				else
					pb->items[m++] = pb->items[j];
			}
			pb->n = m;
			pb->units -= gone;
			if (gone > 0)
				(void) shared_add(pb->key, -gone);
		}
		/*
		 * Items it wrote as rows: the rows are gone.  Those put before it are
		 * pending again, ahead of any put since; its own are given back.
		 */
		for (int i = 0; i < nstored; i++)
		{
			StoredItems *s = &stored[i];
			PendingBucket *pb = s->pb;
			PendingItem *items;
			int			m = 0;
			int64		back = 0;

			if (s->subid != mySubid)
			{
				stored[k++] = *s;
				continue;
			}
			items = MemoryContextAllocHuge(pending_cxt, sizeof(PendingItem) * (s->n + pb->n + 4));
			for (int j = 0; j < s->n; j++)
			{
				if (s->items[j].subid == mySubid)
					back += s->items[j].weight;
				else
				{
					items[m++] = s->items[j];
					pb->units += s->items[j].weight;
				}
			}
			memcpy(items + m, pb->items, sizeof(PendingItem) * pb->n);
			pb->n += m;
			pb->cap = s->n + (pb->n - m) + 4;
			pb->items = items;
			if (back > 0)
				(void) shared_add(pb->key, -back);
		}
		nstored = k;
	}
}
