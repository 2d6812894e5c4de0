/*
 * driver_client.c — replay through libpyrate's public API, one driver per
 * bucket kind: memory, multiprocess, sqlite, redis, postgres.
 *
 * Each scenario gets a fresh bucket with its rates; trace timestamps are
 * passed as item timestamps (the Postgres bucket passes them as `at`).
 */
#include "replay.h"
#include "pyrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct client_ctx
{
	const char *kind;
	replay_opts opts;
	pyrate_bucket *bucket;
	pyrate_bucket *pg;			/* unbound Postgres bucket that defines scenarios */
	char		name[128];		/* the Postgres scenario's bucket name */
	char		redis_host[128];
	int			redis_port;
} client_ctx;

static bool
fail(char *err, const pyrate_error *e)
{
	snprintf(err, REPLAY_ERR_LEN, "%s: %s", pyrate_code_name(e->code), e->message);
	return false;
}

static bool
client_open(void **ctx, const replay_opts *opts, const char *kind, char *err)
{
	client_ctx *c = calloc(1, sizeof(client_ctx));

	if (!c)
	{
		snprintf(err, REPLAY_ERR_LEN, "out of memory");
		return false;
	}
	c->kind = kind;
	c->opts = *opts;
	if (strcmp(kind, "sqlite") == 0 && !opts->sqlite)
	{
		snprintf(err, REPLAY_ERR_LEN, "--sqlite PATH is required");
		free(c);
		return false;
	}
	if (strcmp(kind, "redis") == 0)
	{
		const char *colon = opts->redis ? strrchr(opts->redis, ':') : NULL;

		if (!colon || colon == opts->redis || (size_t) (colon - opts->redis) >= sizeof(c->redis_host))
		{
			snprintf(err, REPLAY_ERR_LEN, "--redis HOST:PORT is required");
			free(c);
			return false;
		}
		memcpy(c->redis_host, opts->redis, colon - opts->redis);
		c->redis_port = atoi(colon + 1);
	}
	if (strcmp(kind, "postgres") == 0)
	{
		pyrate_pg_options o = {opts->dsn, NULL, NULL, 0, PYRATE_PG_FASTPATH};
		pyrate_error e;

		if (!(c->pg = pyrate_pg_bucket_new(&o, &e)))
		{
			free(c);
			return fail(err, &e);
		}
	}
	*ctx = c;
	return true;
}

static void
drop_bucket(client_ctx *c)
{
	if (c->bucket && c->pg)
		pyrate_pg_dispose(c->pg, c->name, NULL, NULL);
	pyrate_close(c->bucket);
	c->bucket = NULL;
}

static bool
client_scenario(void *ctx, int id, const pyr_rate *rates, int n, char *err)
{
	client_ctx *c = ctx;
	const pyrate_rate *r = (const pyrate_rate *) rates;
	pyrate_error e = {0};

	drop_bucket(c);
	if (strcmp(c->kind, "memory") == 0)
		c->bucket = pyrate_memory_bucket_new(r, n, &e);
	else if (strcmp(c->kind, "multiprocess") == 0)
		c->bucket = pyrate_multiprocess_bucket_new(r, n, 0, &e);
	else if (strcmp(c->kind, "sqlite") == 0)
	{
		pyrate_sqlite_options o = {c->opts.sqlite, "conformance", false, false, 0};

		c->bucket = pyrate_sqlite_bucket_new(r, n, &o, &e);
	}
	else if (strcmp(c->kind, "redis") == 0)
	{
		char		key[64];
		/* trace time is not wall time: keep the key for the whole run */
		pyrate_redis_options o = {c->redis_host, c->redis_port, NULL, NULL, key, 0, 3600000};

		snprintf(key, sizeof(key), "pyrate:conformance:%d", (int) getpid());
		c->bucket = pyrate_redis_bucket_new(r, n, &o, &e);
	}
	else
	{
		pyrate_pg_options o = {c->opts.dsn, c->name, NULL, 0, PYRATE_PG_FASTPATH};

		snprintf(c->name, sizeof(c->name), "conformance:%d:%d", (int) getpid(), id);
		if (pyrate_pg_define(c->pg, c->name, r, n, c->opts.storage, false, &e) != PYRATE_OK)
			return fail(err, &e);
		c->bucket = pyrate_pg_bucket_new(&o, &e);
	}
	if (!c->bucket)
		return fail(err, &e);
	/* sqlite and redis keep their rows across scenarios */
	if (pyrate_flush(c->bucket, &e) != PYRATE_OK)
		return fail(err, &e);
	return true;
}

static bool
client_put(void *ctx, int64_t ts, int64_t weight, bool *admitted, pyr_rate *failing, char *err)
{
	client_ctx *c = ctx;
	pyrate_item item = {c->name, ts, weight};
	pyrate_decision d;
	pyrate_error e;

	if (pyrate_put(c->bucket, &item, &d, &e) != PYRATE_OK)
		return fail(err, &e);
	*admitted = d.acquired;
	failing->limit = d.failing_rate.limit;
	failing->interval = d.failing_rate.interval;
	return true;
}

static bool
client_waiting(void *ctx, int64_t ts, int64_t weight, int64_t *ms, char *err)
{
	client_ctx *c = ctx;
	pyrate_item item = {c->name, ts, weight};
	pyrate_error e;

	return pyrate_waiting(c->bucket, &item, ms, &e) == PYRATE_OK || fail(err, &e);
}

static bool
client_count(void *ctx, int64_t *units, char *err)
{
	pyrate_error e;

	return pyrate_count(((client_ctx *) ctx)->bucket, units, &e) == PYRATE_OK || fail(err, &e);
}

static bool
client_peek(void *ctx, int64_t index, bool *found, int64_t *ts, int64_t *weight, char *err)
{
	pyrate_item item;
	pyrate_error e;

	if (pyrate_peek(((client_ctx *) ctx)->bucket, index, found, &item, &e) != PYRATE_OK)
		return fail(err, &e);
	*ts = item.timestamp;
	*weight = item.weight;
	return true;
}

static bool
client_leak(void *ctx, int64_t ts, int64_t *removed, char *err)
{
	pyrate_error e;

	return pyrate_leak(((client_ctx *) ctx)->bucket, ts, removed, &e) == PYRATE_OK || fail(err, &e);
}

static bool
client_flush(void *ctx, char *err)
{
	pyrate_error e;

	return pyrate_flush(((client_ctx *) ctx)->bucket, &e) == PYRATE_OK || fail(err, &e);
}

static bool
client_invalid(void *ctx, const char *text, bool *rejected, char *err)
{
	client_ctx *c = ctx;
	pyrate_rate rates[PYRATE_MAX_RATES];
	int			n = 0;
	const char *p = text;
	pyrate_error e;
	int			rc;

	while (*p && n < PYRATE_MAX_RATES)
	{
		char		one[64];
		size_t		len = strcspn(p, ",");

		snprintf(one, sizeof(one), "%.*s", (int) len, p);
		if (pyrate_rate_parse(one, &rates[n++], &e) != PYRATE_OK)
			return fail(err, &e);
		p += len + (p[len] == ',');
	}
	if (c->pg)
		rc = pyrate_pg_define(c->pg, "conformance:invalid", rates, n, c->opts.storage, false, &e);
	else
		rc = pyrate_rates_validate(rates, n, &e);
	if (rc != PYRATE_OK && rc != PYRATE_EINVAL)
		return fail(err, &e);
	*rejected = rc == PYRATE_EINVAL;
	return true;
}

static void
client_close(void *ctx)
{
	client_ctx *c = ctx;

	drop_bucket(c);
	pyrate_close(c->pg);
	free(c);
}

#define CLIENT_DRIVER(kind) \
	static bool kind##_open(void **ctx, const replay_opts *opts, char *err) \
	{ return client_open(ctx, opts, #kind, err); } \
	const replay_driver replay_##kind##_driver = { \
		#kind, kind##_open, client_scenario, client_put, client_waiting, client_count, \
		client_peek, client_leak, client_flush, client_invalid, client_close \
	}

CLIENT_DRIVER(memory);
CLIENT_DRIVER(multiprocess);
CLIENT_DRIVER(sqlite);
CLIENT_DRIVER(redis);
CLIENT_DRIVER(postgres);
