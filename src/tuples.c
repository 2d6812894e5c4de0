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
#include "catalog/pg_collation.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

void
pyrate_rel_open(PyrateRel *r, Oid nsp, const char *relname, LOCKMODE mode)
{
	Oid			relid = get_relname_relid(relname, nsp);
	List	   *indexes;
	ListCell   *lc;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pyrate's table \"%s\" is missing from schema \"%s\"",
						relname, get_namespace_name(nsp)),
				 errhint("Recreate the extension: DROP EXTENSION pyrate; CREATE EXTENSION pyrate.")));
	r->heap = table_open(relid, mode);
	r->lockmode = mode;
	r->nindexes = 0;
	indexes = RelationGetIndexList(r->heap);
	foreach(lc, indexes)
	{
		Relation	idx;

		if (r->nindexes == PYRATE_MAX_INDEXES)
			elog(ERROR, "pyrate's table \"%s\" has too many indexes", relname);
		idx = index_open(lfirst_oid(lc), mode);
		r->indexes[r->nindexes] = idx;
		r->info[r->nindexes] = BuildIndexInfo(idx);
		if (r->info[r->nindexes]->ii_Expressions != NIL ||
			r->info[r->nindexes]->ii_Predicate != NIL)
			elog(ERROR, "pyrate's table \"%s\" has an expression or partial index", relname);
		r->nindexes++;
	}
	list_free(indexes);
	r->slot = table_slot_create(r->heap, NULL);
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
	pyrate_simple_heap_update(r->heap, otid, tup);
	if (!HeapTupleIsHeapOnly(tup))
		insert_index_entries(r, tup);
}

/* Whether an update or delete happened; false when another got there first. */
static bool
changed(PyrateRel *r, TM_Result res, const char *what)
{
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_Deleted:
		case TM_Updated:
		case TM_SelfModified:
			return false;
		default:
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

	res = pyrate_heap_update(r->heap, otid, tup, GetCurrentCommandId(true),
							 InvalidSnapshot, true, &tmfd, &lockmode);
	if (!changed(r, res, "updating"))
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
	return changed(r, res, "deleting from");
}

bool
pyrate_probe(PyrateRel *r, Relation index, ScanKey keys, int nkeys,
			 ScanDirection dir, Snapshot snap)
{
	IndexScanDesc scan;
	bool		found;

	scan = index_beginscan(r->heap, index, snap, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, dir, r->slot);
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
	ScanKeyEntryInitialize(key, 0, att, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ,
						   PointerGetDatum(cstring_to_text(value)));
}
