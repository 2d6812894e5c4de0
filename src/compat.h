/*
 * compat.h — every PostgreSQL version difference pyrate cares about, in one
 * place.  Built and tested on 15; the checks below keep 13–17 in reach.
 */
#ifndef PYRATE_COMPAT_H
#define PYRATE_COMPAT_H

#if PG_VERSION_NUM < 130000
#error "pyrate needs PostgreSQL 13 or later"
#endif

/* MarkGUCPrefixReserved appeared in 15; EmitWarningsOnPlaceholders before. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* The varlena helpers moved in 16. */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/* simple_heap_update reports which indexes need entries from 16 on. */
#if PG_VERSION_NUM >= 160000
#define pyrate_simple_heap_update(rel, otid, tup) \
	do { \
		TU_UpdateIndexes update_indexes_; \
		simple_heap_update((rel), (otid), (tup), &update_indexes_); \
	} while (0)
#else
#define pyrate_simple_heap_update(rel, otid, tup) simple_heap_update((rel), (otid), (tup))
#endif

/* heap_update grew the same out-parameter in 16. */
#if PG_VERSION_NUM >= 160000
#define pyrate_heap_update(rel, otid, tup, cid, crosscheck, wait, tmfd, lockmode) \
	({ \
		TU_UpdateIndexes update_indexes_; \
		heap_update((rel), (otid), (tup), (cid), (crosscheck), (wait), (tmfd), (lockmode), &update_indexes_); \
	})
#else
#define pyrate_heap_update(rel, otid, tup, cid, crosscheck, wait, tmfd, lockmode) \
	heap_update((rel), (otid), (tup), (cid), (crosscheck), (wait), (tmfd), (lockmode))
#endif

#endif							/* PYRATE_COMPAT_H */
