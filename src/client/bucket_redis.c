/*
 * bucket_redis.c — RedisBucket: the log as one sorted set per bucket key.
 *
 * A member is "<cum><head><base><timestamp>" scored by its timestamp, cum
 * being the units put since the key began, zero-padded to 17 digits: one
 * put of weight 1000 is one member, members with equal timestamps sort in
 * put order, and every field is read with string.sub at a fixed place.  The
 * newest member holds the total; a window's count is the total less the cum
 * of the last member scored before the window (one ZREVRANGEBYSCORE ...
 * LIMIT 0 1); an item's weight is its cum less the next older member's; the
 * item holding a unit is found by reverse rank.  A leak leaves a marker
 * scored -inf, "<cum><no hint>-inf", holding the cum of the last item it
 * removed: it is before every window, in none, and the count starts from it.
 *
 * head (13 digits) and base (17) are a hint that only the newest member's
 * copy is read for: the oldest item's timestamp and the units before it (the
 * marker's cum, or 0).  Puts append and never change the oldest item, so a
 * put copies them from the newest; a leak that removes items writes the
 * newest member again with the new ones.  While the oldest item is inside a
 * window, that window holds the whole log and its count is total less base,
 * with no read: the common case for the largest window of a busy bucket.
 * The hint costs 30 bytes a member; it is "no hint" (dashes) for a timestamp
 * outside 0 .. 10^13 - 1.
 *
 * Every operation is one EVALSHA of the bucket's script (bucket_redis.lua,
 * embedded at build), atomic on the server; the script mirrors pyr_decide of
 * the core module (the conformance traces hold it to that).  redis_conn.c
 * takes it to the node that serves the key, on a single server or a cluster.
 *
 * Buckets of one rate list may share their connections, script and settings
 * (a redis_shared, freed with the last of them): the keyed factory's buckets,
 * one key per name, do.
 */
#include "redis_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct redis_shared
{
	int			refs;			/* buckets holding it (atomic) */
	pyr_redis  *conn;
	pyr_script	script;		/* script_text() */
} redis_shared;

typedef struct redis_bucket
{
	pyrate_bucket base;
	redis_shared *shared;
	char	   *key;
	size_t		key_len;
	int			slot;			/* the key's cluster slot */
} redis_bucket;

/* the line (len bytes, its newline included) holds marker and blanks only */
static bool
is_marker(const char *line, size_t len, const char *marker)
{
	size_t		n = strlen(marker);

	while (len > 0 && *line == ' ')
	{
		line++;
		len--;
	}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	return len == n && memcmp(line, marker, n) == 0;
}

/*
 * One line of the script with its @name@ fields written in (rate is -1
 * outside a rate's block); comment lines are copied as they are.
 */
static void
put_line(FILE *f, const char *line, size_t len, const pyrate_bucket *b, int rate, int64_t expire_ms)
{
	const char *end = line + len;
	const char *text = line;

	while (text < end && *text == ' ')
		text++;
	if (end - text >= 2 && text[0] == '-' && text[1] == '-')
	{
		fwrite(line, 1, len, f);
		return;
	}
	text = line;
	while (text < end)
	{
		const char *at = memchr(text, '@', end - text);
		const char *close = at ? memchr(at + 1, '@', end - at - 1) : NULL;
		long long	value;
		size_t		n;

		if (!close)
		{
			fwrite(text, 1, end - text, f);
			return;
		}
		fwrite(text, 1, at - text, f);
		n = close - at - 1;
		if (rate >= 0 && n == 1 && at[1] == 'i')
			value = rate + 1;
		else if (rate >= 0 && n == 5 && memcmp(at + 1, "limit", 5) == 0)
			value = b->rates[rate].limit;
		else if (rate >= 0 && n == 8 && memcmp(at + 1, "interval", 8) == 0)
			value = b->rates[rate].interval;
		else if (n == 7 && memcmp(at + 1, "largest", 7) == 0)
			value = b->rates[b->nrates - 1].interval;
		else if (n == 6 && memcmp(at + 1, "expire", 6) == 0)
			value = expire_ms;
		else if (n == 6 && memcmp(at + 1, "period", 6) == 0)
			value = expire_ms - b->rates[b->nrates - 1].interval;
		else
		{
			/* not a field: the text as it is */
			fwrite(at, 1, close - at, f);
			text = close;
			continue;
		}
		fprintf(f, "%lld", value);
		text = close + 1;
	}
}

/* the length of the line at text, its newline included */
static size_t
line_len(const char *text)
{
	const char *nl = strchr(text, '\n');

	return nl ? (size_t) (nl - text) + 1 : strlen(text);
}

/*
 * The bucket's script: bucket_redis.lua with each block between "-- @each
 * rate" and "-- @end" once per rate, and the fields written in (the file
 * says which).  The expiry is refreshed when the server clock enters a new
 * period of expire_ms less the largest interval: the key must outlive its
 * newest item by that interval, and the rest is slack (none when expire_ms
 * is shorter: then every put sets it).
 */
static char *
script_text(const pyrate_bucket *b, int64_t expire_ms)
{
	const char *line = pyr_redis_script;
	const char *block = NULL;	/* the first line of the rate block being read */
	char	   *text = NULL;
	size_t		len;
	FILE	   *f = open_memstream(&text, &len);
	int			failed;
	int			i;

	if (!f)
		return NULL;
	for (; *line; line += line_len(line))
	{
		size_t		n = line_len(line);

		if (is_marker(line, n, "-- @each rate"))
			block = line + n;
		else if (block && is_marker(line, n, "-- @end"))
		{
			for (i = 0; i < b->nrates; i++)
			{
				const char *l;

				for (l = block; l < line; l += line_len(l))
					put_line(f, l, line_len(l), b, i, expire_ms);
			}
			block = NULL;
		}
		else if (!block)
			put_line(f, line, n, b, -1, expire_ms);
	}
	failed = ferror(f);
	if (fclose(f) != 0 || failed)
	{
		free(text);
		return NULL;
	}
	return text;
}

/*
 * The script with op and args (at most 20 bytes each), on the key's node;
 * with stamp, args hold it and the node's clock fills it (*ts its value).
 * The caller frees *out.
 */
static int
call(redis_bucket *r, int argc, const char **args, char *stamp, int64_t *ts, redisReply **out,
	 pyrate_error *err)
{
	pyr_redis_call c = {&r->shared->script, r->key, r->key_len, r->slot, argc, args, stamp, 0};
	int			rc = pyr_redis_eval(r->shared->conn, &c, out, err);

	if (stamp)
		*ts = c.ts;
	return rc;
}

static int
bad_reply(redisReply *rep, pyrate_error *err)
{
	freeReplyObject(rep);
	return pyr_fail(err, PYRATE_ESERVER, "redis: unexpected reply from the pyrate script");
}

/* put or waiting: one script call, results as in pyr_decide */
static int
decide(pyrate_bucket *b, const char *op, const pyrate_item *item, pyr_decision *dec, int64_t *ts,
	   pyrate_error *err)
{
	redis_bucket *r = (redis_bucket *) b;
	char		stamp[24];
	char		weight[24];
	const char *args[3] = {op, stamp, weight};
	redisReply *rep = NULL;
	int			rc;
	int			i;

	*pyr_redis_decimal(weight, item->weight) = '\0';
	*ts = item->timestamp;
	if (item->timestamp == PYRATE_NOW)
	{
		/* the node's clock, as reckoned here */
		args[0] = op[0] == 'p' ? "P" : "W";
		rc = call(r, 3, args, stamp, ts, &rep, err);
	}
	else
	{
		*pyr_redis_decimal(stamp, *ts) = '\0';
		rc = call(r, 3, args, NULL, ts, &rep, err);
	}
	if (rc != PYRATE_OK)
		return rc;
	/* admitted: remaining; rejected: {failing, waiting, retry_after, remaining} */
	if (rep->type == REDIS_REPLY_INTEGER)
	{
		dec->admitted = true;
		dec->failing = -1;
		dec->waiting = dec->retry_after = 0;
		dec->remaining = rep->integer;
	}
	else
	{
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4)
			return bad_reply(rep, err);
		for (i = 0; i < 4; i++)
			if (rep->element[i]->type != REDIS_REPLY_INTEGER)
				return bad_reply(rep, err);
		dec->admitted = false;
		dec->failing = (int) rep->element[0]->integer;
		dec->waiting = rep->element[1]->integer;
		dec->retry_after = rep->element[2]->integer;
		dec->remaining = rep->element[3]->integer;
	}
	dec->tightest = 0;
	freeReplyObject(rep);
	if (dec->failing < -1 || dec->failing >= b->nrates)
		return pyr_fail(err, PYRATE_ESERVER, "redis: the pyrate script answered an impossible decision");
	return PYRATE_OK;
}

static int
rd_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	pyr_decision dec;
	int64_t		ts;
	int			rc = decide(b, "p", item, &dec, &ts, err);

	if (rc == PYRATE_OK)
		pyr_fill_decision(b, &dec, ts, d);
	return rc;
}

static int
rd_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	pyr_decision dec;
	int64_t		ts;
	int			rc = decide(b, "w", item, &dec, &ts, err);

	if (rc == PYRATE_OK)
		*ms = dec.waiting;
	return rc;
}

/* a script call answering one integer */
static int
call_int(pyrate_bucket *b, int argc, const char **args, int64_t *out, pyrate_error *err)
{
	redis_bucket *r = (redis_bucket *) b;
	redisReply *rep = NULL;
	int			rc = call(r, argc, args, NULL, NULL, &rep, err);

	if (rc != PYRATE_OK)
		return rc;
	if (rep->type != REDIS_REPLY_INTEGER)
		return bad_reply(rep, err);
	*out = rep->integer;
	freeReplyObject(rep);
	return PYRATE_OK;
}

static int
rd_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	char		ts[24] = "";
	const char *args[2] = {"l", ts};

	if (now != PYRATE_NOW)
		*pyr_redis_decimal(ts, now) = '\0';
	return call_int(b, 2, args, removed, err);
}

static int
rd_flush(pyrate_bucket *b, pyrate_error *err)
{
	const char *args[1] = {"f"};
	int64_t		ignored;

	return call_int(b, 1, args, &ignored, err);
}

static int
rd_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	const char *args[1] = {"c"};

	return call_int(b, 1, args, units, err);
}

static int
rd_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	const char *args[2] = {"n", ""};

	return call_int(b, 2, args, ms, err);
}

static int
rd_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	redis_bucket *r = (redis_bucket *) b;
	char		idx[24];
	const char *args[2] = {"k", idx};
	redisReply *rep = NULL;
	int			rc;

	*pyr_redis_decimal(idx, index) = '\0';
	if ((rc = call(r, 2, args, NULL, NULL, &rep, err)) != PYRATE_OK)
		return rc;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
		rep->element[0]->type != REDIS_REPLY_INTEGER ||
		(rep->element[0]->integer == 1 && (rep->elements != 3 ||
										   rep->element[1]->type != REDIS_REPLY_INTEGER ||
										   rep->element[2]->type != REDIS_REPLY_INTEGER)))
		return bad_reply(rep, err);
	*found = rep->element[0]->integer == 1;
	if (*found)
	{
		*ts = rep->element[1]->integer;
		*weight = rep->element[2]->integer;
	}
	freeReplyObject(rep);
	return PYRATE_OK;
}

static void
release_shared(redis_shared *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	pyr_redis_free(s->conn);
	free(s->script.text);
	free(s);
}

static void
rd_close(pyrate_bucket *b)
{
	redis_bucket *r = (redis_bucket *) b;

	release_shared(r->shared);
	free(r->key);
	free(r);
}

static const pyrate_bucket_ops redis_ops = {
	"redis", rd_put, rd_waiting, rd_leak, rd_flush, rd_count, rd_peek,
	rd_now, NULL, NULL, rd_close
};

/* a bucket on key with shared's connections and script (a reference taken) */
static pyrate_bucket *
bucket_on(const pyrate_bucket *like, redis_shared *shared, const char *key, pyrate_error *err)
{
	redis_bucket *r = calloc(1, sizeof(redis_bucket));

	if (!r || !(r->key = strdup(key)))
	{
		free(r);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	r->base = *like;
	r->base.ops = &redis_ops;
	r->base.failing_rate = (pyrate_rate) {0, 0};
	r->key_len = strlen(key);
	r->slot = pyr_redis_slot(key, r->key_len);
	r->shared = shared;
	__atomic_add_fetch(&shared->refs, 1, __ATOMIC_ACQ_REL);
	return &r->base;
}

pyrate_bucket *
pyrate_redis_bucket_new(const pyrate_rate *rates, int n, const pyrate_redis_options *opts,
						pyrate_error *err)
{
	pyrate_bucket rated;
	redis_shared *s;
	pyrate_bucket *b;
	int64_t		expire_ms;

	if (!opts || !opts->key || !opts->key[0])
	{
		pyr_fail(err, PYRATE_EINVAL, "redis: a bucket key is required");
		return NULL;
	}
	if (n < 1)
	{
		pyr_fail(err, PYRATE_EINVAL, "a Redis bucket needs at least one rate");
		return NULL;
	}
	if (opts->timeout_ms < 0 || opts->expire_ms < 0)
	{
		pyr_fail(err, PYRATE_EINVAL, "redis: timeout_ms and expire_ms must not be negative");
		return NULL;
	}
	if (pyrate_bucket_init(&rated, &redis_ops, rates, n, err) != PYRATE_OK)
		return NULL;
	/* once its newest item leaves the largest window a key holds nothing that matters */
	expire_ms = opts->expire_ms > 0 ? opts->expire_ms : rated.rates[n - 1].interval + 1000;
	if (!(s = calloc(1, sizeof(redis_shared))) || !(s->script.text = script_text(&rated, expire_ms)))
	{
		free(s);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	pyr_redis_sha1(s->script.text, strlen(s->script.text), s->script.sha);
	if (!(s->conn = pyr_redis_new(opts, err)) || !(b = bucket_on(&rated, s, opts->key, err)))
	{
		pyr_redis_free(s->conn);
		free(s->script.text);
		free(s);
		return NULL;
	}
	return b;
}

pyrate_bucket *
pyr_redis_bucket_sibling(pyrate_bucket *like, const char *key, pyrate_error *err)
{
	if (!key || !key[0])
	{
		pyr_fail(err, PYRATE_EINVAL, "redis: a bucket key is required");
		return NULL;
	}
	return bucket_on(like, ((redis_bucket *) like)->shared, key, err);
}
