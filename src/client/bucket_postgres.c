/*
 * bucket_postgres.c — PostgresBucket and PostgresClock over libpq: the
 * pyrate extension's SQL surface by name, and the bucket ops over it.
 *
 * Every operation is one call of the extension, sent without session state
 * (pyrate.h lists the protocols): a put by the fast path (pg_fastpath.c)
 * unless the protocol says otherwise, everything else as statements
 * (pg_query.c) over a connection kept and reopened by pg_conn.c; the async
 * acquire is pg_async.c's.  Each call holds the bucket's mutex while it
 * talks to the server.
 */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
bucket_name(pg_bucket *p, const char *name)
{
	return name ? name : p->name;
}

#define NEED_NAME(p, name, err) \
	do { \
		if (!bucket_name(p, name)) \
			return pyr_fail(err, PYRATE_EINVAL, "postgres: a bucket name is required (the bucket is not bound to one)"); \
	} while (0)

static int
async_in_flight(pyrate_error *err)
{
	return pyr_fail(err, PYRATE_EINVAL, "postgres: an async acquire is in flight on this bucket");
}

/* run a statement under the mutex; the caller clears *out */
static int
run(pg_bucket *p, int which, int nparams, const char *const *values, PGresult **out,
	pyrate_error *err)
{
	int			rc;

	pthread_mutex_lock(&p->mutex);
	if (p->astate != A_IDLE)
		rc = async_in_flight(err);
	else
		rc = pyr_pg_run(p, which, nparams, values, out, err);
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

/* run a statement answering one int8 (or boolean) */
static int
query_int(pg_bucket *p, int which, int nparams, const char *const *values, int64_t *out,
		  pyrate_error *err)
{
	PGresult   *res = NULL;
	int			rc = run(p, which, nparams, values, &res, err);

	if (rc == PYRATE_OK)
		rc = pyr_pg_int_result(res, out, err);
	PQclear(res);
	return rc;
}

int
pyrate_pg_acquire(pyrate_bucket *b, const char *name, int64_t weight, int64_t at,
				  pyrate_decision *d, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		w[24];
	char		ts[24];
	const char *values[3];
	PGresult   *res = NULL;
	int			rc;

	NEED_NAME(p, name, err);
	if (pyr_check_weight(weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	if (p->protocol == PYRATE_PG_FASTPATH)
	{
		bool		fallback = false;

		pthread_mutex_lock(&p->mutex);
		if (p->astate != A_IDLE)
			rc = async_in_flight(err);
		else
			rc = pyr_pg_fast_acquire(p, bucket_name(p, name), weight, at, d, &fallback, err);
		pthread_mutex_unlock(&p->mutex);
		if (!fallback)
			return rc;
	}
	snprintf(w, sizeof(w), "%lld", (long long) weight);
	if (at != PYRATE_NOW)
		snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = w;
	values[2] = at == PYRATE_NOW ? NULL : ts;
	if ((rc = run(p, Q_ACQUIRE, 3, values, &res, err)) != PYRATE_OK)
		return rc;
	rc = pyr_pg_parse_decision(res, at, d, err);
	PQclear(res);
	return rc;
}

int
pyrate_pg_waiting(pyrate_bucket *b, const char *name, int64_t weight, int64_t at, int64_t *ms,
				  pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		w[24];
	char		ts[24];
	const char *values[3];

	NEED_NAME(p, name, err);
	snprintf(w, sizeof(w), "%lld", (long long) weight);
	snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = w;
	values[2] = at == PYRATE_NOW ? NULL : ts;
	return query_int(p, Q_WAITING, 3, values, ms, err);
}

int
pyrate_pg_count(pyrate_bucket *b, const char *name, int64_t *units, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	return query_int(p, Q_COUNT, 1, values, units, err);
}

int
pyrate_pg_peek(pyrate_bucket *b, const char *name, int64_t index, bool *found,
			   int64_t *ts, int64_t *weight, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		idx[24];
	const char *values[2];
	PGresult   *res = NULL;
	int			rc;

	NEED_NAME(p, name, err);
	if (index < 0 || index > INT32_MAX)
		return pyr_fail(err, PYRATE_EINVAL, "peek index %lld is out of range", (long long) index);
	snprintf(idx, sizeof(idx), "%lld", (long long) index);
	values[0] = bucket_name(p, name);
	values[1] = idx;
	if ((rc = run(p, Q_PEEK, 2, values, &res, err)) != PYRATE_OK)
		return rc;
	*found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	if (*found)
	{
		*ts = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*weight = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	return PYRATE_OK;
}

int
pyrate_pg_leak(pyrate_bucket *b, const char *name, int64_t at, int64_t *removed, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		ts[24];
	const char *values[2];

	if (!bucket_name(p, name))
		return query_int(p, Q_LEAK_ALL, 0, NULL, removed, err);
	snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = at == PYRATE_NOW ? NULL : ts;
	return query_int(p, Q_LEAK, 2, values, removed, err);
}

int
pyrate_pg_flush(pyrate_bucket *b, const char *name, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	return query_int(p, Q_FLUSH, 1, values, NULL, err);
}

int
pyrate_pg_dispose(pyrate_bucket *b, const char *name, bool *existed, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];
	int64_t		v = 0;
	int			rc;

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	rc = query_int(p, Q_DISPOSE, 1, values, &v, err);
	if (existed)
		*existed = v != 0;
	return rc;
}

int
pyrate_pg_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	return query_int((pg_bucket *) b, Q_NOW, 0, NULL, ms, err);
}

_Static_assert(PYRATE_MAX_SLOTS == PYR_MAX_SLOTS, "the client's slots bound is the extension's");

int
pyrate_pg_define_with(pyrate_bucket *b, const char *pattern, const pyrate_rate *rates, int n,
					  const pyrate_pg_define_options *opts, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		list[PYRATE_MAX_RATES * 48 + 3];
	char		slots[16];
	char		max_buckets[24];
	size_t		len = 0;
	const char *values[7];
	int			which;
	int			nparams;
	int			i;

	if (!pattern || n < 1 || n > PYRATE_MAX_RATES || !rates || !opts)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: a pattern and 1 to %d rates are required",
						PYRATE_MAX_RATES);
	if (opts->slots < 0 || opts->slots > PYRATE_MAX_SLOTS)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: slots must be 0 (exact) or 1 to %d, not %d",
						PYRATE_MAX_SLOTS, opts->slots);
	if (opts->max_buckets < 0)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: max_buckets must be 0 (no cap) or more, not %lld",
						(long long) opts->max_buckets);
	/*
	 * The server refuses it as well (22023), but only after connecting and a
	 * round trip.  A storage left NULL is pyrate.default_storage, which only
	 * the server knows: that one is left to it.
	 */
	if (opts->volatile_buckets && opts->storage && strcmp(opts->storage, "table") == 0)
		return pyr_fail(err, PYRATE_EINVAL,
						"postgres: volatile_buckets needs memory storage: table buckets are always durable");
	list[len++] = '{';
	for (i = 0; i < n; i++)
	{
		/* limit/interval in ms: the SQL type reads a bare number as milliseconds */
		len += snprintf(list + len, sizeof(list) - len, "%s%lld/%lld", i ? "," : "",
						(long long) rates[i].limit, (long long) rates[i].interval);
	}
	snprintf(list + len, sizeof(list) - len, "}");
	snprintf(slots, sizeof(slots), "%d", opts->slots);
	snprintf(max_buckets, sizeof(max_buckets), "%lld", (long long) opts->max_buckets);
	values[0] = pattern;
	values[1] = list;
	values[2] = opts->storage;
	values[3] = opts->dry_run ? "true" : "false";
	values[4] = opts->slots > 0 ? slots : NULL;
	values[5] = opts->max_buckets > 0 ? max_buckets : NULL;
	values[6] = "false";		/* durable, read by Q_DEFINE_VOLATILE alone */
	/*
	 * The oldest statement that carries every option set, so that a
	 * definition without the newer ones works with the older extensions:
	 * without any, the statement every version of the extension takes.
	 */
	if (opts->volatile_buckets)
	{
		which = Q_DEFINE_VOLATILE;
		nparams = 7;
	}
	else if (opts->slots > 0 || opts->max_buckets > 0)
	{
		which = Q_DEFINE_WITH;
		nparams = 6;
	}
	else
	{
		which = Q_DEFINE;
		nparams = 4;
	}
	return query_int(p, which, nparams, values, NULL, err);
}

int
pyrate_pg_define(pyrate_bucket *b, const char *pattern, const pyrate_rate *rates, int n,
				 const char *storage, bool dry_run, pyrate_error *err)
{
	pyrate_pg_define_options o = {storage, dry_run, 0, 0, false};

	return pyrate_pg_define_with(b, pattern, rates, n, &o, err);
}

int
pyrate_pg_buckets(pyrate_bucket *b, const char *name, pyrate_pg_row_fn fn, void *user,
				  pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];
	const char **cols;
	PGresult   *res = NULL;
	int			ncols;
	int			r;
	int			c;
	int			rc;

	if (!fn)
		return pyr_fail(err, PYRATE_EINVAL, "a row function is required");
	values[0] = bucket_name(p, name);
	if ((rc = run(p, Q_BUCKETS, 1, values, &res, err)) != PYRATE_OK)
		return rc;
	ncols = PQnfields(res);
	/* the names, then the values of the row at hand */
	if (!(cols = malloc(2 * (ncols + 1) * sizeof(char *))))
	{
		PQclear(res);
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	}
	for (c = 0; c < ncols; c++)
		cols[c] = PQfname(res, c);
	for (r = 0; r < PQntuples(res); r++)
	{
		for (c = 0; c < ncols; c++)
			cols[ncols + 1 + c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
		if (fn(user, ncols, cols, cols + ncols + 1) != 0)
			break;
	}
	free(cols);
	PQclear(res);
	return PYRATE_OK;
}

/* ---- the bucket ops -------------------------------------------------- */

/* through the ops a bound name wins; an unbound bucket takes the item's */
static const char *
item_bucket(pyrate_bucket *b, const pyrate_item *item)
{
	pg_bucket  *p = (pg_bucket *) b;

	return p->name ? p->name : item->name;
}

static int
pg_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	return pyrate_pg_acquire(b, item_bucket(b, item), item->weight, item->timestamp, d, err);
}

static int
pg_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	return pyrate_pg_waiting(b, item_bucket(b, item), item->weight, item->timestamp, ms, err);
}

static int
pg_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	return pyrate_pg_leak(b, NULL, now, removed, err);
}

static int
pg_flush(pyrate_bucket *b, pyrate_error *err)
{
	return pyrate_pg_flush(b, NULL, err);
}

static int
pg_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	return pyrate_pg_count(b, NULL, units, err);
}

static int
pg_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	return pyrate_pg_peek(b, NULL, index, found, ts, weight, err);
}

static void
pg_close(pyrate_bucket *b)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			i;

	pyr_pg_drop(p);
	PQclear(p->ares);
	for (i = 0; i < N_QUERIES; i++)
		free(p->sql[i]);
	free(p->conninfo);
	free(p->name);
	free(p->schema);
	free(p->qschema);
	free(p->aname);
	if (p->protocol == PYRATE_PG_FASTPATH)
		pyr_watchdog_release();
	pyr_pg_fn_buffer_free(p->fn_result, p->fn_result_len);
	pthread_mutex_destroy(&p->mutex);
	free(p);
}

static const pyrate_bucket_ops pg_ops = {
	"postgres", pg_put, pg_waiting, pg_leak, pg_flush, pg_count, pg_peek,
	pyrate_pg_now, NULL, NULL, pg_close
};

pyrate_bucket *
pyrate_pg_bucket_new(const pyrate_pg_options *opts, pyrate_error *err)
{
	pg_bucket  *p = calloc(1, sizeof(pg_bucket));
	pyrate_pg_options none = {0};

	if (!opts)
		opts = &none;
	if (!p)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (opts->timeout_ms < 0)
	{
		free(p);
		pyr_fail(err, PYRATE_EINVAL, "postgres: timeout_ms must not be negative");
		return NULL;
	}
	if (opts->protocol < PYRATE_PG_FASTPATH || opts->protocol > PYRATE_PG_PREPARED)
	{
		free(p);
		pyr_fail(err, PYRATE_EINVAL, "postgres: protocol %d is not one of PYRATE_PG_FASTPATH, "
				 "PYRATE_PG_UNNAMED, PYRATE_PG_PREPARED", (int) opts->protocol);
		return NULL;
	}
	pyrate_bucket_init(&p->base, &pg_ops, NULL, 0, NULL);
	pthread_mutex_init(&p->mutex, NULL);
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
	p->protocol = opts->protocol;
	if (p->protocol == PYRATE_PG_FASTPATH)
		pyr_watchdog_hold();
	p->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
	p->name = opts->name ? strdup(opts->name) : NULL;
	p->schema = opts->schema ? strdup(opts->schema) : NULL;
	if (p->protocol == PYRATE_PG_FASTPATH)
		p->fn_result = pyr_pg_fn_buffer_new(&p->fn_result_len);
	if (!p->conninfo || (opts->name && !p->name) || (opts->schema && !p->schema)
		|| (p->protocol == PYRATE_PG_FASTPATH && !p->fn_result))
	{
		pg_close(&p->base);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	return &p->base;
}

/* ---- the async acquire (pg_async.c) ------------------------------- */

int
pyrate_pg_acquire_start(pyrate_bucket *b, const char *name, int64_t weight, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc;

	if (!b || b->ops != &pg_ops)
		return pyr_fail(err, PYRATE_EINVAL, "async acquire needs a Postgres bucket");
	NEED_NAME(p, name, err);
	if (pyr_check_weight(weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	pthread_mutex_lock(&p->mutex);
	rc = pyr_pg_async_start(p, bucket_name(p, name), weight, err);
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

int
pyrate_pg_socket(pyrate_bucket *b)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			fd;

	pthread_mutex_lock(&p->mutex);
	fd = p->conn ? PQsocket(p->conn) : -1;
	pthread_mutex_unlock(&p->mutex);
	return fd;
}

int
pyrate_pg_acquire_poll(pyrate_bucket *b, pyrate_pg_poll *state, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc;

	if (!state)
		return pyr_fail(err, PYRATE_EINVAL, "state is required");
	pthread_mutex_lock(&p->mutex);
	rc = pyr_pg_async_poll(p, state, err);
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

int
pyrate_pg_acquire_finish(pyrate_bucket *b, pyrate_decision *d, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc;

	if (!d)
		return pyr_fail(err, PYRATE_EINVAL, "decision is required");
	pthread_mutex_lock(&p->mutex);
	rc = pyr_pg_async_finish(p, d, err);
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

/* ---- PostgresClock ------------------------------------------------- */

typedef struct pg_clock
{
	pyrate_clock base;
	pyrate_bucket *bucket;
} pg_clock;

static int
pg_clock_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	return pyrate_pg_now(((pg_clock *) clock)->bucket, ms, err);
}

static void
pg_clock_free(pyrate_clock *clock)
{
	pg_close(((pg_clock *) clock)->bucket);
	free(clock);
}

pyrate_clock *
pyrate_pg_clock_new(const pyrate_pg_options *opts, pyrate_error *err)
{
	pg_clock   *c = calloc(1, sizeof(pg_clock));

	if (!c)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (!(c->bucket = pyrate_pg_bucket_new(opts, err)))
	{
		free(c);
		return NULL;
	}
	c->base.now = pg_clock_now;
	c->base.free = pg_clock_free;
	return &c->base;
}
