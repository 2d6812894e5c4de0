/*
 * stats.c — per-definition counters behind the pyrate_stats view.
 *
 * Kept in shared memory, so they need pyrate in shared_preload_libraries;
 * without it pyrate_stats() says so.  Entries are keyed by (database,
 * pattern); the hash table is bounded by pyrate.max_stats, and decisions for
 * definitions beyond that are counted in one overflow row (pattern NULL).
 *
 * Counting: each backend counts into slots of its own in shared memory,
 * BACKEND_SLOTS per PGPROC, each slot bound to one entry: a count is a
 * store into a cache line no other backend writes, with no lock (every
 * acquire counts, and a lock or counter shared by all of them made each
 * count a cache miss for every core but the last to count).  A pattern
 * whose slot is bound to another live entry counts into the entry itself,
 * under its mutex.  The slots outlive their backend: a later one with the
 * same PGPROC goes on counting into them, so nothing is lost at exit.
 *
 * An entry has an incarnation, unique over the server's life, that its
 * slots repeat: a slot counts for the entry while the two agree.  A reset
 * zeroes the incarnation of each entry it removes, which retires every slot
 * bound to it, whatever later takes its memory.
 *
 * Locking: StatsShared->lock guards the hash table's shape: held shared to
 * look an entry up and to read the counts, exclusive to add or remove
 * entries.  Each entry's mutex guards its own counters.  A slot is written
 * only by its backend; readers take its counts when its incarnation reads
 * the same before and after, and is its entry's.
 */
#include "stats.h"

#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

typedef struct StatsKey
{
	Oid			db;
	uint64		hash;			/* of the pattern; "" for the overflow row */
} StatsKey;

typedef struct StatsCounters
{
	int64		n[PYRATE_STAT_KINDS];
	int64		wait_ms;
} StatsCounters;

typedef struct StatsEntry
{
	StatsKey	key;
	pg_atomic_uint64 incarnation;	/* never 0 while the entry is in the table */
	slock_t		mutex;
	TimestampTz since;			/* counting from: the entry's creation */
	bool		overflow;
	char		pattern[PYRATE_MAX_NAME + 1];
	StatsCounters c;
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;
	uint64		next_incarnation;	/* under the lock, exclusive */
} StatsShared;

/* A backend's counts for one entry; 64 bytes, a cache line of its own. */
typedef struct BackendSlot
{
	pg_atomic_uint64 incarnation;	/* its entry's; 0: bound to none */
	StatsEntry *entry;
	pg_atomic_uint64 n[PYRATE_STAT_KINDS];
	pg_atomic_uint64 wait_ms;
	char		pad[64 - 3 * sizeof(uint64) - PYRATE_STAT_KINDS * sizeof(uint64)];
} BackendSlot;

StaticAssertDecl(sizeof(BackendSlot) == 64, "a slot is one cache line");

#define BACKEND_SLOTS 16

/*
 * Which pattern this backend counts into each of its slots, so a count
 * needs no hash lookup: index hash % BACKEND_SLOTS.
 */
typedef struct LocalSlot
{
	uint64		hash;
	Oid			db;
	char		pattern[PYRATE_MAX_NAME + 1];
} LocalSlot;

static LocalSlot local_slots[BACKEND_SLOTS];
/* the slots this backend bound or took on; others are an earlier backend's */
static bool slot_mine[BACKEND_SLOTS];

static int	pyrate_max_stats = 1000;
static StatsShared *shared = NULL;
static HTAB *entries = NULL;
static BackendSlot *backend_slots = NULL;	/* MaxBackends * BACKEND_SLOTS */

PG_FUNCTION_INFO_V1(pyrate_stats);
PG_FUNCTION_INFO_V1(pyrate_stats_reset);

static Size
backend_slots_size(void)
{
	return mul_size(mul_size(MaxBackends, BACKEND_SLOTS), sizeof(BackendSlot));
}

static Size
stats_size(void)
{
	return add_size(add_size(MAXALIGN(sizeof(StatsShared)), add_size(backend_slots_size(), 64)),
					hash_estimate_size(pyrate_max_stats + 1, sizeof(StatsEntry)));
}

void
pyrate_stats_shmem_request(void)
{
	RequestAddinShmemSpace(stats_size());
	RequestNamedLWLockTranche("pyrate_stats", 1);
}

void
pyrate_stats_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;
	char	   *raw;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pyrate stats", sizeof(StatsShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("pyrate_stats"))->lock;
		shared->next_incarnation = 1;
	}
	raw = ShmemInitStruct("pyrate stats slots", add_size(backend_slots_size(), 64), &found);
	backend_slots = (BackendSlot *) TYPEALIGN(64, raw);
	if (!found)
	{
		memset(backend_slots, 0, backend_slots_size());
		for (int i = 0; i < MaxBackends * BACKEND_SLOTS; i++)
		{
			BackendSlot *slot = &backend_slots[i];

			pg_atomic_init_u64(&slot->incarnation, 0);
			for (int k = 0; k < PYRATE_STAT_KINDS; k++)
				pg_atomic_init_u64(&slot->n[k], 0);
			pg_atomic_init_u64(&slot->wait_ms, 0);
		}
	}
	info.keysize = sizeof(StatsKey);
	info.entrysize = sizeof(StatsEntry);
	entries = ShmemInitHash("pyrate stats hash", pyrate_max_stats + 1, pyrate_max_stats + 1,
							&info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

void
pyrate_stats_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("pyrate.max_stats",
							"Definitions pyrate_stats keeps counters for, per server.",
							"Decisions for definitions beyond this are counted in one row with a NULL pattern.",
							&pyrate_max_stats,
							1000, 10, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}

bool
pyrate_stats_available(void)
{
	return shared != NULL;
}

/* The entry counting for pattern: its own, or the overflow row.  Lock held. */
static StatsEntry *
lookup_entry(const char *pattern, uint64 hash)
{
	StatsKey	key;
	StatsEntry *e;

	memset(&key, 0, sizeof(key));
	key.db = MyDatabaseId;
	key.hash = hash;
	e = hash_search(entries, &key, HASH_FIND, NULL);
	if (e)
		return e->overflow || strcmp(e->pattern, pattern) == 0 ? e : NULL;
	key.hash = 0;
	e = hash_search(entries, &key, HASH_FIND, NULL);
	/* the overflow row counts only patterns that found the table full */
	return e && hash_get_num_entries(entries) >= pyrate_max_stats ? e : NULL;
}

/* Create the entry for pattern, or the overflow row when the table is full. */
static void
enter_entry(const char *pattern, uint64 hash)
{
	StatsKey	key;
	StatsEntry *e;
	bool		found;
	bool		overflow;

	memset(&key, 0, sizeof(key));
	key.db = MyDatabaseId;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	overflow = hash_get_num_entries(entries) >= pyrate_max_stats;
	key.hash = overflow ? 0 : hash;
	e = hash_search(entries, &key, HASH_ENTER_NULL, &found);
	if (e && !found)
	{
		SpinLockInit(&e->mutex);
		e->since = GetCurrentTimestamp();
		e->overflow = overflow;
		if (overflow)
			e->pattern[0] = '\0';
		else
			strlcpy(e->pattern, pattern, sizeof(e->pattern));
		memset(&e->c, 0, sizeof(e->c));
		pg_atomic_init_u64(&e->incarnation, shared->next_incarnation++);
	}
	LWLockRelease(shared->lock);
}

/* This backend's slot i; NULL when it has none (not a regular backend). */
static BackendSlot *
my_slot(int i)
{
	if (MyProc == NULL || MyProc->pgprocno < 0 || MyProc->pgprocno >= MaxBackends)
		return NULL;
	return &backend_slots[MyProc->pgprocno * BACKEND_SLOTS + i];
}

/* Whether slot counts for its entry now. */
static inline bool
slot_live(BackendSlot *slot, uint64 *incarnation)
{
	*incarnation = pg_atomic_read_u64(&slot->incarnation);
	return *incarnation != 0 && pg_atomic_read_u64(&slot->entry->incarnation) == *incarnation;
}

/* Add to a counter only this backend writes. */
static inline void
slot_add(pg_atomic_uint64 *counter, int64 n)
{
	pg_atomic_write_u64(counter, pg_atomic_read_u64(counter) + n);
}

static void
slot_count(BackendSlot *slot, PyrateStatKind kind, int64 wait_ms)
{
	slot_add(&slot->n[kind], 1);
	if (wait_ms != 0)
		slot_add(&slot->wait_ms, wait_ms);
}

/* Bind this backend's slot to e, counting from zero (lock held). */
static void
bind_slot(BackendSlot *slot, StatsEntry *e)
{
	/* readers skip the slot from here until it is whole again */
	pg_atomic_write_u64(&slot->incarnation, 0);
	pg_write_barrier();
	slot->entry = e;
	for (int k = 0; k < PYRATE_STAT_KINDS; k++)
		pg_atomic_write_u64(&slot->n[k], 0);
	pg_atomic_write_u64(&slot->wait_ms, 0);
	pg_write_barrier();
	pg_atomic_write_u64(&slot->incarnation, pg_atomic_read_u64(&e->incarnation));
}

/*
 * Move what the slot holds into its entry and free it: the exclusive lock
 * keeps readers from seeing the counts in both, or in neither.
 */
static void
fold_slot(BackendSlot *slot)
{
	uint64		incarnation;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (slot_live(slot, &incarnation))
	{
		StatsEntry *e = slot->entry;

		SpinLockAcquire(&e->mutex);
		for (int k = 0; k < PYRATE_STAT_KINDS; k++)
			e->c.n[k] += (int64) pg_atomic_read_u64(&slot->n[k]);
		e->c.wait_ms += (int64) pg_atomic_read_u64(&slot->wait_ms);
		SpinLockRelease(&e->mutex);
	}
	pg_atomic_write_u64(&slot->incarnation, 0);
	LWLockRelease(shared->lock);
}

void
pyrate_stats_count(const char *pattern, PyrateStatKind kind, int64 wait_ms)
{
	uint64		hash;
	uint64		incarnation;
	int			i;
	LocalSlot  *local;
	BackendSlot *slot;

	if (shared == NULL)
		return;
	hash = hash_bytes_extended((const unsigned char *) pattern, strlen(pattern), 0);
	if (hash == 0)
		hash = 1;				/* 0 is the overflow row's */
	i = hash % BACKEND_SLOTS;
	local = &local_slots[i];
	slot = my_slot(i);
	/* the slot this backend bound to the pattern's entry, still counting for it */
	if (slot && local->hash == hash && local->db == MyDatabaseId &&
		strcmp(local->pattern, pattern) == 0 && slot_live(slot, &incarnation))
	{
		slot_count(slot, kind, wait_ms);
		return;
	}
	local->hash = 0;
	for (int tries = 0; tries < 3; tries++)
	{
		StatsEntry *e;
		bool		fold = false;

		LWLockAcquire(shared->lock, LW_SHARED);
		e = lookup_entry(pattern, hash);
		if (e && slot && (!slot_live(slot, &incarnation) || slot->entry == e))
		{
			/* free, retired (its counts went with its entry), or e's already */
			if (!slot_live(slot, &incarnation))
				bind_slot(slot, e);
			slot_mine[i] = true;
			strlcpy(local->pattern, pattern, sizeof(local->pattern));
			local->hash = hash;
			local->db = MyDatabaseId;
			slot_count(slot, kind, wait_ms);
		}
		else if (e && slot && !slot_mine[i])
			fold = true;		/* bound by an earlier backend of this PGPROC */
		else if (e)
		{
			/* the slot counts for another pattern of this backend's: count into e */
			SpinLockAcquire(&e->mutex);
			e->c.n[kind]++;
			e->c.wait_ms += wait_ms;
			SpinLockRelease(&e->mutex);
		}
		LWLockRelease(shared->lock);
		if (fold)
			fold_slot(slot);
		else if (e)
			return;
		else
			/* not there yet (or a hash collision): create it, then count */
			enter_entry(pattern, hash);
	}
}

typedef struct SlotSum
{
	StatsEntry *entry;			/* the hash key */
	StatsCounters c;
} SlotSum;

/* What the backends' slots hold for each entry, keyed by entry (lock held). */
static HTAB *
sum_slots(void)
{
	HASHCTL		ctl;
	HTAB	   *sums;

	ctl.keysize = sizeof(StatsEntry *);
	ctl.entrysize = sizeof(SlotSum);
	ctl.hcxt = CurrentMemoryContext;
	sums = hash_create("pyrate stats sums", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (int i = 0; i < MaxBackends * BACKEND_SLOTS; i++)
	{
		BackendSlot *slot = &backend_slots[i];
		uint64		incarnation = pg_atomic_read_u64(&slot->incarnation);
		StatsEntry *e;
		StatsCounters c;
		SlotSum    *sum;
		bool		found;

		if (incarnation == 0)
			continue;
		pg_read_barrier();
		e = slot->entry;
		for (int k = 0; k < PYRATE_STAT_KINDS; k++)
			c.n[k] = (int64) pg_atomic_read_u64(&slot->n[k]);
		c.wait_ms = (int64) pg_atomic_read_u64(&slot->wait_ms);
		pg_read_barrier();
		/* rebound meanwhile, or its entry is gone: not this entry's counts */
		if (pg_atomic_read_u64(&slot->incarnation) != incarnation ||
			pg_atomic_read_u64(&e->incarnation) != incarnation)
			continue;
		sum = hash_search(sums, &e, HASH_ENTER, &found);
		if (!found)
			memset(&sum->c, 0, sizeof(sum->c));
		for (int k = 0; k < PYRATE_STAT_KINDS; k++)
			sum->c.n[k] += c.n[k];
		sum->c.wait_ms += c.wait_ms;
	}
	return sums;
}

static void
require_shared(void)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pyrate statistics need pyrate loaded when the server starts"),
				 errdetail("The counters live in shared memory."),
				 errhint("Add pyrate to shared_preload_libraries in postgresql.conf and restart the server.")));
}

Datum
pyrate_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	HASH_SEQ_STATUS seq;
	StatsEntry *e;
	HTAB	   *sums;

	require_shared();
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LWLockAcquire(shared->lock, LW_SHARED);
	sums = sum_slots();
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[7];
		bool		nulls[7] = {false};
		StatsCounters c;
		SlotSum    *sum;

		if (e->key.db != MyDatabaseId)
			continue;
		SpinLockAcquire(&e->mutex);
		c = e->c;
		SpinLockRelease(&e->mutex);
		if ((sum = hash_search(sums, &e, HASH_FIND, NULL)) != NULL)
		{
			for (int k = 0; k < PYRATE_STAT_KINDS; k++)
				c.n[k] += sum->c.n[k];
			c.wait_ms += sum->c.wait_ms;
		}
		if (e->overflow)
			nulls[0] = true;
		else
			values[0] = CStringGetTextDatum(e->pattern);
		values[1] = Int64GetDatum(c.n[PYRATE_STAT_ACQUIRED]);
		values[2] = Int64GetDatum(c.n[PYRATE_STAT_REJECTED]);
		values[3] = Int64GetDatum(c.n[PYRATE_STAT_WOULD_REJECT]);
		values[4] = Int64GetDatum(c.n[PYRATE_STAT_WAITED]);
		values[5] = Int64GetDatum(c.wait_ms);
		values[6] = TimestampTzGetDatum(e->since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(shared->lock);
	return (Datum) 0;
}

Datum
pyrate_stats_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	StatsEntry *e;

	require_shared();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->key.db == MyDatabaseId)
		{
			/* retires the slots bound to it */
			pg_atomic_write_u64(&e->incarnation, 0);
			hash_search(entries, &e->key, HASH_REMOVE, NULL);
		}
	LWLockRelease(shared->lock);
	PG_RETURN_VOID();
}
