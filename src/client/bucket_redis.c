/*
 * bucket_redis.c — RedisBucket: the log as one sorted set per bucket key.
 *
 * A member is "<cum>:<cum before>:<timestamp>" scored by its timestamp, cum
 * being the units put since the key began (zero-padded) and cum before the
 * same before this item: one put of weight 1000 is one member, members with
 * equal timestamps sort in put order, the newest member holds the total, a
 * window count is one ZRANGEBYSCORE ... LIMIT 0 1 (total less the window's
 * first member's cum before) and the item holding a unit is found by reverse
 * rank.  Every operation is one EVALSHA of the bucket's script, atomic on the
 * server; the script mirrors pyr_decide of the core module (the conformance
 * traces hold it to that).
 */
#include "internal.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The script, after a first line of the bucket's constants (see
 * script_text): NRATES, LIMITS, INTERVALS, LARGEST, EXPIRE and PERIOD.
 * Baking them in rather than passing them spares every put their argument
 * strings and conversions; a bucket's script is loaded once per server.
 *
 * A put is TIME (for PYRATE_NOW), the newest member, the first member of
 * each rate's window (skipped when the newest is older than the window),
 * ZADD and, at most once per PERIOD ms, PEXPIRE; a rejection reads the
 * member holding the unit that must leave first instead of storing, by
 * reverse rank (one read when items weigh 1).  Numbers go to redis.call as
 * strings made with %d: a Lua number is formatted with %.17g otherwise.
 */
static const char script_body[] =
"local key, op = KEYS[1], ARGV[1]\n"
"-- the member of the item holding unit (cum, cum before, timestamp), that item being at\n"
"-- reverse rank j or less (an item holds one unit or more; exactly j when all weigh 1)\n"
"local function find(unit, j)\n"
"  local rank = string.format('%d', -1 - j)\n"
"  local m = redis.call('ZRANGE', key, rank, rank)[1]\n"
"  local lo, hi = 0, j - 1\n"
"  if m == nil then\n"
"    hi = redis.call('ZCARD', key) - 1\n"
"  else\n"
"    local c, cb, t = string.match(m, '^(%d+):(%d+):(%-?%d+)$')\n"
"    if tonumber(c) >= unit then return c, cb, t end\n"
"  end\n"
"  -- the largest reverse rank in [0, hi] whose cum reaches unit (the newest's always does)\n"
"  while lo < hi do\n"
"    local mid = math.floor((lo + hi + 1) / 2)\n"
"    rank = string.format('%d', -1 - mid)\n"
"    if tonumber(string.match(redis.call('ZRANGE', key, rank, rank)[1], '^%d+')) >= unit then\n"
"      lo = mid\n"
"    else\n"
"      hi = mid - 1\n"
"    end\n"
"  end\n"
"  rank = string.format('%d', -1 - lo)\n"
"  return string.match(redis.call('ZRANGE', key, rank, rank)[1], '^(%d+):(%d+):(%-?%d+)$')\n"
"end\n"
"if op == 'p' or op == 'w' then\n"
"  -- put / waiting: ARGV[2] the timestamp ('' for the server clock), ARGV[3] the weight\n"
"  local tss, now = ARGV[2], nil\n"
"  if tss == '' then\n"
"    local t = redis.call('TIME')\n"
"    tss = t[1] .. string.sub('000000' .. t[2], -6, -4)\n"
"    now = tonumber(tss)\n"
"  end\n"
"  local ts, weight = now or tonumber(tss), tonumber(ARGV[3])\n"
"  -- the newest item: its cum is every unit ever put\n"
"  local total, newest = 0, nil\n"
"  local m = redis.call('ZRANGE', key, '-1', '-1')[1]\n"
"  if m then\n"
"    local c, t = string.match(m, '^(%d+):%d+:(%-?%d+)$')\n"
"    total, newest = tonumber(c), tonumber(t)\n"
"  end\n"
"  local failing, waiting, retry, room = -1, 0, 0, nil\n"
"  for i = 1, NRATES do\n"
"    local limit, since = LIMITS[i], ts - INTERVALS[i]\n"
"    local used = 0\n"
"    if newest ~= nil and newest >= since then\n"
"      -- the units put before the window's first item are not in it\n"
"      used = total - string.match(redis.call('ZRANGEBYSCORE', key, string.format('%d', since), '+inf',\n"
"        'LIMIT', '0', '1')[1], '^%d+:(%d+):')\n"
"    end\n"
"    if room == nil or limit - used < room then room = limit - used end\n"
"    if weight > 0 and used + weight > limit then\n"
"      -- ms until the item holding unit (limit - weight) from the newest leaves the window\n"
"      local w = -1\n"
"      if weight <= limit then\n"
"        -- that unit is in the window: used > limit - weight\n"
"        local _, _, t = find(total - (limit - weight), limit - weight)\n"
"        w = t - since + 1\n"
"      end\n"
"      if failing < 0 then failing, waiting = i - 1, w end\n"
"      if w < 0 or retry < 0 then retry = -1 elseif w > retry then retry = w end\n"
"    end\n"
"  end\n"
"  if failing >= 0 then\n"
"    if room < 0 then room = 0 end\n"
"    return {failing, waiting, retry, room, ts}\n"
"  end\n"
"  room = room - weight\n"
"  if room < 0 then room = 0 end\n"
"  if op == 'p' and weight > 0 then\n"
"    -- stored at the newest timestamp when older: the log stays in order\n"
"    if newest ~= nil and newest > ts then tss = string.format('%d', newest) end\n"
"    redis.call('ZADD', key, tss, string.format('%017d:%d:%s', total + weight, total, tss))\n"
"    -- the key must outlive its newest item by the largest interval: the expiry is set\n"
"    -- for a new key, for a caller's timestamp, past a newest item ahead of the server\n"
"    -- clock, and otherwise once per PERIOD ms of the server clock\n"
"    if now == nil or newest == nil or newest > now or PERIOD <= 0 or\n"
"        math.floor(now / PERIOD) ~= math.floor(newest / PERIOD) then\n"
"      if now ~= nil and newest ~= nil and newest > now then\n"
"        redis.call('PEXPIRE', key, string.format('%d', EXPIRE + newest - now))\n"
"      else\n"
"        redis.call('PEXPIRE', key, EXPIRE)\n"
"      end\n"
"    end\n"
"  end\n"
"  return {room, ts}\n"
"end\n"
"-- every unit ever put, and the units before the oldest item\n"
"local function ends()\n"
"  local m = redis.call('ZRANGE', key, '-1', '-1')[1]\n"
"  if not m then return 0, 0 end\n"
"  return tonumber(string.match(m, '^%d+')),\n"
"    tonumber(string.match(redis.call('ZRANGE', key, '0', '0')[1], '^%d+:(%d+):'))\n"
"end\n"
"local function clock(s)\n"
"  if s ~= '' then return tonumber(s) end\n"
"  local t = redis.call('TIME')\n"
"  return tonumber(t[1] .. string.sub('000000' .. t[2], -6, -4))\n"
"end\n"
"if op == 'c' then\n"
"  local total, base = ends()\n"
"  return total - base\n"
"elseif op == 'k' then\n"
"  -- peek: the item holding unit ARGV[2] from the newest\n"
"  local index = tonumber(ARGV[2])\n"
"  local total, base = ends()\n"
"  if index >= total - base then return {0} end\n"
"  local c, cb, t = find(total - index, index)\n"
"  return {1, tonumber(t), c - cb}\n"
"elseif op == 'l' then\n"
"  -- leak: items older than the clock (ARGV[2], '' for the server's) less the largest interval\n"
"  local t = clock(ARGV[2]) - LARGEST\n"
"  local total, base = ends()\n"
"  local before = total\n"
"  local f = redis.call('ZRANGEBYSCORE', key, string.format('%d', t), '+inf', 'LIMIT', '0', '1')[1]\n"
"  if f then before = tonumber(string.match(f, '^%d+:(%d+):')) end\n"
"  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', t))\n"
"  return before - base\n"
"elseif op == 'f' then\n"
"  redis.call('DEL', key)\n"
"  return 0\n"
"elseif op == 'n' then\n"
"  return clock('')\n"
"end\n"
"return redis.error_reply('pyrate: unknown operation ' .. op)\n";

typedef struct redis_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;
	redisContext *ctx;			/* NULL until (re)connected */
	char	   *script;			/* the constants line + script_body */
	char		sha[41];
	char	   *host;
	int			port;
	char	   *unix_path;
	char	   *password;
	char	   *key;
	int			timeout_ms;
	int64_t		expire_ms;
} redis_bucket;

/*
 * The bucket's script: its constants, then script_body.  PERIOD is how long
 * the expiry may go unrefreshed: the key must outlive its newest item by the
 * largest interval, and expire_ms beyond that is the slack (none when
 * expire_ms is shorter: then every put sets it).
 */
static char *
script_text(const pyrate_bucket *b, int64_t expire_ms)
{
	int64_t		largest = b->rates[b->nrates - 1].interval;
	size_t		cap = sizeof(script_body) + 256 + (size_t) b->nrates * 48;
	char	   *text = malloc(cap);
	size_t		len;
	int			i;

	if (!text)
		return NULL;
	len = snprintf(text, cap, "local NRATES, LIMITS, INTERVALS = %d, {", b->nrates);
	for (i = 0; i < b->nrates; i++)
		len += snprintf(text + len, cap - len, "%s%lld", i ? ", " : "", (long long) b->rates[i].limit);
	len += snprintf(text + len, cap - len, "}, {");
	for (i = 0; i < b->nrates; i++)
		len += snprintf(text + len, cap - len, "%s%lld", i ? ", " : "", (long long) b->rates[i].interval);
	len += snprintf(text + len, cap - len,
					"}\nlocal LARGEST, EXPIRE, PERIOD = %lld, '%lld', %lld\n",
					(long long) largest, (long long) expire_ms, (long long) (expire_ms - largest));
	memcpy(text + len, script_body, sizeof(script_body));
	return text;
}

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
	redisReply *rep = redisCommand(r->ctx, "SCRIPT LOAD %s", r->script);
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
	char		stamp[24] = "";
	char		weight[24];
	const char *args[3] = {op, stamp, weight};
	redisReply *rep = NULL;
	int			rc;
	size_t		i;

	if (item->timestamp != PYRATE_NOW)
		snprintf(stamp, sizeof(stamp), "%lld", (long long) item->timestamp);
	snprintf(weight, sizeof(weight), "%lld", (long long) item->weight);

	pthread_mutex_lock(&r->mutex);
	rc = call(r, 3, args, &rep, err);
	pthread_mutex_unlock(&r->mutex);
	if (rc != PYRATE_OK)
		return rc;
	/* admitted: {remaining, ts}; rejected: {failing, waiting, retry_after, remaining, ts} */
	if (rep->type != REDIS_REPLY_ARRAY || (rep->elements != 2 && rep->elements != 5))
		return bad_reply(rep, err);
	for (i = 0; i < rep->elements; i++)
		if (rep->element[i]->type != REDIS_REPLY_INTEGER)
			return bad_reply(rep, err);
	dec->admitted = rep->elements == 2;
	dec->failing = dec->admitted ? -1 : (int) rep->element[0]->integer;
	dec->waiting = dec->admitted ? 0 : rep->element[1]->integer;
	dec->retry_after = dec->admitted ? 0 : rep->element[2]->integer;
	dec->remaining = rep->element[rep->elements - 2]->integer;
	dec->tightest = 0;
	*ts = rep->element[rep->elements - 1]->integer;
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
	const char *args[2] = {"l", ts};

	if (now != PYRATE_NOW)
		snprintf(ts, sizeof(ts), "%lld", (long long) now);
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
	const char *args[1] = {"n"};

	return call_int(b, 1, args, ms, err);
}

static int
rd_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	redis_bucket *r = (redis_bucket *) b;
	char		idx[24];
	const char *args[2] = {"k", idx};
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
	free(r->script);
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
	if (ok && !(r->script = script_text(&r->base, r->expire_ms)))
		ok = false;
	if (!ok)
	{
		rd_close(&r->base);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	return &r->base;
}
