/*
 * shmem.c — pyrate's shared memory: sizing, creation, and attaching to the
 * area that holds the memory engine's buckets.
 *
 * Layout (see PyrateShared in shmem.h for which lock guards what):
 *   "pyrate"            the fixed control struct
 *   "pyrate directory"  the bucket directory: nheads chain heads
 *   "pyrate arena"      pyrate.memory_size bytes, a DSA area created in place
 *                       and capped at its own size, so it never grows
 * The postmaster creates it all, restores the buckets saved at the last
 * clean shutdown, and saves them again when it exits cleanly.
 */
#include "pyrate.h"

#include <limits.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "shmem.h"

/* one directory head per this many bytes of arena */
#define BYTES_PER_HEAD 256

int			pyrate_memory_size = 32 * 1024;	/* kB */

PyrateShared *pyrate_shared = NULL;
LWLockPadded *pyrate_locks = NULL;
dsa_pointer *pyrate_heads = NULL;

static void *arena_place = NULL;
static dsa_area *postmaster_area = NULL;	/* the postmaster's own attachment */
static dsa_area *backend_area = NULL;	/* a child's, attached on first use */
static bool started_once = false;	/* postmaster: shared memory made before */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

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

static void
pyrate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PyrateShared)));
	RequestAddinShmemSpace(mul_size(head_count(), sizeof(dsa_pointer)));
	RequestAddinShmemSpace(arena_size());
	RequestNamedLWLockTranche("pyrate", PYRATE_PARTITIONS);
}

static void
save_at_exit(int code, Datum arg)
{
	/* after a crash (code != 0) there is nothing trustworthy to save */
	if (code == 0 && postmaster_area != NULL)
		pyrate_memory_save(postmaster_area);
}

static void
pyrate_shmem_startup(void)
{
	bool		found;
	bool		found_heads;
	bool		found_arena;
	uint32		i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pyrate_shared = ShmemInitStruct("pyrate", sizeof(PyrateShared), &found);
	pyrate_heads = ShmemInitStruct("pyrate directory",
								   mul_size(head_count(), sizeof(dsa_pointer)), &found_heads);
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
		SpinLockInit(&pyrate_shared->worker_mutex);
		for (i = 0; i < pyrate_shared->nheads; i++)
			pyrate_heads[i] = InvalidDsaPointer;
		pyrate_shared->area_tranche = LWLockNewTrancheId();
		LWLockRegisterTranche(pyrate_shared->area_tranche, "pyrate_memory_area");
		old = MemoryContextSwitchTo(TopMemoryContext);
		area = dsa_create_in_place(arena_place, arena_size(),
								   pyrate_shared->area_tranche, NULL);
		MemoryContextSwitchTo(old);
		dsa_pin(area);
		dsa_set_size_limit(area, arena_size());
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

	if (!IsUnderPostmaster && !found)
	{
		if (!started_once)
			pyrate_memory_restore(postmaster_area);
		else
			ereport(LOG,
					(errmsg("pyrate: the memory engine starts empty after a server process crashed"),
					 errdetail("Buckets in shared memory are lost when the server reinitializes it after a crash.")));
		started_once = true;
		on_shmem_exit(save_at_exit, (Datum) 0);
	}
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

void
pyrate_shmem_init(void)
{
	/* a PGC_POSTMASTER setting can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("pyrate.memory_size",
							"Shared memory for the memory storage engine's buckets.",
							"Buckets and their items live in this much shared memory; when it is full, "
							"buckets that have leaked empty are evicted, then acquires fail.",
							&pyrate_memory_size,
							32 * 1024, 1024, MAX_KILOBYTES,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pyrate_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pyrate_shmem_startup;

	pyrate_memory_init();
	pyrate_worker_init();
}
