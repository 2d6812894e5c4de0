/*
 * routing.c — definitions, and which definition a bucket name routes to.
 *
 * Definitions live in pyrate_definition_data (dumped by pg_dump).  Each
 * backend caches them; any change to the table invalidates the cache through
 * a relcache invalidation, sent by pyrate_define/pyrate_undefine and by a
 * trigger for direct edits, so every backend routes by committed definitions.
 *
 * Routing: an exact name beats a pattern; among patterns ('*' matches any
 * run of characters) the longest literal prefix wins, then the most literal
 * characters, then the pattern that sorts first.
 */
#include "routing.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "tuples.h"

#define DEFINITIONS_TABLE "pyrate_definition_data"

enum
{
	Anum_def_pattern = 1,
	Anum_def_rates,
	Anum_def_storage,
	Anum_def_dry_run,
	Anum_def_created,
	Anum_def_slots,				/* 1.3 */
	Anum_def_max_buckets,		/* 1.3 */
	Anum_def_durable,			/* 1.4 */
	Natts_def = Anum_def_durable
};

static const PyrateTable definitions_table = {
	DEFINITIONS_TABLE, Natts_def, Anum_def_created,
	{{"pattern", TEXTOID}, {"rates", InvalidOid}, {"storage", TEXTOID},
	{"dry_run", BOOLOID}, {"created", TIMESTAMPTZOID}, {"slots", INT4OID},
	{"max_buckets", INT8OID}, {"durable", BOOLOID}}
};

typedef struct RoutingCache
{
	bool		valid;
	Oid			nsp;
	Oid			relid;
	MemoryContext cxt;
	int			nexact;
	PyrateDefinition *exact;	/* sorted by pattern */
	int			npatterns;
	PyrateDefinition *patterns; /* most specific first */
} RoutingCache;

static RoutingCache cache;

int			pyrate_default_storage = PYRATE_STORAGE_TABLE;

static const struct config_enum_entry storage_options[] = {
	{"table", PYRATE_STORAGE_TABLE, false},
	{"memory", PYRATE_STORAGE_MEMORY, false},
	{NULL, 0, false}
};

PG_FUNCTION_INFO_V1(pyrate_definitions_changed);

uint64		pyrate_definitions_generation = 0;

/* The definitions changed (here, or as another backend's invalidation says). */
static void
definitions_changed(void)
{
	cache.valid = false;
	pyrate_definitions_generation++;
}

static void
routing_relcache_cb(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cache.relid)
		definitions_changed();
}

void
pyrate_routing_init(void)
{
	DefineCustomEnumVariable("pyrate.default_storage",
							 "Storage engine pyrate_define uses when none is given.",
							 NULL,
							 &pyrate_default_storage,
							 PYRATE_STORAGE_TABLE,
							 storage_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	CacheRegisterRelcacheCallback(routing_relcache_cb, (Datum) 0);
}

const char *
pyrate_storage_name(PyrateStorage s)
{
	return s == PYRATE_STORAGE_MEMORY ? "memory" : "table";
}

static void
definitions_invalidate(Oid nsp)
{
	Oid			relid = get_relname_relid(DEFINITIONS_TABLE, nsp);

	if (OidIsValid(relid))
		CacheInvalidateRelcacheByRelid(relid);
	definitions_changed();
}

bool
pyrate_pattern_match(const char *pattern, const char *name)
{
	const char *star_p = NULL;
	const char *star_n = NULL;

	while (*name)
	{
		if (*pattern == '*')
		{
			star_p = ++pattern;
			star_n = name;
		}
		else if (*pattern == *name)
		{
			pattern++;
			name++;
		}
		else if (star_p)
		{
			pattern = star_p;
			name = ++star_n;
		}
		else
			return false;
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

static size_t
literal_prefix(const char *pattern)
{
	return strcspn(pattern, "*");
}

static size_t
literal_chars(const char *pattern)
{
	size_t		n = 0;

	for (; *pattern; pattern++)
		n += *pattern != '*';
	return n;
}

static int
cmp_exact(const void *a, const void *b)
{
	return strcmp(((const PyrateDefinition *) a)->pattern,
				  ((const PyrateDefinition *) b)->pattern);
}

static int
cmp_specific(const void *a, const void *b)
{
	const char *pa = ((const PyrateDefinition *) a)->pattern;
	const char *pb = ((const PyrateDefinition *) b)->pattern;
	size_t		la = literal_prefix(pa),
				lb = literal_prefix(pb);

	if (la != lb)
		return la > lb ? -1 : 1;
	la = literal_chars(pa);
	lb = literal_chars(pb);
	if (la != lb)
		return la > lb ? -1 : 1;
	return strcmp(pa, pb);
}

PyrateStorage
pyrate_storage_from_text(const char *s)
{
	const struct config_enum_entry *e;

	for (e = storage_options; e->name; e++)
		if (strcmp(e->name, s) == 0)
			return (PyrateStorage) e->val;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown storage \"%s\"", s),
			 errhint("Use 'table' (durable, transactional) or 'memory' (shared memory, needs shared_preload_libraries = 'pyrate').")));
	return PYRATE_STORAGE_TABLE;	/* keep compiler quiet */
}

static void
load_cache(Oid nsp)
{
	PyrateRel	rel;
	Snapshot	snap;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext old;
	List	   *exact = NIL;
	List	   *patterns = NIL;
	ListCell   *lc;
	int			i;

	if (cache.cxt == NULL)
		cache.cxt = AllocSetContextCreate(TopMemoryContext, "pyrate routing",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(cache.cxt);
	cache.valid = false;
	cache.nexact = cache.npatterns = 0;

	pyrate_rel_open(&rel, nsp, &definitions_table, AccessShareLock);
	cache.nsp = nsp;
	cache.relid = RelationGetRelid(rel.heap);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel.heap, snap, 0, NULL);
	old = MemoryContextSwitchTo(cache.cxt);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Datum		values[Natts_def];
		bool		nulls[Natts_def];
		PyrateDefinition *d = palloc0(sizeof(PyrateDefinition));

		pyrate_rel_deform(&rel, tup, values, nulls);
		if (nulls[Anum_def_pattern - 1] || nulls[Anum_def_rates - 1] ||
			nulls[Anum_def_storage - 1] || nulls[Anum_def_dry_run - 1])
			continue;
		d->pattern = TextDatumGetCString(values[Anum_def_pattern - 1]);
		d->nrates = pyrate_rates_from_array(DatumGetArrayTypeP(values[Anum_def_rates - 1]),
											d->rates);
		d->storage = pyrate_storage_from_text(TextDatumGetCString(values[Anum_def_storage - 1]));
		d->dry_run = DatumGetBool(values[Anum_def_dry_run - 1]);
		/* the table's CHECK keeps slots in range; anything else is exact */
		if (rel.ncolumns >= Anum_def_slots && !nulls[Anum_def_slots - 1])
		{
			int32		slots = DatumGetInt32(values[Anum_def_slots - 1]);

			d->slots = slots >= 1 && slots <= PYR_MAX_SLOTS ? slots : 0;
		}
		if (rel.ncolumns >= Anum_def_max_buckets && !nulls[Anum_def_max_buckets - 1])
			d->max_buckets = Max(DatumGetInt64(values[Anum_def_max_buckets - 1]), 0);
		/* before 1.4 memory buckets were volatile; the table's CHECK keeps tables durable */
		d->durable = d->storage == PYRATE_STORAGE_TABLE ||
			(rel.ncolumns >= Anum_def_durable && !nulls[Anum_def_durable - 1] &&
			 DatumGetBool(values[Anum_def_durable - 1]));
		if (strchr(d->pattern, '*'))
			patterns = lappend(patterns, d);
		else
			exact = lappend(exact, d);
	}
	cache.exact = palloc(sizeof(PyrateDefinition) * Max(list_length(exact), 1));
	cache.patterns = palloc(sizeof(PyrateDefinition) * Max(list_length(patterns), 1));
	i = 0;
	foreach(lc, exact)
		cache.exact[i++] = *(PyrateDefinition *) lfirst(lc);
	cache.nexact = i;
	i = 0;
	foreach(lc, patterns)
		cache.patterns[i++] = *(PyrateDefinition *) lfirst(lc);
	cache.npatterns = i;
	MemoryContextSwitchTo(old);
	qsort(cache.exact, cache.nexact, sizeof(PyrateDefinition), cmp_exact);
	qsort(cache.patterns, cache.npatterns, sizeof(PyrateDefinition), cmp_specific);

	table_endscan(scan);
	UnregisterSnapshot(snap);
	pyrate_rel_close(&rel);
	cache.valid = true;
}

const PyrateDefinition *
pyrate_route_or_null(Oid nsp, const char *name)
{
	PyrateDefinition key;
	const PyrateDefinition *d;
	int			i;

	if (!cache.valid || cache.nsp != nsp)
		load_cache(nsp);
	key.pattern = (char *) name;
	d = bsearch(&key, cache.exact, cache.nexact, sizeof(PyrateDefinition), cmp_exact);
	if (d)
		return d;
	for (i = 0; i < cache.npatterns; i++)
		if (pyrate_pattern_match(cache.patterns[i].pattern, name))
			return &cache.patterns[i];
	return NULL;
}

const PyrateDefinition *
pyrate_route(Oid nsp, const char *name)
{
	const PyrateDefinition *d = pyrate_route_or_null(nsp, name);

	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no rate limit is defined for bucket \"%s\"", name),
				 errhint("Define one for the name or a pattern matching it, as in SELECT pyrate_define('%s', '{5/s,1000/h}').",
						 name)));
	return d;
}

/* Find a definition row by pattern; leaves it in rel->slot. */
static bool
find_definition(PyrateRel *rel, const char *pattern)
{
	static const AttrNumber key_atts[] = {Anum_def_pattern};
	ScanKeyData key;

	pyrate_key_text(&key, 1, pattern);
	return pyrate_probe(rel, pyrate_rel_index(rel, 1, key_atts), &key, 1,
						ForwardScanDirection, SnapshotSelf);
}

void
pyrate_definitions_lock(Oid nsp)
{
	PyrateRel	rel;

	pyrate_rel_open(&rel, nsp, &definitions_table, RowExclusiveLock);
	/* one definer at a time: a read and the write after it must not race */
	LockRelationOid(RelationGetRelid(rel.heap), ShareUpdateExclusiveLock);
	pyrate_rel_close(&rel);
}

bool
pyrate_definition_stored(Oid nsp, const char *pattern, PyrateStorage *storage)
{
	PyrateRel	rel;
	bool		found;

	pyrate_rel_open(&rel, nsp, &definitions_table, AccessShareLock);
	found = find_definition(&rel, pattern);
	if (found)
		*storage = pyrate_storage_from_text(TextDatumGetCString(rel.slot->tts_values[Anum_def_storage - 1]));
	pyrate_rel_close(&rel);
	return found;
}

void
pyrate_definition_store(Oid nsp, const char *pattern, const pyr_rate *rates, int nrates,
						PyrateStorage storage, bool dry_run, int slots, int64 max_buckets,
						bool durable)
{
	PyrateRel	rel;
	Datum		values[Natts_def];
	bool		nulls[Natts_def] = {false};
	HeapTuple	tup;

	pyrate_rel_open(&rel, nsp, &definitions_table, RowExclusiveLock);
	values[Anum_def_pattern - 1] = CStringGetTextDatum(pattern);
	values[Anum_def_rates - 1] = PointerGetDatum(pyrate_rates_to_array(pyrate_rate_type_oid(nsp), rates, nrates));
	values[Anum_def_storage - 1] = CStringGetTextDatum(pyrate_storage_name(storage));
	values[Anum_def_dry_run - 1] = BoolGetDatum(dry_run);
	values[Anum_def_created - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[Anum_def_slots - 1] = Int32GetDatum(slots);
	nulls[Anum_def_slots - 1] = slots == 0;
	values[Anum_def_max_buckets - 1] = Int64GetDatum(max_buckets);
	nulls[Anum_def_max_buckets - 1] = max_buckets == 0;
	values[Anum_def_durable - 1] = BoolGetDatum(durable);
	/* (before 1.3 the table has no slots column, and pyrate_define no slots) */
	if (find_definition(&rel, pattern))
	{
		/* redefining replaces the rates; the bucket's items stay */
		values[Anum_def_created - 1] = rel.slot->tts_values[Anum_def_created - 1];
		nulls[Anum_def_created - 1] = rel.slot->tts_isnull[Anum_def_created - 1];
		tup = pyrate_rel_form(&rel, values, nulls);
		pyrate_rel_update(&rel, &rel.slot->tts_tid, tup);
	}
	else
	{
		tup = pyrate_rel_form(&rel, values, nulls);
		pyrate_rel_insert(&rel, tup);
	}
	pyrate_rel_close(&rel);
	definitions_invalidate(nsp);
	CommandCounterIncrement();
}

bool
pyrate_definition_remove(Oid nsp, const char *pattern)
{
	PyrateRel	rel;
	bool		found;

	pyrate_rel_open(&rel, nsp, &definitions_table, RowExclusiveLock);
	found = find_definition(&rel, pattern) && pyrate_rel_delete(&rel, &rel.slot->tts_tid);
	pyrate_rel_close(&rel);
	if (found)
	{
		definitions_invalidate(nsp);
		CommandCounterIncrement();
	}
	return found;
}

/* Statement trigger on the definitions table: direct edits reach every cache. */
Datum
pyrate_definitions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pyrate_definitions_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	definitions_changed();
	PG_RETURN_POINTER(NULL);
}
