/*
 * pyrate.c — module entry.  _PG_init calls one init per module (each
 * defines its own settings); when preloading, one chain of shared-memory
 * hooks asks each module for its shared memory and creates it, and one
 * object access hook tells the modules that watch DDL.
 */
#include "base.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"

#include "engine_memory.h"
#include "limiter.h"
#include "routing.h"
#include "stats.h"
#include "table_pending.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

static void
pyrate_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	pyrate_pending_shmem_request();
	pyrate_memory_shmem_request();
	pyrate_stats_shmem_request();
	pyrate_worker_shmem_request();
}

static void
pyrate_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	pyrate_pending_shmem_startup();
	pyrate_memory_shmem_startup();
	pyrate_stats_shmem_startup();
	pyrate_worker_shmem_startup();
}

static void
pyrate_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	pyrate_memory_object_access(access, classId, objectId, subId);
	pyrate_worker_object_access(access, classId, objectId, subId);
}

void
_PG_init(void)
{
	pyrate_routing_init();
	pyrate_limiter_init();
	pyrate_pending_init();
	pyrate_memory_init();
	pyrate_stats_init();
	pyrate_worker_init();
	MarkGUCPrefixReserved("pyrate");

	prev_object_access_hook = object_access_hook;
	object_access_hook = pyrate_object_access;
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = pyrate_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = pyrate_shmem_startup;
	}
}
