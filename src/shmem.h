/*
 * shmem.h — pyrate's shared memory: the memory engine's buckets and the
 * background worker's status.  Exists only when pyrate is in
 * shared_preload_libraries.
 */
#ifndef PYRATE_SHMEM_H
#define PYRATE_SHMEM_H

#include "pyrate.h"

#include "datatype/timestamp.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/dsa.h"

/* Lock partitions of the bucket directory (a power of two). */
#define PYRATE_PARTITIONS 128

/* What the background worker last did; guarded by PyrateShared.worker_mutex. */
typedef struct PyrateWorkerStatus
{
	int			pid;			/* 0 when not running */
	char		database[NAMEDATALEN];
	char		state[64];
	int			interval_ms;
	TimestampTz started;
	TimestampTz last_leak;		/* start of the last completed leak; 0 never */
	double		last_leak_ms;	/* how long it took */
	int64		last_memory_units;
	int64		last_table_units;
	int64		total_units;
	int64		runs;
	TimestampTz last_error_at;
	char		last_error[256];
} PyrateWorkerStatus;

/* Counters of one lock partition; guarded by that partition's lock. */
typedef struct PyratePartition
{
	int64		buckets;
	int64		items;			/* log entries stored */
	int64		bytes;			/* bytes allocated for entries and logs */
	char		pad[PG_CACHE_LINE_SIZE - 3 * sizeof(int64)];
} PyratePartition;

/*
 * The fixed part of pyrate's shared memory.
 *
 * Locking:
 *   locks[p] (tranche "pyrate", LW_EXCLUSIVE to change, LW_SHARED to read)
 *     guards directory heads h with (h & (PYRATE_PARTITIONS - 1)) == p, every
 *     bucket on those chains (its next link, its log pointer and the log's
 *     contents) and parts[p].  Held only for one lookup and one O(log n)
 *     update; never while sleeping, never two at a time.
 *   The DSA area's own locks (tranche "pyrate_memory_area") guard the
 *     allocator; taken inside a partition lock, never the other way round.
 *   worker_mutex (spinlock) guards worker.
 *   evicted and full_errors are atomics.
 * The postmaster reads all of it without locks when it saves the buckets at
 * shutdown: by then every other process has exited.
 */
typedef struct PyrateShared
{
	int			area_tranche;
	Size		arena_size;
	uint32		nheads;			/* a power of two, >= PYRATE_PARTITIONS */
	pg_atomic_uint64 evicted;
	pg_atomic_uint64 full_errors;
	PyratePartition parts[PYRATE_PARTITIONS];
	slock_t		worker_mutex;
	PyrateWorkerStatus worker;
} PyrateShared;

extern PyrateShared *pyrate_shared;		/* NULL unless preloaded */
extern LWLockPadded *pyrate_locks;
extern dsa_pointer *pyrate_heads;

/* GUCs */
extern int	pyrate_memory_size;		/* kB */

/* Register GUCs and, when preloading, the shared memory hooks. */
void		pyrate_shmem_init(void);

/* The DSA area holding buckets, attached on first use in this process. */
dsa_area   *pyrate_area(void);

/* engine_memory.c, called by shmem.c */
void		pyrate_memory_init(void);
/* memory_file.c: restore at startup, save at shutdown (postmaster only) */
void		pyrate_memory_restore(dsa_area *area);
void		pyrate_memory_save(dsa_area *area);

/* engine_memory.c, for memory_file.c */
typedef void (*PyrateMemoryVisitor) (Oid dbid, const char *name, uint32 namelen,
									 const pyr_log *log, void *arg);
void		pyrate_memory_foreach_unlocked(dsa_area *area, PyrateMemoryVisitor visit, void *arg);
bool		pyrate_memory_insert_restored(dsa_area *area, Oid dbid, const char *name,
										  const int64 *pairs, uint32 n);

/* worker.c */
void		pyrate_worker_init(void);

#endif							/* PYRATE_SHMEM_H */
