/*
 * stats.c — per-definition counters behind the pyrate_stats view.
 *
 * Kept in shared memory, so they need pyrate in shared_preload_libraries;
 * without it pyrate_stats() says so.  Entries are keyed by (database,
 * pattern); the hash table is bounded by pyrate.max_stats, and decisions for
 * definitions beyond that are counted in one overflow row (pattern NULL).
 *
 * Locking: StatsShared->lock guards the hash table's shape and every
 * pointer into it: it is held shared to look an entry up *and* count into
 * it (so no entry can be removed and recycled under a counting backend),
 * exclusive to add or reset entries.  Each entry's mutex guards its
 * counters, held for a few additions only; it is initialised only when the
 * entry is created, under the exclusive lock, when no backend can hold it.
 */
#include "stats.h"

#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
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
	slock_t		mutex;
	TimestampTz since;			/* counting from: the entry's creation */
	bool		overflow;
	char		pattern[PYRATE_MAX_NAME + 1];
	StatsCounters c;
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;
	uint64		generation;		/* bumped by every reset, under the lock */
} StatsShared;

/*
 * Each backend remembers where the entries it counts into are, so a count
 * needs no hash lookup.  A remembered pointer is used only under the shared
 * lock and only while the generation is the one it was found in: a reset
 * (which removes entries) bumps it, and the backend looks them up again.
 */
#define LOCAL_SLOTS 64

typedef struct LocalSlot
{
	uint64		hash;
	Oid			db;
	uint64		generation;
	StatsEntry *entry;
	char		pattern[PYRATE_MAX_NAME + 1];
} LocalSlot;

static LocalSlot local_slots[LOCAL_SLOTS];

static int	pyrate_max_stats = 1000;
static StatsShared *shared = NULL;
static HTAB *entries = NULL;

PG_FUNCTION_INFO_V1(pyrate_stats);
PG_FUNCTION_INFO_V1(pyrate_stats_reset);

static Size
stats_size(void)
{
	return add_size(MAXALIGN(sizeof(StatsShared)),
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

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pyrate stats", sizeof(StatsShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("pyrate_stats"))->lock;
		shared->generation = 1;
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
	}
	LWLockRelease(shared->lock);
}

void
pyrate_stats_count(const char *pattern, PyrateStatKind kind, int64 wait_ms)
{
	StatsEntry *e;
	uint64		hash;
	LocalSlot  *slot;
	int			tries;

	if (shared == NULL)
		return;
	hash = hash_bytes_extended((const unsigned char *) pattern, strlen(pattern), 0);
	if (hash == 0)
		hash = 1;				/* 0 is the overflow row's */
	slot = &local_slots[hash % LOCAL_SLOTS];
	for (tries = 0; tries < 2; tries++)
	{
		LWLockAcquire(shared->lock, LW_SHARED);
		if (slot->entry && slot->hash == hash && slot->db == MyDatabaseId &&
			slot->generation == shared->generation && strcmp(slot->pattern, pattern) == 0)
			e = slot->entry;
		else
		{
			e = lookup_entry(pattern, hash);
			if (e)
			{
				strlcpy(slot->pattern, pattern, sizeof(slot->pattern));
				slot->hash = hash;
				slot->db = MyDatabaseId;
				slot->generation = shared->generation;
				slot->entry = e;
			}
		}
		if (e)
		{
			SpinLockAcquire(&e->mutex);
			e->c.n[kind]++;
			e->c.wait_ms += wait_ms;
			SpinLockRelease(&e->mutex);
		}
		LWLockRelease(shared->lock);
		if (e)
			return;
		/* not there yet (or a hash collision): create it, then count */
		enter_entry(pattern, hash);
	}
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

	require_shared();
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LWLockAcquire(shared->lock, LW_SHARED);
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[7];
		bool		nulls[7] = {false};
		StatsCounters c;

		if (e->key.db != MyDatabaseId)
			continue;
		SpinLockAcquire(&e->mutex);
		c = e->c;
		SpinLockRelease(&e->mutex);
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
			hash_search(entries, &e->key, HASH_REMOVE, NULL);
	shared->generation++;
	LWLockRelease(shared->lock);
	PG_RETURN_VOID();
}
