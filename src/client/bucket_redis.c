/*
 * bucket_redis.c — RedisBucket: the log as one sorted set per bucket key.
 *
 * A member is "<cumulative units, zero-padded>:<weight>" scored by its
 * timestamp, so one put of weight 1000 is one member, members with equal
 * timestamps sort in put order, a window count is one ZRANGEBYSCORE and the
 * item holding a unit is a binary search over ranks.  Every operation is one
 * EVALSHA of the script below, atomic on the server; the script mirrors
 * pyr_decide of the core module (the conformance traces hold it to that).
 */
#include "internal.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char script[] =
"local key, op = KEYS[1], ARGV[1]\n"
"local function parse(m)\n"
"  local c, w = string.match(m, '^(%d+):(%d+)$')\n"
"  return tonumber(c), tonumber(w)\n"
"end\n"
"local function stamp(s)\n"
"  if s ~= '' then return tonumber(s) end\n"
"  local t = redis.call('TIME')\n"
"  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"end\n"
"-- total units ever put and the newest timestamp\n"
"local function last()\n"
"  local m = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')\n"
"  if #m == 0 then return 0, nil end\n"
"  return parse(m[1]), tonumber(m[2])\n"
"end\n"
"-- units before the oldest item\n"
"local function base(total)\n"
"  if total == 0 then return 0 end\n"
"  local fc, fw = parse(redis.call('ZRANGE', key, 0, 0)[1])\n"
"  return fc - fw\n"
"end\n"
"-- cumulative units before the first item with timestamp >= t (total if none)\n"
"local function before(total, t)\n"
"  local r = redis.call('ZRANGEBYSCORE', key, t, '+inf', 'LIMIT', 0, 1)\n"
"  if #r == 0 then return total end\n"
"  local c, w = parse(r[1])\n"
"  return c - w\n"
"end\n"
"-- the item holding cumulative unit u: first member whose cum >= u\n"
"local function unit(u, n)\n"
"  local lo, hi = 0, n - 1\n"
"  while lo < hi do\n"
"    local mid = math.floor((lo + hi) / 2)\n"
"    if parse(redis.call('ZRANGE', key, mid, mid)[1]) < u then lo = mid + 1 else hi = mid end\n"
"  end\n"
"  local m = redis.call('ZRANGE', key, lo, lo, 'WITHSCORES')\n"
"  local c, w = parse(m[1])\n"
"  return tonumber(m[2]), w\n"
"end\n"
"if op == 'put' or op == 'waiting' then\n"
"  local ts, weight, nrates = stamp(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
"  local total, newest = last()\n"
"  local admitted, failing, waiting, retry, used = 1, -1, 0, 0, {}\n"
"  for i = 1, nrates do\n"
"    local limit, interval = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])\n"
"    used[i] = total - before(total, ts - interval)\n"
"    if weight > 0 and used[i] + weight > limit then\n"
"      local w = 0\n"
"      if weight > limit then w = -1\n"
"      elseif limit - weight < total - base(total) then\n"
"        local bts = unit(total - (limit - weight), redis.call('ZCARD', key))\n"
"        w = bts - (ts - interval) + 1\n"
"      end\n"
"      if admitted == 1 then admitted, failing, waiting = 0, i - 1, w end\n"
"      if w < 0 or retry < 0 then retry = -1 elseif w > retry then retry = w end\n"
"    end\n"
"  end\n"
"  local remaining\n"
"  for i = 1, nrates do\n"
"    local left = tonumber(ARGV[3 + 2 * i]) - used[i] - admitted * weight\n"
"    if left < 0 then left = 0 end\n"
"    if remaining == nil or left < remaining then remaining = left end\n"
"  end\n"
"  if op == 'put' and admitted == 1 and weight > 0 then\n"
"    local at = ts\n"
"    if newest ~= nil and newest > at then at = newest end\n"
"    redis.call('ZADD', key, at, string.format('%017d:%d', total + weight, weight))\n"
"    redis.call('PEXPIRE', key, tonumber(ARGV[5 + 2 * nrates]))\n"
"  end\n"
"  return {admitted, failing, waiting, retry, remaining, ts}\n"
"elseif op == 'count' then\n"
"  local total = last()\n"
"  return total - base(total)\n"
"elseif op == 'peek' then\n"
"  local total = last()\n"
"  local index = tonumber(ARGV[2])\n"
"  if index >= total - base(total) then return {0} end\n"
"  local ts, w = unit(total - index, redis.call('ZCARD', key))\n"
"  return {1, ts, w}\n"
"elseif op == 'leak' then\n"
"  local t = stamp(ARGV[2]) - tonumber(ARGV[3])\n"
"  local total = last()\n"
"  local removed = before(total, t) - base(total)\n"
"  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. t)\n"
"  return removed\n"
"elseif op == 'flush' then\n"
"  redis.call('DEL', key)\n"
"  return 0\n"
"elseif op == 'now' then\n"
"  return stamp('')\n"
"end\n"
"return redis.error_reply('pyrate: unknown operation ' .. op)\n";

typedef struct redis_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;
	redisContext *ctx;			/* NULL until (re)connected */
	char		sha[41];
	char	   *host;
	int			port;
	char	   *unix_path;
	char	   *password;
	char	   *key;
	int			timeout_ms;
	int64_t		expire_ms;
} redis_bucket;

static void
disconnect(redis_bucket *r)
{
	if (r->ctx)
		redisFree(r->ctx);
	r->ctx = NULL;
}

/* an I/O failure: drop the connection so that the next call reconnects */
static int
io_fail(redis_bucket *r, pyrate_error *err, const char *what)
{
	int			timed_out = r->ctx && r->ctx->err == REDIS_ERR_IO &&
		(errno == EAGAIN || errno == EWOULDBLOCK);
	int			rc = pyr_fail(err, timed_out ? PYRATE_ETIMEOUT : PYRATE_EBACKEND,
							  "redis %s:%d: %s: %s", r->unix_path ? r->unix_path : r->host, r->port,
							  what, r->ctx ? (timed_out ? "timed out" : r->ctx->errstr) : "no connection");

	disconnect(r);
	return rc;
}

static int
load_script(redis_bucket *r, pyrate_error *err)
{
	redisReply *rep = redisCommand(r->ctx, "SCRIPT LOAD %s", script);
	int			rc = PYRATE_OK;

	if (!rep)
		return io_fail(r, err, "loading the script");
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40)
		memcpy(r->sha, rep->str, 41);
	else
		rc = pyr_fail(err, PYRATE_ESERVER, "redis: SCRIPT LOAD failed: %s",
					  rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
	freeReplyObject(rep);
	return rc;
}

static int
connect_redis(redis_bucket *r, pyrate_error *err)
{
	struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};

	if (r->ctx)
		return PYRATE_OK;
	r->ctx = r->unix_path ? redisConnectUnixWithTimeout(r->unix_path, tv)
		: redisConnectWithTimeout(r->host, r->port, tv);
	if (!r->ctx)
		return pyr_fail(err, PYRATE_ENOMEM, "redis: out of memory");
	if (r->ctx->err)
	{
		int			rc = pyr_fail(err, PYRATE_EBACKEND, "redis %s:%d: cannot connect: %s",
								  r->unix_path ? r->unix_path : r->host, r->port, r->ctx->errstr);

		disconnect(r);
		return rc;
	}
	if (redisSetTimeout(r->ctx, tv) != REDIS_OK)
		return io_fail(r, err, "setting the timeout");
	if (r->password)
	{
		redisReply *rep = redisCommand(r->ctx, "AUTH %s", r->password);
		int			rc = PYRATE_OK;

		if (!rep)
			return io_fail(r, err, "authenticating");
		if (rep->type == REDIS_REPLY_ERROR)
			rc = pyr_fail(err, PYRATE_ESERVER, "redis: AUTH failed: %s", rep->str);
		freeReplyObject(rep);
		if (rc != PYRATE_OK)
		{
			disconnect(r);
			return rc;
		}
	}
	if (r->sha[0] == '\0')
		return load_script(r, err);
	return PYRATE_OK;
}

/*
 * EVALSHA the script with op and args; reloads it once when the server
 * forgot it (restart, SCRIPT FLUSH).  The caller frees *out.
 */
static int
call(redis_bucket *r, int argc, const char **args, redisReply **out, pyrate_error *err)
{
	const char *argv[8 + 2 * PYRATE_MAX_RATES];
	int			attempt;
	int			i;
	int			rc;

	argv[0] = "EVALSHA";
	argv[2] = "1";
	argv[3] = r->key;
	for (i = 0; i < argc; i++)
		argv[4 + i] = args[i];
	for (attempt = 0; attempt < 2; attempt++)
	{
		redisReply *rep;

		if ((rc = connect_redis(r, err)) != PYRATE_OK)
			return rc;
		argv[1] = r->sha;
		rep = redisCommandArgv(r->ctx, 4 + argc, argv, NULL);
		if (!rep)
			return io_fail(r, err, "running the script");
		if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 && attempt == 0)
		{
			freeReplyObject(rep);
			if ((rc = load_script(r, err)) != PYRATE_OK)
				return rc;
			continue;
		}
		if (rep->type == REDIS_REPLY_ERROR)
		{
			rc = pyr_fail(err, PYRATE_ESERVER, "redis: %s", rep->str);
			freeReplyObject(rep);
			return rc;
		}
		*out = rep;
		return PYRATE_OK;
	}
	return pyr_fail(err, PYRATE_ESERVER, "redis: the script vanished again after loading it");
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
	char		buf[4 + 2 * PYRATE_MAX_RATES][24];
	const char *args[4 + 2 * PYRATE_MAX_RATES];
	int			n = 0;
	int			i;
	redisReply *rep = NULL;
	int			rc;

	args[n++] = op;
	if (item->timestamp == PYRATE_NOW)
		buf[n][0] = '\0';
	else
		snprintf(buf[n], sizeof(buf[n]), "%lld", (long long) item->timestamp);
	args[n] = buf[n];
	n++;
	snprintf(buf[n], sizeof(buf[n]), "%lld", (long long) item->weight);
	args[n] = buf[n];
	n++;
	snprintf(buf[n], sizeof(buf[n]), "%d", b->nrates);
	args[n] = buf[n];
	n++;
	for (i = 0; i < b->nrates; i++)
	{
		snprintf(buf[n], sizeof(buf[n]), "%lld", (long long) b->rates[i].limit);
		args[n] = buf[n];
		n++;
		snprintf(buf[n], sizeof(buf[n]), "%lld", (long long) b->rates[i].interval);
		args[n] = buf[n];
		n++;
	}
	snprintf(buf[n], sizeof(buf[n]), "%lld", (long long) r->expire_ms);
	args[n] = buf[n];
	n++;

	pthread_mutex_lock(&r->mutex);
	rc = call(r, n, args, &rep, err);
	pthread_mutex_unlock(&r->mutex);
	if (rc != PYRATE_OK)
		return rc;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 6)
		return bad_reply(rep, err);
	for (i = 0; i < 6; i++)
		if (rep->element[i]->type != REDIS_REPLY_INTEGER)
			return bad_reply(rep, err);
	dec->admitted = rep->element[0]->integer == 1;
	dec->failing = (int) rep->element[1]->integer;
	dec->waiting = rep->element[2]->integer;
	dec->retry_after = rep->element[3]->integer;
	dec->remaining = rep->element[4]->integer;
	dec->tightest = 0;
	*ts = rep->element[5]->integer;
	freeReplyObject(rep);
	if (dec->failing < -1 || dec->failing >= b->nrates || dec->admitted != (dec->failing == -1))
		return pyr_fail(err, PYRATE_ESERVER, "redis: the pyrate script answered an impossible decision");
	return PYRATE_OK;
}

static int
rd_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	pyr_decision dec;
	int64_t		ts;
	int			rc = decide(b, "put", item, &dec, &ts, err);

	if (rc == PYRATE_OK)
		pyr_fill_decision(b, &dec, ts, d);
	return rc;
}

static int
rd_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	pyr_decision dec;
	int64_t		ts;
	int			rc = decide(b, "waiting", item, &dec, &ts, err);

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
	int			rc;

	pthread_mutex_lock(&r->mutex);
	rc = call(r, argc, args, &rep, err);
	pthread_mutex_unlock(&r->mutex);
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
	char		largest[24];
	const char *args[3] = {"leak", ts, largest};

	if (now != PYRATE_NOW)
		snprintf(ts, sizeof(ts), "%lld", (long long) now);
	snprintf(largest, sizeof(largest), "%lld", (long long) b->rates[b->nrates - 1].interval);
	return call_int(b, 3, args, removed, err);
}

static int
rd_flush(pyrate_bucket *b, pyrate_error *err)
{
	const char *args[1] = {"flush"};
	int64_t		ignored;

	return call_int(b, 1, args, &ignored, err);
}

static int
rd_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	const char *args[1] = {"count"};

	return call_int(b, 1, args, units, err);
}

static int
rd_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	const char *args[1] = {"now"};

	return call_int(b, 1, args, ms, err);
}

static int
rd_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	redis_bucket *r = (redis_bucket *) b;
	char		idx[24];
	const char *args[2] = {"peek", idx};
	redisReply *rep = NULL;
	int			rc;

	snprintf(idx, sizeof(idx), "%lld", (long long) index);
	pthread_mutex_lock(&r->mutex);
	rc = call(r, 2, args, &rep, err);
	pthread_mutex_unlock(&r->mutex);
	if (rc != PYRATE_OK)
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
rd_close(pyrate_bucket *b)
{
	redis_bucket *r = (redis_bucket *) b;

	disconnect(r);
	pthread_mutex_destroy(&r->mutex);
	free(r->host);
	free(r->unix_path);
	free(r->password);
	free(r->key);
	free(r);
}

static const pyrate_bucket_ops redis_ops = {
	"redis", rd_put, rd_waiting, rd_leak, rd_flush, rd_count, rd_peek,
	rd_now, NULL, NULL, rd_close
};

static char *
dup_or_null(const char *s, bool *ok)
{
	char	   *d;

	if (!s)
		return NULL;
	if (!(d = strdup(s)))
		*ok = false;
	return d;
}

pyrate_bucket *
pyrate_redis_bucket_new(const pyrate_rate *rates, int n, const pyrate_redis_options *opts,
						pyrate_error *err)
{
	redis_bucket *r;
	bool		ok = true;

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
	if (!(r = calloc(1, sizeof(redis_bucket))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (pyrate_bucket_init(&r->base, &redis_ops, rates, n, err) != PYRATE_OK)
	{
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mutex, NULL);
	r->host = dup_or_null(opts->host ? opts->host : "127.0.0.1", &ok);
	r->unix_path = dup_or_null(opts->unix_path, &ok);
	r->password = dup_or_null(opts->password, &ok);
	r->key = dup_or_null(opts->key, &ok);
	r->port = opts->port > 0 ? opts->port : 6379;
	r->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 2000;
	/* once its newest item leaves the largest window a key holds nothing that matters */
	r->expire_ms = opts->expire_ms > 0 ? opts->expire_ms : r->base.rates[n - 1].interval + 1000;
	if (!ok)
	{
		rd_close(&r->base);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	return &r->base;
}
