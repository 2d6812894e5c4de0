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
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
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

void
pyrate_rel_open(PyrateRel *r, Oid nsp, const PyrateTable *t, LOCKMODE mode)
{
	Oid			relid = get_relname_relid(t->name, nsp);
	List	   *indexes;
	ListCell   *lc;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pyrate's table \"%s\" is missing from schema \"%s\"",
						t->name, get_namespace_name(nsp)),
				 errhint("Recreate the extension: DROP EXTENSION pyrate; CREATE EXTENSION pyrate.")));
	r->table = t;
	r->heap = table_open(relid, mode);
	r->lockmode = mode;
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
		r->info[r->nindexes] = BuildIndexInfo(idx);
		r->nindexes++;
		check_index(r->heap, idx, r->info[r->nindexes - 1]);
	}
	list_free(indexes);
	r->slot = table_slot_create(r->heap, NULL);
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
