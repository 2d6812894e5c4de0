/*
 * tuples.h — direct access to pyrate's own tables.
 *
 * The extension's tables are reached with heap and index calls, not SQL:
 * nothing depends on the caller's search_path or privileges (the tables are
 * closed to PUBLIC; the functions that use them are the interface), and an
 * acquire costs a few index probes rather than planned queries.
 */
#ifndef PYRATE_TUPLES_H
#define PYRATE_TUPLES_H

#include "base.h"

#include "access/genam.h"
#include "access/sdir.h"
#include "access/skey.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#define PYRATE_MAX_INDEXES 4
#define PYRATE_MAX_COLUMNS 8

/*
 * The layout pyrate expects of one of its tables.  Heap access trusts it,
 * so every open checks the table against it (an owner may have altered the
 * table; pg_dump restores whatever it finds).
 */
typedef struct PyrateColumn
{
	const char *name;
	Oid			type;			/* InvalidOid: pyrate_rate[] of pyrate's schema */
} PyrateColumn;

typedef struct PyrateTable
{
	const char *name;
	int			ncolumns;
	/*
	 * Columns every version of the extension has; the others, at the end,
	 * are new in a later version, absent until ALTER EXTENSION pyrate UPDATE
	 */
	int			nrequired;
	PyrateColumn columns[PYRATE_MAX_COLUMNS];
} PyrateTable;

typedef struct PyrateRel
{
	const PyrateTable *table;
	int			ncolumns;		/* the table's columns present, nrequired or more */
	Relation	heap;
	int			nindexes;
	Relation	indexes[PYRATE_MAX_INDEXES];
	IndexInfo  *info[PYRATE_MAX_INDEXES];
	TupleTableSlot *slot;		/* holds the last probe's tuple */
	LOCKMODE	lockmode;
} PyrateRel;

/*
 * Open a table of the extension with its indexes, after checking both: the
 * table's columns are exactly t's (columns dropped after them are allowed),
 * its indexes plain btrees on columns.  ERROR naming the table otherwise.
 */
void		pyrate_rel_open(PyrateRel *r, Oid nsp, const PyrateTable *t, LOCKMODE mode);
void		pyrate_rel_close(PyrateRel *r);
/*
 * Open a table that has one of two layouts (before and after an update that
 * rebuilt it), told apart by the name of their first column; the layout
 * opened is returned.
 */
const PyrateTable *pyrate_rel_open_either(PyrateRel *r, Oid nsp, const PyrateTable *a,
										  const PyrateTable *b, LOCKMODE mode);
/* The index over exactly these heap columns, in this order. */
Relation	pyrate_rel_index(PyrateRel *r, int natts, const AttrNumber *atts);

/* A tuple of the table from its columns' values (r->ncolumns of them). */
HeapTuple	pyrate_rel_form(PyrateRel *r, const Datum *values, const bool *nulls);
/* The table's columns of a tuple (r->ncolumns of them). */
void		pyrate_rel_deform(PyrateRel *r, HeapTuple tup, Datum *values, bool *nulls);

/* Insert, with index entries. */
void		pyrate_rel_insert(PyrateRel *r, HeapTuple tup);
/* Replace the tuple at otid, with index entries unless the update was HOT. */
void		pyrate_rel_update(PyrateRel *r, ItemPointer otid, HeapTuple tup);
/* Replace, unless another transaction changed or deleted it first (false). */
bool		pyrate_rel_update_if_unchanged(PyrateRel *r, ItemPointer otid, HeapTuple tup);
/* Delete; false when another transaction deleted it first. */
bool		pyrate_rel_delete(PyrateRel *r, ItemPointer tid);

/*
 * The first tuple of index order (dir) that satisfies keys, as seen by snap,
 * left in r->slot with all attributes deformed.  False when none.
 */
bool		pyrate_probe(PyrateRel *r, Relation index, ScanKey keys, int nkeys,
						 ScanDirection dir, Snapshot snap);

/* Scan keys on int8 and text (collation "C") index columns. */
void		pyrate_key_int8(ScanKey key, AttrNumber att, StrategyNumber strategy, int64 value);
void		pyrate_key_text(ScanKey key, AttrNumber att, const char *value);
/* a text key compared in the "C" collation: equal, or greater or equal */
void		pyrate_key_text_op(ScanKey key, AttrNumber att, StrategyNumber strategy,
							   const char *value);

#endif							/* PYRATE_TUPLES_H */
