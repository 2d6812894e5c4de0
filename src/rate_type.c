/*
 * rate_type.c — the pyrate_rate type, durations and rate-list validation.
 *
 * A pyrate_rate is the core's pyr_rate: limit and interval in milliseconds,
 * 16 bytes passed by reference.  Its text form is "limit/interval".
 */
#include "rate_type.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pyrate_rate_in);
PG_FUNCTION_INFO_V1(pyrate_rate_out);
PG_FUNCTION_INFO_V1(pyrate_rate_recv);
PG_FUNCTION_INFO_V1(pyrate_rate_send);
PG_FUNCTION_INFO_V1(pyrate_rate_make);
PG_FUNCTION_INFO_V1(pyrate_rate_make_interval);
PG_FUNCTION_INFO_V1(pyrate_rate_make_text);
PG_FUNCTION_INFO_V1(pyrate_rate_limit);
PG_FUNCTION_INFO_V1(pyrate_rate_interval);
PG_FUNCTION_INFO_V1(pyrate_rate_eq);
PG_FUNCTION_INFO_V1(pyrate_rate_ne);
PG_FUNCTION_INFO_V1(pyrate_duration);
PG_FUNCTION_INFO_V1(pyrate_duration_readable);
PG_FUNCTION_INFO_V1(pyrate_validate_rates);

static PyrateRate *
make_rate(int64 limit, int64 interval)
{
	PyrateRate *r = palloc(sizeof(PyrateRate));

	if (limit < 1 || limit > PYR_MAX_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate limit %lld is out of range", (long long) limit),
				 errhint("A limit is a whole number from 1 to %lld.", (long long) PYR_MAX_LIMIT)));
	if (interval < 1 || interval > PYR_MAX_INTERVAL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate interval %lld ms is out of range", (long long) interval),
				 errhint("An interval is from 1 millisecond to 100 years.")));
	r->limit = limit;
	r->interval = interval;
	return r;
}

Datum
pyrate_rate_in(PG_FUNCTION_ARGS)
{
	char	   *text = PG_GETARG_CSTRING(0);
	pyr_rate	r;
	char		err[PYR_MSG_LEN];

	if (!pyr_rate_parse(text, &r, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type pyrate_rate: \"%s\"", text),
				 errdetail("%c%s.", pg_toupper((unsigned char) err[0]), err + 1),
				 errhint("Write limit/interval, as in 5/s, 100/1m, 10/1500ms, 1000/h, 7/2d or 1/w; a bare number is milliseconds.")));
	PG_RETURN_POINTER(make_rate(r.limit, r.interval));
}

Datum
pyrate_rate_out(PG_FUNCTION_ARGS)
{
	PyrateRate *r = DatumGetPyrateRate(PG_GETARG_DATUM(0));
	char		buf[64];

	pyr_rate_format(r, buf, sizeof(buf));
	PG_RETURN_CSTRING(pstrdup(buf));
}

Datum
pyrate_rate_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int64		limit = pq_getmsgint64(buf);
	int64		interval = pq_getmsgint64(buf);

	PG_RETURN_POINTER(make_rate(limit, interval));
}

Datum
pyrate_rate_send(PG_FUNCTION_ARGS)
{
	PyrateRate *r = DatumGetPyrateRate(PG_GETARG_DATUM(0));
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint64(&buf, r->limit);
	pq_sendint64(&buf, r->interval);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
pyrate_rate_make(PG_FUNCTION_ARGS)
{
	PG_RETURN_POINTER(make_rate(PG_GETARG_INT32(0), PG_GETARG_INT64(1)));
}

Datum
pyrate_rate_make_interval(PG_FUNCTION_ARGS)
{
	Interval   *iv = PG_GETARG_INTERVAL_P(1);
	int64		ms;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a rate interval cannot be given in months or years"),
				 errdetail("Months have no fixed length in milliseconds."),
				 errhint("Use days or weeks, as in interval '30 days'.")));
	if (iv->time % 1000 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a rate interval must be a whole number of milliseconds")));
	/*
	 * Days and time may have opposite signs ('1 day -1 hour' is 23 hours):
	 * only their sum must be in range.  Each part is bounded first, so the
	 * sum cannot overflow.
	 */
	if (iv->day < -2 * (PYR_MAX_INTERVAL / PYR_DAY) || iv->day > 2 * (PYR_MAX_INTERVAL / PYR_DAY) ||
		iv->time / 1000 < -2 * PYR_MAX_INTERVAL || iv->time / 1000 > 2 * PYR_MAX_INTERVAL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate interval %s is out of range",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
				 errhint("An interval is from 1 millisecond to 100 years.")));
	ms = (int64) iv->day * PYR_DAY + iv->time / 1000;
	PG_RETURN_POINTER(make_rate(PG_GETARG_INT32(0), ms));
}

/*
 * pyrate_rate(limit, 'SECOND' | '1500ms' | '2d' | 'h' | '90 seconds'): a
 * pyrate-limiter duration name, an interval as the rate grammar writes it,
 * or anything the interval type reads.
 */
Datum
pyrate_rate_make_text(PG_FUNCTION_ARGS)
{
	char	   *str = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		ms = pyr_duration(str);
	char	   *spec;
	pyr_rate	r;
	char		err[PYR_MSG_LEN];
	const char *p;

	if (ms > 0)
		PG_RETURN_POINTER(make_rate(PG_GETARG_INT32(0), ms));
	spec = psprintf("1/%s", str);
	if (pyr_rate_parse(spec, &r, err, sizeof(err)))
		PG_RETURN_POINTER(make_rate(PG_GETARG_INT32(0), r.interval));
	for (p = str; *p && !isdigit((unsigned char) *p); p++)
		;
	if (*p == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown duration \"%s\"", str),
				 errhint("Use SECOND, MINUTE, HOUR, DAY or WEEK, a rate interval such as 1500ms, 2d or h, or an interval such as '90 seconds'.")));
	return DirectFunctionCall2(pyrate_rate_make_interval, PG_GETARG_DATUM(0),
							   DirectFunctionCall3(interval_in, CStringGetDatum(str),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
}

Datum
pyrate_rate_limit(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) DatumGetPyrateRate(PG_GETARG_DATUM(0))->limit);
}

Datum
pyrate_rate_interval(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(DatumGetPyrateRate(PG_GETARG_DATUM(0))->interval);
}

Datum
pyrate_rate_eq(PG_FUNCTION_ARGS)
{
	PyrateRate *a = DatumGetPyrateRate(PG_GETARG_DATUM(0));
	PyrateRate *b = DatumGetPyrateRate(PG_GETARG_DATUM(1));

	PG_RETURN_BOOL(a->limit == b->limit && a->interval == b->interval);
}

Datum
pyrate_rate_ne(PG_FUNCTION_ARGS)
{
	PyrateRate *a = DatumGetPyrateRate(PG_GETARG_DATUM(0));
	PyrateRate *b = DatumGetPyrateRate(PG_GETARG_DATUM(1));

	PG_RETURN_BOOL(a->limit != b->limit || a->interval != b->interval);
}

Datum
pyrate_duration(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		ms = pyr_duration(name);

	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown duration \"%s\"", name),
				 errhint("Use SECOND, MINUTE, HOUR, DAY or WEEK.")));
	PG_RETURN_INT64(ms);
}

Datum
pyrate_duration_readable(PG_FUNCTION_ARGS)
{
	int64		ms = PG_GETARG_INT64(0);
	char		buf[64];

	pyr_duration_readable(ms, buf, sizeof(buf));
	PG_RETURN_TEXT_P(cstring_to_text(buf));
}

/*
 * Unpack a rate array; false (with the reason) when it breaks a rule.
 * NULL elements and multi-dimensional arrays are errors, not "invalid".
 */
static bool
unpack_rates(ArrayType *arr, pyr_rate *rates, int *n, char *err, size_t errlen)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("a rate list must be a one-dimensional array")));
	deconstruct_array(arr, ARR_ELEMTYPE(arr), sizeof(PyrateRate), false, TYPALIGN_DOUBLE,
					  &elems, &nulls, &nelems);
	if (nelems > PYR_MAX_RATES)
	{
		snprintf(err, errlen, "a bucket takes at most %d rates, not %d", PYR_MAX_RATES, nelems);
		return false;
	}
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a rate list cannot contain NULL")));
		rates[i] = *DatumGetPyrateRate(elems[i]);
	}
	*n = nelems;
	return pyr_rates_validate(rates, nelems, err, errlen) == PYR_RATES_OK;
}

static void
invalid_rate_list(const char *err)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid rate list"),
			 errdetail("%c%s.", pg_toupper((unsigned char) err[0]), err + 1),
			 errhint("Sorted by interval, intervals and limits must strictly increase and limit/interval must never increase, as in '{5/s,100/1m,1000/h}'.")));
}

int
pyrate_rates_from_array(ArrayType *arr, pyr_rate *rates)
{
	char		err[PYR_MSG_LEN];
	int			n = 0;

	if (!unpack_rates(arr, rates, &n, err, sizeof(err)))
		invalid_rate_list(err);
	return n;
}

int
pyrate_rates_from_text(Oid nsp, const char *str, pyr_rate *rates)
{
	const char *p = str;
	char	   *list;
	char	   *tok;
	char	   *next;
	int			n = 0;
	char		err[PYR_MSG_LEN];

	while (isspace((unsigned char) *p))
		p++;
	/* an array literal reads exactly as the array form does */
	if (*p == '{')
	{
		Oid			array_type = get_array_type(pyrate_rate_type_oid(nsp));
		Oid			input;
		Oid			ioparam;

		getTypeInputInfo(array_type, &input, &ioparam);
		return pyrate_rates_from_array(DatumGetArrayTypeP(OidInputFunctionCall(input, (char *) str,
																				ioparam, -1)),
									   rates);
	}
	/* "5/s, 1000/h": one rate or a comma-separated list */
	list = pstrdup(str);
	for (tok = list; tok != NULL; tok = next)
	{
		char	   *end;

		next = strchr(tok, ',');
		if (next)
			*next++ = '\0';
		while (isspace((unsigned char) *tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (*tok == '\0' && (next != NULL || n > 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid rate list \"%s\"", str),
					 errdetail("Rate %d of the list is empty.", n + 1),
					 errhint("Separate rates by single commas, as in '5/s, 1000/h'.")));
		if (*tok == '\0')
			break;
		if (n == PYR_MAX_RATES)
		{
			snprintf(err, sizeof(err), "a bucket takes at most %d rates", PYR_MAX_RATES);
			invalid_rate_list(err);
		}
		rates[n++] = *DatumGetPyrateRate(DirectFunctionCall1(pyrate_rate_in, CStringGetDatum(tok)));
	}
	if (pyr_rates_validate(rates, n, err, sizeof(err)) != PYR_RATES_OK)
		invalid_rate_list(err);
	return n;
}

Oid
pyrate_rate_type_oid(Oid nsp)
{
	Oid			typid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum("pyrate_rate"),
										ObjectIdGetDatum(nsp));

	if (!OidIsValid(typid))
		elog(ERROR, "type pyrate_rate is missing from pyrate's schema");
	return typid;
}

ArrayType *
pyrate_rates_to_array(Oid rate_type, const pyr_rate *rates, int n)
{
	Datum		elems[PYR_MAX_RATES];
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = PyrateRateGetDatum(make_rate(rates[i].limit, rates[i].interval));
	return construct_array(elems, n, rate_type, sizeof(PyrateRate), false, TYPALIGN_DOUBLE);
}

char *
pyrate_rates_text(const pyr_rate *rates, int n)
{
	StringInfoData s;
	int			i;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	for (i = 0; i < n; i++)
	{
		char		buf[64];

		pyr_rate_format(&rates[i], buf, sizeof(buf));
		appendStringInfo(&s, "%s%s", i ? "," : "", buf);
	}
	appendStringInfoChar(&s, '}');
	return s.data;
}

Datum
pyrate_validate_rates(PG_FUNCTION_ARGS)
{
	pyr_rate	rates[PYR_MAX_RATES];
	char		err[PYR_MSG_LEN];
	int			n;

	PG_RETURN_BOOL(unpack_rates(PG_GETARG_ARRAYTYPE_P(0), rates, &n, err, sizeof(err)));
}
