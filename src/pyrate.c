/*
 * pyrate.c — module entry: settings and the init of each module.
 */
#include "pyrate.h"

#include <limits.h>

#include "utils/guc.h"

#include "shmem.h"
#include "stats.h"

PG_MODULE_MAGIC;

int			pyrate_buffer_ms = 50;
int			pyrate_leak_interval = 10000;
char	   *pyrate_database = NULL;
int			pyrate_default_storage = PYRATE_STORAGE_TABLE;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("pyrate.buffer_ms",
							"Extra milliseconds a blocking acquire sleeps past the computed wait.",
							NULL,
							&pyrate_buffer_ms,
							50, 0, 60000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pyrate.leak_interval",
							"How often the background worker leaks every bucket; 0 turns its leaking off.",
							NULL,
							&pyrate_leak_interval,
							10000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pyrate.database",
							   "Database the background worker connects to.",
							   "On a change the worker restarts to connect there.",
							   &pyrate_database,
							   "postgres",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("pyrate.default_storage",
							 "Storage engine pyrate_define uses when none is given.",
							 NULL,
							 &pyrate_default_storage,
							 PYRATE_STORAGE_TABLE,
							 pyrate_storage_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/* the memory engine's GUCs; its shared memory and the worker when preloading */
	pyrate_shmem_init();
	/* per-definition counters, in shared memory when preloading */
	pyrate_stats_init();

	MarkGUCPrefixReserved("pyrate");

	pyrate_routing_init();
}
