/*
 * limiter.c — the SQL functions on buckets, and the Limiter's blocking
 * acquire.
 *
 * Every function finds its engine through the bucket's definition, and every
 * decision comes from pyr_decide.  Explicit timestamps ("at") are time travel
 * and need the privilege of pyrate_flush; without one, the server clock
 * (pyrate_now) stamps the item.
 */
#include "limiter.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "engine.h"
#include "stats.h"


int			pyrate_buffer_ms = 50;

PG_FUNCTION_INFO_V1(pyrate_now);
PG_FUNCTION_INFO_V1(pyrate_put);
PG_FUNCTION_INFO_V1(pyrate_waiting);
PG_FUNCTION_INFO_V1(pyrate_acquire);
PG_FUNCTION_INFO_V1(pyrate_count);
PG_FUNCTION_INFO_V1(pyrate_peek);
PG_FUNCTION_INFO_V1(pyrate_leak);
PG_FUNCTION_INFO_V1(pyrate_leak_all);
PG_FUNCTION_INFO_V1(pyrate_flush);
PG_FUNCTION_INFO_V1(pyrate_dispose);
PG_FUNCTION_INFO_V1(pyrate_buckets);
PG_FUNCTION_INFO_V1(pyrate_try_acquire);
PG_FUNCTION_INFO_V1(pyrate_require);

static char *
arg_name(FunctionCallInfo fcinfo, int n)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the bucket name cannot be NULL")));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static int64
arg_weight(FunctionCallInfo fcinfo, int n)
{
	int32		w;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the weight cannot be NULL")));
	w = PG_GETARG_INT32(n);
	if (w < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight %d is negative", w),
				 errhint("A weight is the number of units to take: 0 or more.")));
	return w;
}

/* "at": NULL is now; a timestamp needs the privilege of pyrate_flush. */
static int64
arg_at(FunctionCallInfo fcinfo, int n, Oid nsp)
{
	int64		at;
	Oid			argtypes[1] = {TEXTOID};
	Oid			flush;

	if (PG_NARGS() <= n || PG_ARGISNULL(n))
		return pyrate_now_ms();
	at = PG_GETARG_INT64(n);
	flush = LookupFuncName(list_make2(makeString(get_namespace_name(nsp)),
									  makeString("pyrate_flush")),
						   1, argtypes, false);
	if (pg_proc_aclcheck(flush, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to stamp an item with an explicit time"),
				 errdetail("A non-NULL \"at\" needs the privilege to execute pyrate_flush(text)."),
				 errhint("Pass at => NULL to use the server clock, or have the owner grant EXECUTE ON FUNCTION pyrate_flush(text).")));
	if (at < PYR_MIN_TS || at > PYR_MAX_TS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp %lld is out of range", (long long) at),
				 errhint("\"at\" is milliseconds since 1970-01-01 UTC, as pyrate_now() returns.")));
	return at;
}

/*
 * Decide, storing when asked; a dry-run definition reports what it would
 * have rejected but admits.  Returns the decision's kind for pyrate_stats.
 */
static PyrateStatKind
decide(PyrateBucket *b, int64 ts, int64 weight, bool store, pyr_decision *d)
{
	const PyrateEngine *e = pyrate_engine(b->def.storage);

	e->acquire(b, ts, weight, store, d);
	if (d->admitted)
		return PYRATE_STAT_ACQUIRED;
	if (!b->def.dry_run)
		return PYRATE_STAT_REJECTED;
	d->admitted = true;
	d->waiting = 0;
	d->retry_after = 0;
	return PYRATE_STAT_WOULD_REJECT;
}

Datum
pyrate_now(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(pyrate_now_ms());
}

/*
 * (name, weight, at) → a decision for the bucket, stored when asked (and
 * then counted in pyrate_stats): put, waiting and acquire.
 */
static void
bucket_decision(FunctionCallInfo fcinfo, bool store, bool exact, PyrateBucket *b,
				pyr_decision *d)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	int64		weight = arg_weight(fcinfo, 1);
	int64		at = arg_at(fcinfo, 2, nsp);
	PyrateStatKind kind;

	pyrate_bucket_init(b, nsp, name);
	b->exact = exact;
	kind = decide(b, at, weight, store, d);
	if (store)
		pyrate_stats_count(b->def.pattern, kind, 0);
}

Datum
pyrate_put(PG_FUNCTION_ARGS)
{
	PyrateBucket b;
	pyr_decision d;

	bucket_decision(fcinfo, true, false, &b, &d);
	PG_RETURN_BOOL(d.admitted);
}

Datum
pyrate_waiting(PG_FUNCTION_ARGS)
{
	PyrateBucket b;
	pyr_decision d;

	bucket_decision(fcinfo, false, false, &b, &d);
	PG_RETURN_INT64(d.waiting);
}

static Datum
rate_datum(const pyr_rate *r)
{
	PyrateRate *copy = palloc(sizeof(PyrateRate));

	*copy = *r;
	return PyrateRateGetDatum(copy);
}

/* pyrate_decision: (acquired, failing_rate, retry_after_ms, remaining) */
static Datum
decision_datum(FunctionCallInfo fcinfo, const PyrateBucket *b, const pyr_decision *d)
{
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pyrate_acquire must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = BoolGetDatum(d->admitted);
	if (d->failing >= 0)
		values[1] = rate_datum(&b->def.rates[d->failing]);
	else
		nulls[1] = true;
	values[2] = Int64GetDatum(d->retry_after);
	values[3] = Int64GetDatum(d->remaining);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

Datum
pyrate_acquire(PG_FUNCTION_ARGS)
{
	PyrateBucket b;
	pyr_decision d;

	/* remaining is reported: every window counted exactly */
	bucket_decision(fcinfo, true, true, &b, &d);
	PG_RETURN_DATUM(decision_datum(fcinfo, &b, &d));
}

/* SQLSTATE PT429: PostgREST answers it with HTTP 429. */
#define ERRCODE_PYRATE_LIMITED MAKE_SQLSTATE('P', 'T', '4', '2', '9')

void
pyrate_raise_limited(const char *name, const pyr_rate *failing, int64 weight,
					 int64 retry_after, const char *context)
{
	char		rate[64];

	pyr_rate_format(failing, rate, sizeof(rate));
	if (retry_after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_PYRATE_LIMITED),
				 errmsg("rate limit exceeded for bucket \"%s\"%s", name, context),
				 errdetail("limit %s reached: weight %lld can never fit.", rate, (long long) weight),
				 errhint("Take a smaller weight, or define a larger limit.")));
	ereport(ERROR,
			(errcode(ERRCODE_PYRATE_LIMITED),
			 errmsg("rate limit exceeded for bucket \"%s\"%s", name, context),
			 errdetail("limit %s reached.", rate),
			 errhint("Retry after %lld ms.", (long long) retry_after)));
}

Datum
pyrate_require(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	int64		weight = arg_weight(fcinfo, 1);
	PyrateAcquireResult r;

	if (!pyrate_limiter_acquire(nsp, name, weight, false, -1, &r))
		pyrate_raise_limited(name, &r.failing_rate, weight, r.retry_after, "");
	PG_RETURN_VOID();
}

Datum
pyrate_count(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	PyrateBucket b;

	pyrate_bucket_init(&b, nsp, name);
	PG_RETURN_INT64(pyrate_engine(b.def.storage)->count(&b));
}

Datum
pyrate_peek(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	PyrateBucket b;
	int64		ts;
	int64		weight;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false};

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the index to peek at cannot be NULL")));
	pyrate_bucket_init(&b, nsp, name);
	if (!pyrate_engine(b.def.storage)->peek(&b, PG_GETARG_INT32(1), &ts, &weight))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pyrate_peek must return a composite type");
	desc = BlessTupleDesc(desc);
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum((int32) weight);
	values[2] = Int64GetDatum(ts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

Datum
pyrate_leak(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	int64		at = arg_at(fcinfo, 1, nsp);
	PyrateBucket b;
	PyrateLeakHow how = {0};
	PyrateLeakEnd end;

	pyrate_bucket_init(&b, nsp, name);
	how.before = at - b.def.rates[b.def.nrates - 1].interval;
	PG_RETURN_INT64(pyrate_engine(b.def.storage)->leak(&b, &how, &end));
}

/* a bucket as listed: its name, and whether it held no unit */
typedef struct Listed
{
	char	   *name;
	bool		idle;
	PyrateListed listed;		/* where the listing found it */
} Listed;

static void
collect_name(const char *name, int64 count, const PyrateListed *listed, void *arg)
{
	List	  **names = arg;
	Listed	   *l = palloc(sizeof(Listed));

	l->name = pstrdup(name);
	l->idle = count == 0;
	l->listed = *listed;
	*names = lappend(*names, l);
}

/*
 * Table buckets pyrate_leak() reclaims per call: each keeps its lock to the
 * end of the caller's transaction.  The worker reclaims in batches of its
 * own transactions; without it, each scheduled call reclaims this many more.
 */
#define RECLAIM_PER_CALL 1000

/*
 * Leak every bucket of every engine at time at, and reclaim the buckets that
 * held nothing and stayed idle past their largest interval; returns units
 * removed.  On a standby only what can change there (memory buckets) is
 * leaked.
 */
static int64
leak_every_bucket(Oid nsp, int64 at)
{
	const PyrateEngine *engines[PYRATE_MAX_ENGINES];
	int			nengines = pyrate_engines_writable(engines);
	int64		removed = 0;
	int			reclaimed = 0;
	int			i;

	for (i = 0; i < nengines; i++)
	{
		List	   *names = NIL;
		ListCell   *lc;

		engines[i]->each_due(nsp, at, collect_name, &names);
		foreach(lc, names)
		{
			Listed	   *l = lfirst(lc);
			const PyrateDefinition *d = pyrate_route_or_null(nsp, l->name);
			PyrateBucket b;
			int64		before;

			if (d == NULL)
				continue;
			before = at - d->rates[d->nrates - 1].interval;
			memset(&b, 0, sizeof(b));
			b.nsp = nsp;
			b.name = l->name;
			b.def = *d;
			b.listed = l->listed;
			if (!l->idle)
			{
				PyrateLeakHow how = {0};
				PyrateLeakEnd end = PYRATE_LEAK_HOLDS;

				/* a table bucket it empties, the leak reclaims at once */
				how.before = before;
				how.reclaim = engines[i]->in_tables && reclaimed < RECLAIM_PER_CALL;
				if (pyrate_listed_may_leak(&l->listed, before))
					removed += engines[i]->leak(&b, &how, &end);
				reclaimed += end == PYRATE_LEAK_RECLAIMED;
			}
			else if (!engines[i]->in_tables || reclaimed < RECLAIM_PER_CALL)
				reclaimed += engines[i]->reclaim(&b, before) && engines[i]->in_tables;
		}
		list_free_deep(names);
	}
	return removed;
}

Datum
pyrate_leak_all(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(leak_every_bucket(pyrate_namespace(fcinfo), pyrate_now_ms()));
}

Datum
pyrate_flush(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	PyrateBucket b;

	pyrate_bucket_init(&b, nsp, name);
	pyrate_engine(b.def.storage)->flush(&b);
	PG_RETURN_VOID();
}

Datum
pyrate_dispose(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	const PyrateEngine *engines[PYRATE_MAX_ENGINES];
	int			nengines = pyrate_engines(engines);
	PyrateBucket b;
	bool		existed = false;
	int			i;

	pyrate_check_name("bucket name", name);
	memset(&b, 0, sizeof(b));
	b.nsp = nsp;
	b.name = name;
	/* wherever its items are, even when its definition is gone */
	for (i = 0; i < nengines; i++)
		existed |= engines[i]->dispose(&b);
	PG_RETURN_BOOL(existed);
}

typedef struct ListBuckets
{
	Oid			nsp;
	Oid			rate_array_type;
	ReturnSetInfo *rsinfo;
	const PyrateEngine *engine;
} ListBuckets;


static void
emit_bucket(const char *name, int64 count, const PyrateListed *listed, void *arg)
{
	ListBuckets *lb = arg;
	const PyrateDefinition *d = pyrate_route_or_null(lb->nsp, name);
	Datum		values[6];
	bool		nulls[6] = {false};

	values[0] = CStringGetTextDatum(name);
	values[2] = CStringGetTextDatum(lb->engine->name);
	values[4] = Int64GetDatum(count);
	/* 1.3 on: the entries stored beside the units counted */
	if (lb->rsinfo->setDesc->natts > 5)
	{
		PyrateBucket b;

		memset(&b, 0, sizeof(b));
		b.nsp = lb->nsp;
		b.name = name;
		b.listed = *listed;
		values[5] = Int64GetDatum(lb->engine->entries(&b));
	}
	if (d)
	{
		values[1] = CStringGetTextDatum(d->pattern);
		values[3] = PointerGetDatum(pyrate_rates_to_array(get_element_type(lb->rate_array_type),
														  d->rates, d->nrates));
	}
	else
		nulls[1] = nulls[3] = true;
	tuplestore_putvalues(lb->rsinfo->setResult, lb->rsinfo->setDesc, values, nulls);
}

Datum
pyrate_buckets(PG_FUNCTION_ARGS)
{
	const PyrateEngine *engines[PYRATE_MAX_ENGINES];
	int			nengines = pyrate_engines(engines);
	ListBuckets lb;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	lb.nsp = pyrate_namespace(fcinfo);
	lb.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	lb.rate_array_type = TupleDescAttr(lb.rsinfo->setDesc, 3)->atttypid;
	for (i = 0; i < nengines; i++)
	{
		lb.engine = engines[i];
		engines[i]->each_bucket(lb.nsp, emit_bucket, &lb);
	}
	return (Datum) 0;
}

/*
 * Limiter.try_acquire: put at the current time; when rejected and blocking,
 * sleep waiting + pyrate.buffer_ms and retry, until admitted, until the
 * deadline (a GetCurrentTimestamp() value, -1 for none) passes, or until the
 * weight can never fit.  No lock is held while sleeping, and the sleep wakes
 * for cancel, timeouts and shutdown.  On rejection r says by which rate.
 */
bool
pyrate_limiter_acquire(Oid nsp, const char *name, int64 weight, bool blocking,
					   int64 deadline, PyrateAcquireResult *r)
{
	MemoryContext loop_cxt = NULL;
	PyrateStatKind kind;
	char	   *pattern = NULL;
	TimestampTz started = 0;

	for (;;)
	{
		PyrateBucket b;
		pyr_decision d;
		int64		delay;
		MemoryContext old;

		/*
		 * The first try allocates in the caller's context, as any function
		 * call does; retries, in a context of their own that each round
		 * empties, so a long wait does not pile up.
		 */
		old = loop_cxt ? MemoryContextSwitchTo(loop_cxt) : CurrentMemoryContext;
		pyrate_bucket_init(&b, nsp, name);
		kind = decide(&b, pyrate_now_ms(), weight, true, &d);
		MemoryContextSwitchTo(old);
		if (pattern == NULL || strcmp(pattern, b.def.pattern) != 0)
		{
			if (pattern)
				pfree(pattern);
			pattern = pstrdup(b.def.pattern);
		}
		if (!d.admitted)
		{
			r->failing_rate = b.def.rates[d.failing];
			r->retry_after = d.retry_after;
		}
		if (loop_cxt)
			MemoryContextReset(loop_cxt);

		if (d.admitted || !blocking || d.waiting < 0)
			break;
		if (loop_cxt == NULL)
			loop_cxt = AllocSetContextCreate(CurrentMemoryContext, "pyrate acquire",
											 ALLOCSET_SMALL_SIZES);
		delay = d.waiting + pyrate_buffer_ms;
		if (started == 0)
			started = GetCurrentTimestamp();
		if (deadline >= 0)
		{
			TimestampTz t = GetCurrentTimestamp();

			if (t >= deadline)
				break;
			/* whole ms, rounded up: never give up before the deadline */
			delay = Min(delay, (deadline - t + 999) / 1000);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) Max(delay, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (loop_cxt)
		MemoryContextDelete(loop_cxt);
	if (started != 0)
		pyrate_stats_count(pattern, PYRATE_STAT_WAITED,
						   (GetCurrentTimestamp() - started) / 1000);
	pyrate_stats_count(pattern, kind, 0);
	pfree(pattern);
	return kind != PYRATE_STAT_REJECTED;
}

Datum
pyrate_try_acquire(PG_FUNCTION_ARGS)
{
	Oid			nsp = pyrate_namespace(fcinfo);
	char	   *name = arg_name(fcinfo, 0);
	int64		weight = arg_weight(fcinfo, 1);
	bool		blocking;
	double		timeout;
	int64		deadline = -1;
	PyrateAcquireResult r;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("blocking and timeout cannot be NULL"),
				 errhint("Leave them out for the defaults: blocking => true, timeout => -1 (wait as long as it takes).")));
	blocking = PG_GETARG_BOOL(2);
	timeout = PG_GETARG_FLOAT8(3);
	if (isnan(timeout) || (timeout < 0 && timeout != -1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid timeout %s", float8out_internal(timeout)),
				 errhint("The timeout is in seconds, 0 or more, or -1 to wait as long as it takes.")));
	if (!blocking && timeout != -1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a timeout needs blocking => true"),
				 errhint("Drop the timeout, or let the call block.")));
	if (timeout >= 0 && !isinf(timeout))
		deadline = GetCurrentTimestamp() + (int64) ceil(Min(timeout, 1e9) * 1000000.0);
	PG_RETURN_BOOL(pyrate_limiter_acquire(nsp, name, weight, blocking, deadline, &r));
}

void
pyrate_limiter_init(void)
{
	DefineCustomIntVariable("pyrate.buffer_ms",
							"Extra milliseconds a blocking acquire sleeps past the computed wait.",
							NULL,
							&pyrate_buffer_ms,
							50, 0, 60000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}
