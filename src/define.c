/*
 * define.c — pyrate_define and pyrate_undefine: the SQL functions that
 * change definitions, with the checks that need the engines (is the storage
 * available here; would moving a definition to another storage leave its
 * buckets' items behind).
 */
#include "base.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "engine.h"
#include "routing.h"

PG_FUNCTION_INFO_V1(pyrate_define);
PG_FUNCTION_INFO_V1(pyrate_define_text);
PG_FUNCTION_INFO_V1(pyrate_undefine);

typedef struct Holding
{
	Oid			nsp;
	const char *pattern;
	int64		buckets;
	int64		units;
	char	   *example;
} Holding;

static void
count_holding(const char *name, int64 count, const PyrateListed *listed, void *arg)
{
	Holding    *h = arg;
	const PyrateDefinition *d;

	if (count <= 0)
		return;
	d = pyrate_route_or_null(h->nsp, name);
	if (d == NULL || strcmp(d->pattern, h->pattern) != 0)
		return;
	if (h->buckets++ == 0)
		h->example = pstrdup(name);
	h->units += count;
}

/*
 * Moving a definition to another storage would start its buckets' windows
 * empty there while their items stayed behind: refuse while any bucket
 * routed to it holds items in the old storage.
 */
static void
refuse_storage_move(Oid nsp, const char *pattern, PyrateStorage from, PyrateStorage to)
{
	Holding		h = {nsp, pattern, 0, 0, NULL};
	const PyrateEngine *engine = pyrate_engine_or_null(from);

	if (engine == NULL)
		return;					/* not available here: it holds no bucket */
	engine->each_bucket(nsp, count_holding, &h);
	if (h.buckets > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot move definition \"%s\" from %s to %s storage while its buckets hold items",
						pattern, pyrate_storage_name(from), pyrate_storage_name(to)),
				 errdetail("%lld bucket(s), such as \"%s\", hold %lld unit(s) in %s storage; in %s storage their windows would start empty.",
						   (long long) h.buckets, h.example, (long long) h.units,
						   pyrate_storage_name(from), pyrate_storage_name(to)),
				 errhint("Flush them first (SELECT pyrate_flush(name) FROM pyrate_buckets() WHERE pattern = %s), or wait until they leak empty, then redefine.",
						 quote_literal_cstr(pattern))));
}

/*
 * The definition of pattern changed (stored anew, or removed): tell every
 * engine that keeps track of when its buckets are next due.
 */
static void
redefined(Oid nsp, const char *pattern)
{
	const PyrateEngine *engines[PYRATE_MAX_ENGINES];
	int			n = pyrate_engines(engines);

	for (int i = 0; i < n; i++)
		if (engines[i]->redefined)
			engines[i]->redefined(nsp, pattern);
}

/*
 * Both forms of pyrate_define: rates as pyrate_rate[] or as text ('5/s',
 * '5/s, 1000/h', '{5/s,1000/h}').  Returns the definition as stored, a
 * pyrate_definition.
 */
static Datum
define(FunctionCallInfo fcinfo, bool rates_as_text)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *pattern;
	pyr_rate	rates[PYR_MAX_RATES];
	int			nrates;
	PyrateStorage storage;
	PyrateStorage stored;
	bool		dry_run;
	int			slots = 0;
	int64		max_buckets = 0;
	bool		durable = true;
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the pattern of a definition cannot be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the rates of a definition cannot be NULL"),
				 errhint("Give a rate list such as '{5/s,1000/h}'.")));
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(0));
	pyrate_check_name("pattern", pattern);
	if (rates_as_text)
		nrates = pyrate_rates_from_text(nsp, text_to_cstring(PG_GETARG_TEXT_PP(1)), rates);
	else
		nrates = pyrate_rates_from_array(PG_GETARG_ARRAYTYPE_P(1), rates);
	storage = PG_ARGISNULL(2) ? (PyrateStorage) pyrate_default_storage
		: pyrate_storage_from_text(text_to_cstring(PG_GETARG_TEXT_PP(2)));
	dry_run = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	/* 1.3 on: slots => n, NULL for exact windows */
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
	{
		int32		n = PG_GETARG_INT32(4);

		if (n < 1 || n > PYR_MAX_SLOTS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("slots must be between 1 and %d, not %d", PYR_MAX_SLOTS, n),
					 errdetail("slots => n keeps about n coarse entries per rate beyond the smallest, "
							   "which admit at least n/(n+1) of their limits."),
					 errhint("Leave slots NULL for exact windows.")));
		slots = n;
	}
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		max_buckets = PG_GETARG_INT64(5);
		if (max_buckets < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_buckets must be at least 1, not %lld", (long long) max_buckets),
					 errhint("Leave max_buckets NULL for no cap.")));
		if (storage != PYRATE_STORAGE_MEMORY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_buckets caps memory buckets only"),
					 errdetail("Definition \"%s\" has storage %s.", pattern, pyrate_storage_name(storage)),
					 errhint("Use storage 'memory', or leave max_buckets NULL.")));
	}
	/* 1.4 on: durable => false keeps a memory definition's buckets out of the WAL */
	if (PG_NARGS() > 6 && !PG_ARGISNULL(6))
	{
		durable = PG_GETARG_BOOL(6);
		if (!durable && storage != PYRATE_STORAGE_MEMORY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("only memory buckets can be volatile"),
					 errdetail("Definition \"%s\" has storage %s, whose buckets are rows of WAL-logged tables.",
							   pattern, pyrate_storage_name(storage)),
					 errhint("Use storage 'memory' for buckets kept out of the WAL, or leave durable NULL.")));
	}
	(void) pyrate_engine(storage);	/* errors when the engine is unavailable */
	PreventCommandIfReadOnly("pyrate_define()");

	pyrate_definitions_lock(nsp);
	if (pyrate_definition_stored(nsp, pattern, &stored) && stored != storage)
		refuse_storage_move(nsp, pattern, stored, storage);
	pyrate_definition_store(nsp, pattern, rates, nrates, storage, dry_run, slots, max_buckets,
							durable);
	redefined(nsp, pattern);

	/* 1.0's pyrate_define returned void: an old install script's function */
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		PG_RETURN_VOID();
	values[0] = CStringGetTextDatum(pattern);
	values[1] = PointerGetDatum(pyrate_rates_to_array(pyrate_rate_type_oid(nsp), rates, nrates));
	values[2] = CStringGetTextDatum(pyrate_storage_name(storage));
	values[3] = BoolGetDatum(dry_run);
	/* 1.3 on: the type has slots and max_buckets too */
	values[4] = Int32GetDatum(slots);
	nulls[4] = slots == 0;
	values[5] = Int64GetDatum(max_buckets);
	nulls[5] = max_buckets == 0;
	/* 1.4 on: and durable */
	values[6] = BoolGetDatum(durable);
	if (desc->natts > 7)
		elog(ERROR, "pyrate_definition has %d attributes, expected at most 7", desc->natts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

Datum
pyrate_define(PG_FUNCTION_ARGS)
{
	return define(fcinfo, false);
}

Datum
pyrate_define_text(PG_FUNCTION_ARGS)
{
	return define(fcinfo, true);
}

Datum
pyrate_undefine(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *pattern;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the pattern to undefine cannot be NULL")));
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PreventCommandIfReadOnly("pyrate_undefine()");
	pyrate_definitions_lock(nsp);
	if (!pyrate_definition_remove(nsp, pattern))
		PG_RETURN_BOOL(false);
	/* its buckets route to another definition now, or to none */
	redefined(nsp, pattern);
	PG_RETURN_BOOL(true);
}
