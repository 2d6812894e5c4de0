/*
 * stats.h — per-definition counters (stats.c), the pyrate_stats view.
 */
#ifndef PYRATE_STATS_H
#define PYRATE_STATS_H

#include "base.h"

typedef enum PyrateStatKind
{
	PYRATE_STAT_ACQUIRED = 0,	/* admitted (and stored) */
	PYRATE_STAT_REJECTED,		/* refused, after any wait */
	PYRATE_STAT_WOULD_REJECT,	/* a dry-run definition would have refused */
	PYRATE_STAT_WAITED,			/* a blocking acquire slept at least once */
	PYRATE_STAT_KINDS
} PyrateStatKind;

/* Defines pyrate.max_stats (when preloading). */
void		pyrate_stats_init(void);
/* From pyrate.c's shared-memory hooks, when preloading. */
void		pyrate_stats_shmem_request(void);
void		pyrate_stats_shmem_startup(void);
bool		pyrate_stats_available(void);
/* Count one decision for a definition; wait_ms adds to its total wait. */
void		pyrate_stats_count(const char *pattern, PyrateStatKind kind, int64 wait_ms);

#endif							/* PYRATE_STATS_H */
