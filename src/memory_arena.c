/*
 * memory_arena.c — the memory engine's shared memory: sizing, creation, and
 * attaching to the area that holds its buckets.
 *
 * Layout (see PyrateShared in memory_arena.h for which lock guards what):
 *   "pyrate"            the fixed control struct
 *   "pyrate directory"  the bucket directory: nheads chain heads, then a bit
 *                       per head saying it holds a bucket (memory_arena.h)
 *   "pyrate arena"      pyrate.memory_size bytes, a DSA area created in place
 *                       and capped at its own size, so it never grows
 * The postmaster creates it all; the memory engine (engine_memory.c) calls
 * in here from its shared-memory hooks.
 */
#include "memory_arena.h"

#include <limits.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

/* one directory head per this many bytes of arena */
#define BYTES_PER_HEAD 256

int			pyrate_memory_size = 32 * 1024;	/* kB */
int			pyrate_memory_reserve = 1024;	/* kB */

PyrateShared *pyrate_shared = NULL;
LWLockPadded *pyrate_locks = NULL;
dsa_pointer *pyrate_heads = NULL;
uint64	   *pyrate_occupied = NULL;

static void *arena_place = NULL;
static dsa_area *postmaster_area = NULL;	/* the postmaster's own attachment */
static dsa_area *backend_area = NULL;	/* a child's, attached on first use */

static Size
arena_size(void)
{
	return (Size) pyrate_memory_size * 1024;
}

static uint32
head_count(void)
{
	uint32		n = PYRATE_PARTITIONS;

	while ((Size) n * BYTES_PER_HEAD < arena_size() && n < (UINT32_MAX / 2 + 1))
		n <<= 1;
	return n;
}

/* the heads, then their occupied bits */
static Size
directory_size(void)
{
	Size		words = PYRATE_OCCUPIED_WORDS(head_count() / PYRATE_PARTITIONS);

	return add_size(mul_size(head_count(), sizeof(dsa_pointer)),
					mul_size(mul_size(words, PYRATE_PARTITIONS), sizeof(uint64)));
}

void
pyrate_arena_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PyrateShared)));
	RequestAddinShmemSpace(directory_size());
	RequestAddinShmemSpace(arena_size());
	RequestNamedLWLockTranche("pyrate", PYRATE_PARTITIONS);
}

dsa_area *
pyrate_arena_startup(void)
{
	bool		found;
	bool		found_heads;
	bool		found_arena;
	uint32		i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pyrate_shared = ShmemInitStruct("pyrate", sizeof(PyrateShared), &found);
	pyrate_heads = ShmemInitStruct("pyrate directory", directory_size(), &found_heads);
	pyrate_occupied = (uint64 *) (pyrate_heads + head_count());
	arena_place = ShmemInitStruct("pyrate arena", arena_size(), &found_arena);
	pyrate_locks = GetNamedLWLockTranche("pyrate");
	/* the three are made together, by the first process here */
	Assert(found == found_heads && found == found_arena);
	if (!found)
	{
		dsa_area   *area;
		MemoryContext old;

		memset(pyrate_shared, 0, sizeof(PyrateShared));
		pyrate_shared->arena_size = arena_size();
		pyrate_shared->nheads = head_count();
		pg_atomic_init_u64(&pyrate_shared->evicted, 0);
		pg_atomic_init_u64(&pyrate_shared->full_errors, 0);
		for (i = 0; i < PYRATE_DB_SLOTS; i++)
			pg_atomic_init_u64(&pyrate_shared->db_bytes[i], 0);
		for (i = 0; i < PYRATE_GROUPS; i++)
			pg_atomic_init_u32(&pyrate_shared->group_buckets[i], 0);
		SpinLockInit(&pyrate_shared->reserve_lock);
		/* at most a quarter of the arena */
		pyrate_shared->reserve_target =
			Min(Min((Size) pyrate_memory_reserve * 1024, arena_size() / 4) / PYRATE_RESERVE_CHUNK,
				PYRATE_RESERVE_MAX);
		for (i = 0; i < pyrate_shared->nheads; i++)
			pyrate_heads[i] = InvalidDsaPointer;
		memset(pyrate_occupied, 0,
			   (Size) PYRATE_OCCUPIED_WORDS(pyrate_heads_per_partition()) * PYRATE_PARTITIONS * sizeof(uint64));
		pyrate_shared->area_tranche = LWLockNewTrancheId();
		LWLockRegisterTranche(pyrate_shared->area_tranche, "pyrate_memory_area");
		old = MemoryContextSwitchTo(TopMemoryContext);
		area = dsa_create_in_place(arena_place, arena_size(),
								   pyrate_shared->area_tranche, NULL);
		MemoryContextSwitchTo(old);
		dsa_pin(area);
		dsa_set_size_limit(area, arena_size());
		/* set aside before anything is restored into the arena */
		(void) pyrate_reserve_whole(area);
		if (!IsUnderPostmaster)
		{
			/* a crash-and-restart cycle makes it anew; drop the old mapping */
			if (postmaster_area != NULL)
				dsa_detach(postmaster_area);
			postmaster_area = area;
		}
		else
			dsa_detach(area);
	}
	LWLockRelease(AddinShmemInitLock);
	return !IsUnderPostmaster && !found ? postmaster_area : NULL;
}

dsa_area *
pyrate_area(void)
{
	MemoryContext old;

	if (!IsUnderPostmaster)
		return postmaster_area;
	if (backend_area != NULL)
		return backend_area;
	Assert(pyrate_shared != NULL);
	LWLockRegisterTranche(pyrate_shared->area_tranche, "pyrate_memory_area");
	old = MemoryContextSwitchTo(TopMemoryContext);
	backend_area = dsa_attach_in_place(arena_place, NULL);
	MemoryContextSwitchTo(old);
	dsa_pin_mapping(backend_area);
	on_shmem_exit(dsa_on_shmem_exit_release_in_place, PointerGetDatum(arena_place));
	return backend_area;
}

bool
pyrate_reserve_whole(dsa_area *area)
{
	for (;;)
	{
		dsa_pointer dp;
		bool		kept = false;
		bool		whole;

		SpinLockAcquire(&pyrate_shared->reserve_lock);
		whole = pyrate_shared->reserve_held >= pyrate_shared->reserve_target;
		SpinLockRelease(&pyrate_shared->reserve_lock);
		if (whole)
			return true;
		dp = dsa_allocate_extended(area, PYRATE_RESERVE_CHUNK, DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(dp))
			return false;
		SpinLockAcquire(&pyrate_shared->reserve_lock);
		if (pyrate_shared->reserve_held < pyrate_shared->reserve_target)
		{
			pyrate_shared->reserve[pyrate_shared->reserve_held++] = dp;
			kept = true;
		}
		SpinLockRelease(&pyrate_shared->reserve_lock);
		if (!kept)
		{
			dsa_free(area, dp);
			return true;
		}
	}
}

bool
pyrate_reserve_release(dsa_area *area)
{
	dsa_pointer dp = InvalidDsaPointer;

	SpinLockAcquire(&pyrate_shared->reserve_lock);
	if (pyrate_shared->reserve_held > 0)
		dp = pyrate_shared->reserve[--pyrate_shared->reserve_held];
	SpinLockRelease(&pyrate_shared->reserve_lock);
	if (!DsaPointerIsValid(dp))
		return false;
	dsa_free(area, dp);
	return true;
}
