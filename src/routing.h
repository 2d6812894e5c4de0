/*
 * routing.h — definitions (pattern -> rates, storage, dry run), kept in
 * pyrate_definition_data and cached per backend, and which definition a
 * bucket name routes to.
 */
#ifndef PYRATE_ROUTING_H
#define PYRATE_ROUTING_H

#include "rate_type.h"

typedef enum PyrateStorage
{
	PYRATE_STORAGE_TABLE = 0,
	PYRATE_STORAGE_MEMORY
} PyrateStorage;

const char *pyrate_storage_name(PyrateStorage s);
/* ERROR naming the storages when s is none of them. */
PyrateStorage pyrate_storage_from_text(const char *s);

/* The GUC pyrate.default_storage. */
extern int	pyrate_default_storage;

typedef struct PyrateDefinition
{
	char	   *pattern;
	pyr_rate	rates[PYR_MAX_RATES];
	int			nrates;
	PyrateStorage storage;
	bool		dry_run;
	int			slots;			/* slots => n: bounded storage; 0: exact */
	int64		max_buckets;	/* memory buckets it may have at once; 0: no cap */
	bool		durable;		/* WAL-logged: tables always, memory unless durable => false */
} PyrateDefinition;

/*
 * Counts the changes of definitions this backend has heard of (its own, and
 * others' as their invalidations arrive): what a backend cached about
 * buckets under the old definitions can be told apart.
 */
extern uint64 pyrate_definitions_generation;

/* The definition a bucket name routes to; ERROR (42704) when none. */
const PyrateDefinition *pyrate_route(Oid nsp, const char *name);
/* Same, NULL when none. */
const PyrateDefinition *pyrate_route_or_null(Oid nsp, const char *name);
bool		pyrate_pattern_match(const char *pattern, const char *name);

/*
 * Changing definitions (pyrate_define and pyrate_undefine, define.c): take
 * the definers' lock first, so that reading a stored definition and
 * writing it cannot race another definer; the write reaches every backend's
 * cache.
 */
void		pyrate_definitions_lock(Oid nsp);
/* The stored definition's storage; false when the pattern has none. */
bool		pyrate_definition_stored(Oid nsp, const char *pattern, PyrateStorage *storage);
/* Insert or replace. */
void		pyrate_definition_store(Oid nsp, const char *pattern, const pyr_rate *rates,
									int nrates, PyrateStorage storage, bool dry_run, int slots,
									int64 max_buckets, bool durable);
/* false when the pattern had no definition */
bool		pyrate_definition_remove(Oid nsp, const char *pattern);

/* Defines pyrate.default_storage and the cache's invalidation. */
void		pyrate_routing_init(void);

#endif							/* PYRATE_ROUTING_H */
