/*
 * pyrate.c — module entry: _PG_init calls one init per module, and each
 * module defines its own settings and its own shared memory.
 */
#include "base.h"

#include "utils/guc.h"

#include "engine_memory.h"
#include "limiter.h"
#include "routing.h"
#include "stats.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	pyrate_routing_init();
	pyrate_limiter_init();
	pyrate_memory_init();
	pyrate_stats_init();
	pyrate_worker_init();
	MarkGUCPrefixReserved("pyrate");
}
