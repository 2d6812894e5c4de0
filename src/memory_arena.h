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

/*
 * Counters of one lock partition; guarded by that partition's lock.  lsn is
 * the end of the last WAL record of a change to its durable buckets that
 * they hold (memory_wal.h): logged here, replayed here, or restored.
 * logged is the same for the records this server inserted, and only them:
 * what the saver asks the WAL writer to flush.
 */
typedef struct PyratePartition
{
	int64		buckets;
	int64		items;			/* log entries stored */
	int64		bytes;			/* bytes allocated for entries and logs */
	uint64		lsn;			/* an XLogRecPtr */
	uint64		logged;			/* the end of the last record logged here since start */
	char		pad[PG_CACHE_LINE_SIZE - 5 * sizeof(int64)];
} PyratePartition;

/* Per-database byte counters: a database counts in slot oid % this. */
#define PYRATE_DB_SLOTS 1021

/*
 * Buckets per definition, for max_buckets: a bucket counts in group
 * 1 + hash(database, pattern) % (PYRATE_GROUPS - 1) of the definition it
 * was created under (group 0: counted nowhere).
 */
#define PYRATE_GROUPS 4096
/*
 * A bucket's group field holds its group in the low bits and, in the top
 * bit, whether it is durable: its changes are WAL-logged (memory_wal.h).
 */
#define PYRATE_GROUP_MASK 0x0FFF
#define PYRATE_GROUP_DURABLE 0x8000
StaticAssertDecl(PYRATE_GROUPS - 1 <= PYRATE_GROUP_MASK, "a group fits its bits");

/* The reserve for buckets that exist: chunks of this size, at most this many. */
#define PYRATE_RESERVE_CHUNK ((Size) 64 * 1024)
#define PYRATE_RESERVE_MAX 1024

/*
 * The fixed part of pyrate's shared memory.
 *
 * Locking:
 *   locks[p] (tranche "pyrate", LW_EXCLUSIVE to change, LW_SHARED to read)
 *     guards partition p's directory heads and their occupied bits, every
 *     bucket on those chains (its next link, its log pointer and the log's
 *     contents) and parts[p].  Held only for one lookup and one O(log n)
 *     update; never while sleeping, never two at a time.
 *   The DSA area's own locks (tranche "pyrate_memory_area") guard the
 *     allocator; taken inside a partition lock, never the other way round.
 *   evicted, full_errors, db_bytes and group_buckets are atomics;
 *     group_buckets[g] counts the buckets of group g, and changes as they
 *     are created and unlinked, under the partition lock of the bucket
 *     concerned (a cap compares and swaps it).
 *   reserve_lock (a spinlock) guards reserve[] and reserve_held.
 *   db_bytes[d] sums the bytes of the databases whose oid % PYRATE_DB_SLOTS
 *     is d (as partition bytes do: blocks as requested).  It changes with
 *     the partition bytes, under the partition lock of the bucket concerned.
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
	uint64		saved_redo;		/* the redo pointer of the startup's durable save */
	uint64		replay_from;	/* WAL recovery replays first for the restored buckets */
	bool		pre_replayed;	/* recovery has replayed that WAL (memory_wal.c) */
	PyratePartition parts[PYRATE_PARTITIONS];
	pg_atomic_uint64 db_bytes[PYRATE_DB_SLOTS];
	pg_atomic_uint32 group_buckets[PYRATE_GROUPS];
	slock_t		reserve_lock;
	int			reserve_target;	/* chunks */
	int			reserve_held;
	dsa_pointer reserve[PYRATE_RESERVE_MAX];
} PyrateShared;

extern PyrateShared *pyrate_shared;		/* NULL unless preloaded */
extern LWLockPadded *pyrate_locks;
extern dsa_pointer *pyrate_heads;
extern uint64 *pyrate_occupied;

/*
 * The directory: nheads chain heads, partition p's a contiguous run of
 * pyrate_heads_per_partition() from p times that, so a walk of a partition
 * reads one stretch of memory.  pyrate_occupied has a bit per head, set
 * while its chain holds a bucket, in PYRATE_OCCUPIED_WORDS(hpp) words per
 * partition (guarded by the partition lock, like the heads): walks skip
 * the empty heads 64 at a time.
 */
#define PYRATE_OCCUPIED_WORDS(hpp) (((hpp) + 63) / 64)

static inline uint32
pyrate_heads_per_partition(void)
{
	return pyrate_shared->nheads / PYRATE_PARTITIONS;
}

/* the head of a hash: its partition's run, at the hash's next bits */
static inline uint32
pyrate_head_of(uint32 hash)
{
	uint32		hpp = pyrate_heads_per_partition();

	return (hash & (PYRATE_PARTITIONS - 1)) * hpp +
		((hash / PYRATE_PARTITIONS) & (hpp - 1));
}

/* pyrate.memory_size and pyrate.memory_reserve, in kB (the memory engine defines the settings) */
extern int	pyrate_memory_size;
extern int	pyrate_memory_reserve;

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

/*
 * The reserve: memory set aside at startup that only buckets which exist
 * may grow into, so that strangers filling the arena with new buckets cannot
 * make an existing bucket's next item fail.  While any of it is out, new
 * buckets are refused.
 *   pyrate_reserve_whole: whether all of it is set aside, setting aside
 *     again what the arena has room for first.
 *   pyrate_reserve_release: give one chunk back to the allocator for a
 *     bucket that must grow; false when none is left.
 */
bool		pyrate_reserve_whole(dsa_area *area);
bool		pyrate_reserve_release(dsa_area *area);

#endif							/* PYRATE_MEMORY_ARENA_H */
