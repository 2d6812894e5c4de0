/*
 * tuples.c — direct access to pyrate's own tables (see tuples.h).
 */
#include "tuples.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

static void
bad_layout(Relation heap, const char *problem, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pyrate's table %s.%s has been altered: %s",
					quote_identifier(get_namespace_name(RelationGetNamespace(heap))),
					quote_identifier(RelationGetRelationName(heap)), problem),
			 errdetail("pyrate reads and writes this table directly and needs exactly the layout it created."),
			 errhint("%s", hint)));
}

static bool
type_is(Oid type, const PyrateColumn *c, Oid nsp)
{
	if (OidIsValid(c->type))
		return type == c->type;
	return get_element_type(type) ==
		GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("pyrate_rate"),
						ObjectIdGetDatum(nsp));
}

/*
 * The columns of t the table has, in order from the first: every required
 * one, then those of later versions it has been updated to; after them only
 * dropped columns.  ERROR naming the table otherwise.
 */
static int
check_columns(Relation heap, const PyrateTable *t, Oid nsp)
{
	TupleDesc	desc = RelationGetDescr(heap);
	char		msg[2 * NAMEDATALEN + 64];
	int			present = 0;
	int			i;

	while (present < Min(desc->natts, t->ncolumns))
	{
		Form_pg_attribute att = TupleDescAttr(desc, present);

		if (att->attisdropped || strcmp(NameStr(att->attname), t->columns[present].name) != 0 ||
			!type_is(att->atttypid, &t->columns[present], nsp))
			break;
		present++;
	}
	if (present < t->nrequired)
	{
		if (present < desc->natts)
			snprintf(msg, sizeof(msg), "column %d is not \"%s\" of its original type", present + 1,
					 t->columns[present].name);
		else
			snprintf(msg, sizeof(msg), "column \"%s\" is missing", t->columns[present].name);
		bad_layout(heap, msg,
				   "Restore the column as the extension created it, or save the definitions (pg_dump -t) and recreate the extension: DROP EXTENSION pyrate; CREATE EXTENSION pyrate.");
	}
	for (i = present; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		snprintf(msg, sizeof(msg), "it has a column \"%s\" of its own", NameStr(att->attname));
		bad_layout(heap, msg, psprintf("Drop the column: ALTER TABLE %s.%s DROP COLUMN %s;",
									   quote_identifier(get_namespace_name(RelationGetNamespace(heap))),
									   quote_identifier(RelationGetRelationName(heap)),
									   quote_identifier(NameStr(att->attname))));
	}
	return present;
}

/* Only plain btrees on columns: those are the indexes pyrate maintains. */
static void
check_index(Relation heap, Relation idx, IndexInfo *ii)
{
	const char *problem = NULL;

	if (idx->rd_rel->relam != BTREE_AM_OID)
		problem = "is not a btree";
	else if (ii->ii_Expressions != NIL)
		problem = "is on an expression";
	else if (ii->ii_Predicate != NIL)
		problem = "is partial";
	if (problem)
	{
		char		msg[NAMEDATALEN + 64];

		snprintf(msg, sizeof(msg), "its index \"%s\" %s", RelationGetRelationName(idx), problem);
		bad_layout(heap, msg,
				   psprintf("Drop the index: DROP INDEX %s.%s; pyrate maintains only its own btree indexes.",
							quote_identifier(get_namespace_name(RelationGetNamespace(idx))),
							quote_identifier(RelationGetRelationName(idx))));
	}
}

/*
 * What an open of a table found, kept per backend so the next open of it
 * skips the name lookup and the checks: the table's oid, its columns
 * present, its indexes and their IndexInfo (btrees on columns: nothing in
 * them depends on a transaction).  An entry stays valid until a relcache
 * invalidation of the table (or of every relation) arrives: any ALTER TABLE,
 * CREATE or DROP INDEX, DROP or rename sends one.  Opening the table takes
 * its lock first, which accepts invalidations pending; one that arrives then
 * sends the open the long way.
 */
typedef struct LayoutEntry
{
	const PyrateTable *table;
	Oid			nsp;
	Oid			relid;
	bool		valid;
	int			ncolumns;
	int			nindexes;
	Oid			indexes[PYRATE_MAX_INDEXES];
	IndexInfo  *info[PYRATE_MAX_INDEXES];
} LayoutEntry;

#define LAYOUT_ENTRIES 8

static LayoutEntry layouts[LAYOUT_ENTRIES];
static int	nlayouts = 0;
static MemoryContext layout_cxt = NULL;

/*
 * IndexInfo by index oid, kept for the backend's life: what BuildIndexInfo
 * reads of an index (its columns, its being a plain btree) never changes
 * while the index exists, and a table's entry is rebuilt at every
 * invalidation of it (each reclaim of a table bucket sends one).  An oid
 * used again by another index after a drop is told apart by its columns.
 */
typedef struct IndexInfoEntry
{
	Oid			indexoid;
	IndexInfo  *info;
} IndexInfoEntry;

static IndexInfoEntry *index_infos = NULL;
static int	nindex_infos = 0;
static int	max_index_infos = 0;

static IndexInfo *
index_info(Relation idx)
{
	Oid			oid = RelationGetRelid(idx);
	IndexInfo  *ii;
	MemoryContext old;
	int			i;

	for (i = 0; i < nindex_infos; i++)
	{
		ii = index_infos[i].info;
		if (index_infos[i].indexoid == oid &&
			ii->ii_NumIndexAttrs == idx->rd_index->indnatts &&
			memcmp(ii->ii_IndexAttrNumbers, idx->rd_index->indkey.values,
				   sizeof(AttrNumber) * ii->ii_NumIndexAttrs) == 0 &&
			(ii->ii_Expressions == NIL) == heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
			(ii->ii_Predicate == NIL) == heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL))
			return ii;
	}
	old = MemoryContextSwitchTo(layout_cxt);
	ii = BuildIndexInfo(idx);
	for (i = 0; i < nindex_infos; i++)
		if (index_infos[i].indexoid == oid)
			break;
	if (i == nindex_infos)
	{
		if (nindex_infos == max_index_infos)
		{
			max_index_infos = Max(16, max_index_infos * 2);
			index_infos = index_infos == NULL
				? palloc(sizeof(IndexInfoEntry) * max_index_infos)
				: repalloc(index_infos, sizeof(IndexInfoEntry) * max_index_infos);
		}
		nindex_infos++;
	}
	index_infos[i].indexoid = oid;
	index_infos[i].info = ii;
	MemoryContextSwitchTo(old);
	return ii;
}

/* bumped by every relcache invalidation this backend accepts */
static uint64 layout_invalidations = 0;

static void
layout_relcache_cb(Datum arg, Oid relid)
{
	layout_invalidations++;
	for (int i = 0; i < nlayouts; i++)
		if (!OidIsValid(relid) || layouts[i].relid == relid)
			layouts[i].valid = false;
}

static LayoutEntry *
layout_entry(Oid nsp, const PyrateTable *t)
{
	LayoutEntry *e;

	for (int i = 0; i < nlayouts; i++)
		if (layouts[i].table == t && layouts[i].nsp == nsp)
			return &layouts[i];
	if (layout_cxt == NULL)
	{
		layout_cxt = AllocSetContextCreate(TopMemoryContext, "pyrate table layouts",
										   ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(layout_relcache_cb, (Datum) 0);
	}
	/* schemas come and go (DROP and CREATE EXTENSION): the oldest entry makes room */
	if (nlayouts == LAYOUT_ENTRIES)
	{
		memmove(&layouts[0], &layouts[1], sizeof(LayoutEntry) * (LAYOUT_ENTRIES - 1));
		nlayouts--;
	}
	e = &layouts[nlayouts++];
	memset(e, 0, sizeof(*e));
	e->table = t;
	e->nsp = nsp;
	return e;
}

/* The table as its valid entry describes it, opened; false (nothing open) otherwise. */
static bool
open_as_cached(PyrateRel *r, LayoutEntry *e, LOCKMODE mode)
{
	if (!e->valid)
		return false;
	r->heap = try_table_open(e->relid, mode);
	if (r->heap == NULL)
		return false;
	if (!e->valid || RelationGetNamespace(r->heap) != e->nsp ||
		strcmp(RelationGetRelationName(r->heap), e->table->name) != 0)
	{
		table_close(r->heap, NoLock);
		return false;
	}
	r->ncolumns = e->ncolumns;
	for (int i = 0; i < e->nindexes; i++)
	{
		r->indexes[i] = index_open(e->indexes[i], mode);
		r->info[i] = e->info[i];
	}
	r->nindexes = e->nindexes;
	return true;
}

/* Open t as its cached layout says, when that layout is still valid. */
static bool
rel_open_cached(PyrateRel *r, LayoutEntry *e, const PyrateTable *t, LOCKMODE mode)
{
	r->table = t;
	r->lockmode = mode;
	if (!open_as_cached(r, e, mode))
		return false;
	r->slot = table_slot_create(r->heap, NULL);
	return true;
}

void
pyrate_rel_open(PyrateRel *r, Oid nsp, const PyrateTable *t, LOCKMODE mode)
{
	LayoutEntry *e = layout_entry(nsp, t);
	Oid			relid;
	List	   *indexes;
	ListCell   *lc;
	uint64		seen;

	if (rel_open_cached(r, e, t, mode))
		return;
	e->valid = false;
	relid = get_relname_relid(t->name, nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pyrate's table \"%s\" is missing from schema \"%s\"",
						t->name, get_namespace_name(nsp)),
				 errhint("Recreate the extension: DROP EXTENSION pyrate; CREATE EXTENSION pyrate.")));
	r->heap = table_open(relid, mode);
	/* what is read from here on is what the invalidations accepted so far left */
	seen = layout_invalidations;
	r->nindexes = 0;
	r->ncolumns = check_columns(r->heap, t, nsp);
	indexes = RelationGetIndexList(r->heap);
	foreach(lc, indexes)
	{
		Relation	idx;

		if (r->nindexes == PYRATE_MAX_INDEXES)
			bad_layout(r->heap, "it has more indexes than pyrate created",
					   "Drop the indexes you added to it.");
		idx = index_open(lfirst_oid(lc), mode);
		r->indexes[r->nindexes] = idx;
		r->info[r->nindexes] = index_info(idx);
		check_index(r->heap, idx, r->info[r->nindexes]);
		e->indexes[r->nindexes] = RelationGetRelid(idx);
		e->info[r->nindexes] = r->info[r->nindexes];
		r->nindexes++;
	}
	list_free(indexes);
	/* checked whole, and nothing changed meanwhile: the next open may trust it */
	e->relid = relid;
	e->ncolumns = r->ncolumns;
	e->nindexes = r->nindexes;
	e->valid = layout_invalidations == seen;
	r->slot = table_slot_create(r->heap, NULL);
}

const PyrateTable *
pyrate_rel_open_either(PyrateRel *r, Oid nsp, const PyrateTable *a, const PyrateTable *b,
					   LOCKMODE mode)
{
	const PyrateTable *t = a;
	Oid			relid;

	if (rel_open_cached(r, layout_entry(nsp, a), a, mode))
		return a;
	if (rel_open_cached(r, layout_entry(nsp, b), b, mode))
		return b;
	/* the first column tells them apart; pyrate_rel_open checks the rest */
	relid = get_relname_relid(a->name, nsp);
	if (OidIsValid(relid))
	{
		char	   *first = get_attname(relid, 1, true);

		if (first && strcmp(first, b->columns[0].name) == 0)
			t = b;
	}
	pyrate_rel_open(r, nsp, t, mode);
	return t;
}

HeapTuple
pyrate_rel_form(PyrateRel *r, const Datum *values, const bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(r->heap);
	int			n = r->ncolumns;
	Datum	   *v;
	bool	   *isnull;

	if (desc->natts == n)
		return heap_form_tuple(desc, (Datum *) values, (bool *) nulls);
	/* columns dropped after pyrate's own: NULL */
	v = palloc(sizeof(Datum) * desc->natts);
	isnull = palloc(sizeof(bool) * desc->natts);
	memcpy(v, values, sizeof(Datum) * n);
	memcpy(isnull, nulls, sizeof(bool) * n);
	memset(isnull + n, true, sizeof(bool) * (desc->natts - n));
	return heap_form_tuple(desc, v, isnull);
}

void
pyrate_rel_deform(PyrateRel *r, HeapTuple tup, Datum *values, bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(r->heap);
	int			i;

	for (i = 0; i < r->ncolumns; i++)
		values[i] = heap_getattr(tup, i + 1, desc, &nulls[i]);
}

void
pyrate_rel_close(PyrateRel *r)
{
	int			i;

	ExecDropSingleTupleTableSlot(r->slot);
	for (i = 0; i < r->nindexes; i++)
		index_close(r->indexes[i], NoLock);
	table_close(r->heap, NoLock);
}

Relation
pyrate_rel_index(PyrateRel *r, int natts, const AttrNumber *atts)
{
	int			i;

	for (i = 0; i < r->nindexes; i++)
	{
		IndexInfo  *ii = r->info[i];
		int			k;

		if (ii->ii_NumIndexKeyAttrs != natts)
			continue;
		for (k = 0; k < natts; k++)
			if (ii->ii_IndexAttrNumbers[k] != atts[k])
				break;
		if (k == natts)
			return r->indexes[i];
	}
	elog(ERROR, "pyrate's table \"%s\" lacks one of its indexes",
		 RelationGetRelationName(r->heap));
	return NULL;				/* keep compiler quiet */
}

static void
insert_index_entries(PyrateRel *r, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(r->heap);
	int			i;

	for (i = 0; i < r->nindexes; i++)
	{
		IndexInfo  *ii = r->info[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];
		int			k;

		for (k = 0; k < ii->ii_NumIndexAttrs; k++)
			values[k] = heap_getattr(tup, ii->ii_IndexAttrNumbers[k], desc, &isnull[k]);
		index_insert(r->indexes[i], values, isnull, &tup->t_self, r->heap,
					 ii->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, ii);
	}
}

void
pyrate_rel_insert(PyrateRel *r, HeapTuple tup)
{
	simple_heap_insert(r->heap, tup);
	insert_index_entries(r, tup);
}

void
pyrate_rel_update(PyrateRel *r, ItemPointer otid, HeapTuple tup)
{
	simple_heap_update(r->heap, otid, tup);
	if (!HeapTupleIsHeapOnly(tup))
		insert_index_entries(r, tup);
}

/*
 * Whether an update or delete happened now, as heapam's own callers read
 * its result: false when another transaction changed or deleted the tuple
 * first, or when this very command already did (nothing left to do).
 */
static bool
changed(PyrateRel *r, TM_Result res, const TM_FailureData *tmfd, const char *what)
{
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Deleted:
		case TM_Updated:
			return false;
		case TM_SelfModified:
			/* by this command: done already; by an earlier one: a stale read */
			if (tmfd->cmax == GetCurrentCommandId(false))
				return false;
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("a row of pyrate's table \"%s\" was changed by an earlier command of this transaction while %s it",
							RelationGetRelationName(r->heap), what),
					 errhint("Retry the statement.")));
			break;
		case TM_Invisible:
			/* the row was written by a transaction this one cannot see yet */
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("a row of pyrate's table \"%s\" is not visible to this transaction while %s it",
							RelationGetRelationName(r->heap), what),
					 errhint("Retry the transaction.")));
			break;
		default:
			/* TM_BeingModified and TM_WouldBlock need wait = false: never asked for */
			elog(ERROR, "unexpected result %d %s \"%s\"", (int) res, what,
				 RelationGetRelationName(r->heap));
	}
	return false;				/* keep compiler quiet */
}

bool
pyrate_rel_update_if_unchanged(PyrateRel *r, ItemPointer otid, HeapTuple tup)
{
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	res;

	res = heap_update(r->heap, otid, tup, GetCurrentCommandId(true),
					  InvalidSnapshot, true, &tmfd, &lockmode);
	if (!changed(r, res, &tmfd, "updating"))
		return false;
	if (!HeapTupleIsHeapOnly(tup))
		insert_index_entries(r, tup);
	return true;
}

bool
pyrate_rel_delete(PyrateRel *r, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = heap_delete(r->heap, tid, GetCurrentCommandId(true), InvalidSnapshot,
					  true, &tmfd, false);
	return changed(r, res, &tmfd, "deleting");
}

/*
 * With an MVCC snapshot the index is read with SnapshotAny and each row
 * version checked against snap: the same answer, without the predicate
 * locks a serializable transaction's MVCC scan takes.  pyrate's tables are
 * its own bookkeeping, serialized by bucket locks: reading them must not
 * make two serializable transactions that touched different buckets fail
 * at commit.
 */
bool
pyrate_probe(PyrateRel *r, Relation index, ScanKey keys, int nkeys,
			 ScanDirection dir, Snapshot snap)
{
	IndexScanDesc scan;
	bool		mvcc = IsMVCCSnapshot(snap);
	bool		found;

	scan = index_beginscan(r->heap, index, mvcc ? SnapshotAny : snap, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while ((found = index_getnext_slot(scan, dir, r->slot)) &&
		   mvcc && !table_tuple_satisfies_snapshot(r->heap, r->slot, snap))
		CHECK_FOR_INTERRUPTS();
	if (found)
		slot_getallattrs(r->slot);
	index_endscan(scan);
	return found;
}

void
pyrate_key_int8(ScanKey key, AttrNumber att, StrategyNumber strategy, int64 value)
{
	RegProcedure proc;

	switch (strategy)
	{
		case BTLessStrategyNumber:
			proc = F_INT8LT;
			break;
		case BTLessEqualStrategyNumber:
			proc = F_INT8LE;
			break;
		case BTEqualStrategyNumber:
			proc = F_INT8EQ;
			break;
		case BTGreaterEqualStrategyNumber:
			proc = F_INT8GE;
			break;
		default:
			proc = F_INT8GT;
			break;
	}
	ScanKeyInit(key, att, strategy, proc, Int64GetDatum(value));
}

void
pyrate_key_text(ScanKey key, AttrNumber att, const char *value)
{
	pyrate_key_text_op(key, att, BTEqualStrategyNumber, value);
}

void
pyrate_key_text_op(ScanKey key, AttrNumber att, StrategyNumber strategy, const char *value)
{
	RegProcedure proc;

	switch (strategy)
	{
		case BTEqualStrategyNumber:
			proc = F_TEXTEQ;
			break;
		case BTGreaterEqualStrategyNumber:
			proc = F_TEXT_GE;
			break;
		default:
			elog(ERROR, "unexpected strategy %d for a text key", (int) strategy);
			proc = InvalidOid;	/* keep compiler quiet */
	}
	ScanKeyEntryInitialize(key, 0, att, strategy, InvalidOid, C_COLLATION_OID, proc,
						   PointerGetDatum(cstring_to_text(value)));
}
