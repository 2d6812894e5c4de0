/*
 * trigger.c — pyrate_throttle, a trigger that rate-limits row changes.
 *
 *   CREATE TRIGGER t BEFORE INSERT ON tbl FOR EACH ROW
 *       EXECUTE FUNCTION pyrate_throttle(prefix [, key_column [, weight [, on_limit]]]);
 *
 * The bucket is prefix || the key column's value (prefix alone when the key
 * column is '' or absent).  weight is a whole number, or the name of an
 * integer column of the row.  on_limit: 'error' (SQLSTATE PT429, the
 * default), 'skip' (the row is silently dropped) or 'wait' (block as
 * pyrate_try_acquire does).  Wrong arguments are reported at the first
 * firing, naming the trigger.
 */
#include "base.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "limiter.h"

PG_FUNCTION_INFO_V1(pyrate_throttle);

typedef enum OnLimit
{
	ON_LIMIT_ERROR,
	ON_LIMIT_SKIP,
	ON_LIMIT_WAIT
} OnLimit;

static void
bad_trigger(TriggerData *td, const char *msg, const char *hint)
	pg_attribute_noreturn();

static void
bad_trigger(TriggerData *td, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("trigger \"%s\" on \"%s\": %s", td->tg_trigger->tgname,
					RelationGetRelationName(td->tg_relation), msg),
			 hint ? errhint("%s", hint) : 0));
}

static const char *usage_hint =
"Use EXECUTE FUNCTION pyrate_throttle(prefix [, key_column [, weight or weight_column [, 'error' | 'skip' | 'wait']]]) in a BEFORE ... FOR EACH ROW trigger.";

static bool
is_number(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* The value of a named column of the row; NULL when the value is NULL. */
static char *
column_text(TriggerData *td, HeapTuple row, const char *column, Oid *type)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	int			att = SPI_fnumber(desc, column);
	char		msg[NAMEDATALEN + 64];

	if (att <= 0)
	{
		snprintf(msg, sizeof(msg), "column \"%s\" does not exist", column);
		bad_trigger(td, msg, usage_hint);
	}
	*type = SPI_gettypeid(desc, att);
	return SPI_getvalue(row, desc, att);
}

Datum
pyrate_throttle(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	HeapTuple	row;
	const char *prefix;
	StringInfoData name;
	int64		weight = 1;
	OnLimit		on_limit = ON_LIMIT_ERROR;
	PyrateAcquireResult r;
	char		context[NAMEDATALEN + 32];

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pyrate_throttle() can only be called as a trigger"),
				 errhint("%s", usage_hint)));
	tg = td->tg_trigger;
	if (!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		bad_trigger(td, "pyrate_throttle must fire BEFORE ... FOR EACH ROW",
					"A row that is not taken must not be written: throttle before it is.");
	if (tg->tgnargs < 1 || tg->tgnargs > 4)
		bad_trigger(td, "takes one to four arguments", usage_hint);

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		row = td->tg_newtuple;
	else
		row = td->tg_trigtuple;

	prefix = tg->tgargs[0];
	initStringInfo(&name);
	appendStringInfoString(&name, prefix);
	if (tg->tgnargs >= 2 && tg->tgargs[1][0] != '\0')
	{
		Oid			type;
		char	   *key = column_text(td, row, tg->tgargs[1], &type);

		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("trigger \"%s\" on \"%s\": key column \"%s\" is NULL",
							tg->tgname, RelationGetRelationName(td->tg_relation), tg->tgargs[1]),
					 errhint("Rows throttled by a key need a key: add NOT NULL to the column, or COALESCE it in a generated column.")));
		appendStringInfoString(&name, key);
	}
	if (tg->tgnargs >= 3)
	{
		const char *w = tg->tgargs[2];

		if (is_number(w))
		{
			errno = 0;
			weight = strtoll(w, NULL, 10);
			if (errno == ERANGE || weight > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("trigger \"%s\" on \"%s\": weight \"%s\" is out of range",
								tg->tgname, RelationGetRelationName(td->tg_relation), w),
						 errhint("A weight is from 0 to 2147483647: recreate the trigger with a weight in that range.")));
		}
		else
		{
			Oid			type;
			char	   *value = column_text(td, row, w, &type);
			char		msg[NAMEDATALEN + 64];

			if (type != INT2OID && type != INT4OID && type != INT8OID)
			{
				snprintf(msg, sizeof(msg), "weight column \"%s\" is not an integer column", w);
				bad_trigger(td, msg, "The weight is a whole number, or the name of a smallint, integer or bigint column.");
			}
			if (value == NULL)
				weight = 0;		/* a row without a weight takes nothing */
			else
				weight = strtoll(value, NULL, 10);
			if (weight < 0 || weight > PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("trigger \"%s\" on \"%s\": weight %lld from column \"%s\" is out of range",
								tg->tgname, RelationGetRelationName(td->tg_relation),
								(long long) weight, w),
						 errhint("A weight is from 0 to 2147483647.")));
		}
	}
	if (tg->tgnargs >= 4)
	{
		const char *mode = tg->tgargs[3];

		if (strcmp(mode, "error") == 0)
			on_limit = ON_LIMIT_ERROR;
		else if (strcmp(mode, "skip") == 0)
			on_limit = ON_LIMIT_SKIP;
		else if (strcmp(mode, "wait") == 0)
			on_limit = ON_LIMIT_WAIT;
		else
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "unknown on_limit \"%.40s\"", mode);
			bad_trigger(td, msg, "on_limit is 'error' (SQLSTATE PT429), 'skip' (drop the row) or 'wait' (block until admitted).");
		}
	}

	pyrate_check_name("bucket name", name.data);
	if (pyrate_limiter_acquire(pyrate_namespace(fcinfo), name.data, weight,
							   on_limit == ON_LIMIT_WAIT, -1, &r))
		return PointerGetDatum(row);
	if (on_limit == ON_LIMIT_SKIP && r.retry_after >= 0)
		return PointerGetDatum(NULL);
	snprintf(context, sizeof(context), " (trigger \"%s\")", tg->tgname);
	pyrate_raise_limited(name.data, &r.failing_rate, weight, r.retry_after, context);
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}
