/*
 * driver_sql.c — replay through the extension's SQL functions (libpq), on
 * the engine given by --storage.  Each scenario gets its own bucket, defined
 * for the scenario's rates; items carry the trace's timestamps via "at".
 */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

typedef struct sql_ctx
{
	PGconn	   *conn;
	const char *storage;
	char		bucket[128];
	int			scenarios;
} sql_ctx;

/* Run a query with text parameters; NULL (and err set) on failure. */
static PGresult *
run(sql_ctx *c, const char *sql, int nparams, const char *const *params, char *err)
{
	PGresult   *res = PQexecParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
	{
		snprintf(err, REPLAY_ERR_LEN, "%s", PQresultErrorMessage(res));
		err[strcspn(err, "\n")] = '\0';
		PQclear(res);
		return NULL;
	}
	return res;
}

static bool
exec_ok(sql_ctx *c, const char *sql, int nparams, const char *const *params, char *err)
{
	PGresult   *res = run(c, sql, nparams, params, err);

	PQclear(res);
	return res != NULL;
}

static bool
sql_open(void **ctx, const replay_opts *opts, char *err)
{
	sql_ctx    *c = calloc(1, sizeof(sql_ctx));

	if (!c)
	{
		snprintf(err, REPLAY_ERR_LEN, "out of memory");
		return false;
	}
	c->conn = PQconnectdb(opts->dsn ? opts->dsn : "");
	c->storage = opts->storage;
	if (PQstatus(c->conn) != CONNECTION_OK)
	{
		snprintf(err, REPLAY_ERR_LEN, "%s", PQerrorMessage(c->conn));
		PQfinish(c->conn);
		free(c);
		return false;
	}
	*ctx = c;
	return true;
}

static bool
sql_scenario(void *ctx, int id, const pyr_rate *rates, int n, char *err)
{
	sql_ctx    *c = ctx;
	char		list[1024] = "{";
	const char *params[3];
	int			i;

	for (i = 0; i < n; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%lld/%lld",
				 i ? "," : "", (long long) rates[i].limit, (long long) rates[i].interval);
	strcat(list, "}");
	snprintf(c->bucket, sizeof(c->bucket), "conformance:%d:%s:%d", (int) getpid(), c->storage, id);
	params[0] = c->bucket;
	params[1] = list;
	params[2] = c->storage;
	c->scenarios++;
	return exec_ok(c, "SELECT pyrate_define($1, $2::pyrate_rate[], $3)", 3, params, err) &&
		exec_ok(c, "SELECT pyrate_dispose($1)", 1, params, err);
}

static bool
sql_put(void *ctx, int64_t ts, int64_t weight, bool *admitted, pyr_rate *failing, char *err)
{
	sql_ctx    *c = ctx;
	char		a[32],
				b[32];
	const char *params[3] = {c->bucket, a, b};
	PGresult   *res;

	snprintf(a, sizeof(a), "%lld", (long long) weight);
	snprintf(b, sizeof(b), "%lld", (long long) ts);
	res = run(c, "SELECT acquired, pyrate_rate_limit(failing_rate), pyrate_rate_interval(failing_rate)"
			  " FROM pyrate_acquire($1, $2::int, $3::bigint)", 3, params, err);
	if (!res)
		return false;
	*admitted = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (!PQgetisnull(res, 0, 1))
	{
		failing->limit = atoll(PQgetvalue(res, 0, 1));
		failing->interval = atoll(PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	return true;
}

/* one bigint from a query on the bucket and up to two numbers */
static bool
scalar(sql_ctx *c, const char *sql, int nnum, int64_t x, int64_t y, int64_t *out, char *err)
{
	char		a[32],
				b[32];
	const char *params[3] = {c->bucket, a, b};
	PGresult   *res;

	snprintf(a, sizeof(a), "%lld", (long long) x);
	snprintf(b, sizeof(b), "%lld", (long long) y);
	res = run(c, sql, 1 + nnum, params, err);
	if (!res)
		return false;
	*out = atoll(PQgetvalue(res, 0, 0));
	PQclear(res);
	return true;
}

static bool
sql_waiting(void *ctx, int64_t ts, int64_t weight, int64_t *ms, char *err)
{
	return scalar(ctx, "SELECT pyrate_waiting($1, $2::int, $3::bigint)", 2, weight, ts, ms, err);
}

static bool
sql_count(void *ctx, int64_t *units, char *err)
{
	return scalar(ctx, "SELECT pyrate_count($1)", 0, 0, 0, units, err);
}

static bool
sql_peek(void *ctx, int64_t index, bool *found, int64_t *ts, int64_t *weight, char *err)
{
	sql_ctx    *c = ctx;
	char		a[32];
	const char *params[2] = {c->bucket, a};
	PGresult   *res;

	snprintf(a, sizeof(a), "%lld", (long long) index);
	res = run(c, "SELECT ts, weight FROM pyrate_peek($1, $2::int)", 2, params, err);
	if (!res)
		return false;
	*found = !PQgetisnull(res, 0, 0);
	if (*found)
	{
		*ts = atoll(PQgetvalue(res, 0, 0));
		*weight = atoll(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return true;
}

static bool
sql_leak(void *ctx, int64_t ts, int64_t *removed, char *err)
{
	return scalar(ctx, "SELECT pyrate_leak($1, $2::bigint)", 1, ts, 0, removed, err);
}

static bool
sql_flush(void *ctx, char *err)
{
	sql_ctx    *c = ctx;
	const char *params[1] = {c->bucket};

	return exec_ok(c, "SELECT pyrate_flush($1)", 1, params, err);
}

static bool
sql_invalid(void *ctx, const char *text, bool *rejected, char *err)
{
	sql_ctx    *c = ctx;
	char		list[1024];
	const char *params[2] = {"conformance:invalid", list};
	PGresult   *res;
	char		define_err[REPLAY_ERR_LEN];

	snprintf(list, sizeof(list), "{%s}", text);
	res = run(c, "SELECT pyrate_validate_rates($1::pyrate_rate[])", 1, params + 1, err);
	if (!res)
		return false;
	*rejected = strcmp(PQgetvalue(res, 0, 0), "f") == 0;
	PQclear(res);
	/* pyrate_define must refuse the same list */
	res = PQexecParams(c->conn, "SELECT pyrate_define($1, $2::pyrate_rate[])", 2, NULL,
					   params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		*rejected = false;
		exec_ok(c, "SELECT pyrate_undefine($1)", 1, params, define_err);
	}
	else if (strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22023") != 0)
	{
		snprintf(err, REPLAY_ERR_LEN, "pyrate_define failed with %s, expected 22023",
				 PQresultErrorField(res, PG_DIAG_SQLSTATE));
		PQclear(res);
		return false;
	}
	PQclear(res);
	return true;
}

static void
sql_close(void *ctx)
{
	sql_ctx    *c = ctx;
	char		pattern[128];
	const char *params[1] = {pattern};
	char		err[REPLAY_ERR_LEN];

	/* leave nothing behind: every scenario's bucket and definition */
	snprintf(pattern, sizeof(pattern), "conformance:%d:%s:*", (int) getpid(), c->storage);
	exec_ok(c, "SELECT pyrate_dispose(name), pyrate_undefine(name) FROM pyrate_buckets()"
			" WHERE name LIKE replace($1, '*', '%')", 1, params, err);
	exec_ok(c, "SELECT pyrate_undefine(pattern) FROM pyrate_definitions"
			" WHERE pattern LIKE replace($1, '*', '%')", 1, params, err);
	PQfinish(c->conn);
	free(c);
}

const replay_driver replay_sql_driver = {
	"sql", sql_open, sql_scenario, sql_put, sql_waiting, sql_count,
	sql_peek, sql_leak, sql_flush, sql_invalid, sql_close
};
