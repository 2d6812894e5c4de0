/*
 * memory_arena.h — the memory engine's shared memory: the bucket directory,
 * its lock partitions and the DSA area holding buckets and their logs.
 * Exists only when pyrate is in shared_preload_libraries.
 */
#ifndef PYRATE_MEMORY_ARENA_H
#define PYRATE_MEMORY_ARENA_H

#include "base.h"

#include "datatype/timestamp.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/dsa.h"

/* Lock partitions of the bucket directory (a power of two). */
#define PYRATE_PARTITIONS 128

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
} PyrateShared;

extern PyrateShared *pyrate_shared;		/* NULL unless preloaded */
extern LWLockPadded *pyrate_locks;
extern dsa_pointer *pyrate_heads;

/* pyrate.memory_size, in kB (the memory engine defines the setting) */
extern int	pyrate_memory_size;

/* From the memory engine's shmem_request_hook: ask for the arena's memory. */
void		pyrate_arena_request(void);
/*
 * From its shmem_startup_hook: create or attach the arena.  Returns the
 * postmaster's attachment when this call created it (the caller then fills
 * it), NULL otherwise.
 */
dsa_area   *pyrate_arena_startup(void);

/* The DSA area holding buckets, attached on first use in this process. */
dsa_area   *pyrate_area(void);

#endif							/* PYRATE_MEMORY_ARENA_H */
