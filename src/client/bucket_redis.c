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
 * the core module (the conformance traces hold it to that).
 */
#include "internal.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * call's command: a header and seven bulk strings (EVALSHA, the sha, 1, the
 * key and three arguments of 20 bytes at most), each framed by at most 25
 * bytes ($, its length, two CRLFs)
 */
#define COMMAND_SIZE(key_len) (4 + 7 * 25 + 7 + 40 + 1 + (key_len) + 3 * 20)

typedef struct redis_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;
	redisContext *ctx;			/* NULL until (re)connected */
	int64_t		clock_offset_us;	/* server TIME less CLOCK_MONOTONIC, in us */
	int64_t		clock_synced_ms;	/* monotonic ms of that reading; 0: none on ctx */
	char	   *script;			/* script_text() */
	char		sha[41];
	char	   *host;
	int			port;
	char	   *unix_path;
	char	   *password;
	char	   *key;
	size_t		key_len;
	char	   *command;		/* call's buffer: COMMAND_SIZE(key_len) */
	int			timeout_ms;
	int64_t		expire_ms;
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

static void
disconnect(redis_bucket *r)
{
	if (r->ctx)
		redisFree(r->ctx);
	r->ctx = NULL;
	r->clock_synced_ms = 0;
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

/* n in decimal at p; returns the end */
static char *
put_decimal(char *p, int64_t n)
{
	char		digits[20];
	uint64_t	u = n < 0 ? -(uint64_t) n : (uint64_t) n;
	int			i = 0;

	do
		digits[i++] = (char) ('0' + u % 10);
	while ((u /= 10) != 0);
	if (n < 0)
		*p++ = '-';
	while (i > 0)
		*p++ = digits[--i];
	return p;
}

/* one RESP bulk string at p; returns the end */
static char *
put_bulk(char *p, const char *s, size_t len)
{
	*p++ = '$';
	p = put_decimal(p, (int64_t) len);
	memcpy(p, "\r\n", 2);
	memcpy(p + 2, s, len);
	memcpy(p + 2 + len, "\r\n", 2);
	return p + len + 4;
}

/*
 * EVALSHA the script with op and args (each at most 20 bytes: decimals);
 * reloads it once when the server forgot it (restart, SCRIPT FLUSH).  The
 * command is formatted here, in the bucket's buffer: hiredis's formatting
 * (sds, a malloc) costs a put more than this.  The caller frees *out.
 */
static int
call(redis_bucket *r, int argc, const char **args, redisReply **out, pyrate_error *err)
{
	int			attempt;
	int			i;
	int			rc;

	for (attempt = 0; attempt < 2; attempt++)
	{
		redisReply *rep = NULL;
		char	   *p = r->command;

		if ((rc = connect_redis(r, err)) != PYRATE_OK)
			return rc;
		*p++ = '*';
		p = put_decimal(p, 4 + argc);
		memcpy(p, "\r\n", 2);
		p = put_bulk(p + 2, "EVALSHA", 7);
		p = put_bulk(p, r->sha, 40);
		p = put_bulk(p, "1", 1);
		p = put_bulk(p, r->key, r->key_len);
		for (i = 0; i < argc; i++)
			p = put_bulk(p, args[i], strlen(args[i]));
		if (redisAppendFormattedCommand(r->ctx, r->command, p - r->command) != REDIS_OK ||
			redisGetReply(r->ctx, (void **) &rep) != REDIS_OK)
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

/*
 * How often the server clock is read again: between readings the local
 * monotonic clock stands in for it.  Clocks drift apart by parts per
 * million, far below a millisecond in a second; a step of the server's
 * clock is seen at the next reading (and a put stamped before the newest
 * item is stored at the newest's time, so the log keeps its order).
 */
#define CLOCK_SYNC_MS 1000

/*
 * The server's clock now, in ms, as this client reckons it: TIME read at
 * most every CLOCK_SYNC_MS on this connection, its reading taken to be the
 * middle of the round trip (off by at most half of it, microseconds on a
 * LAN), plus the monotonic time since.  A put then calls no TIME on the
 * server, and the clients of one server still share its clock.  The
 * caller holds the mutex.
 */
static int
server_clock(redis_bucket *r, int64_t *ms, pyrate_error *err)
{
	int64_t		now_us;
	int			rc;

	if ((rc = connect_redis(r, err)) != PYRATE_OK)
		return rc;
	now_us = pyr_monotonic_us();
	if (r->clock_synced_ms == 0 || now_us / 1000 - r->clock_synced_ms >= CLOCK_SYNC_MS)
	{
		redisReply *rep = redisCommand(r->ctx, "TIME");
		int64_t		after_us = pyr_monotonic_us();

		if (!rep)
			return io_fail(r, err, "reading the server clock");
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
			rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
		{
			freeReplyObject(rep);
			return pyr_fail(err, PYRATE_ESERVER, "redis: unexpected reply to TIME");
		}
		r->clock_offset_us = strtoll(rep->element[0]->str, NULL, 10) * 1000000 +
			strtoll(rep->element[1]->str, NULL, 10) - (now_us + after_us) / 2;
		r->clock_synced_ms = after_us / 1000;
		freeReplyObject(rep);
		now_us = after_us;
	}
	*ms = (now_us + r->clock_offset_us) / 1000;
	return PYRATE_OK;
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
	int			rc = PYRATE_OK;
	int			i;

	*put_decimal(weight, item->weight) = '\0';
	pthread_mutex_lock(&r->mutex);
	*ts = item->timestamp;
	if (item->timestamp == PYRATE_NOW && (rc = server_clock(r, ts, err)) == PYRATE_OK)
		args[0] = op[0] == 'p' ? "P" : "W";	/* the server clock, as reckoned here */
	if (rc == PYRATE_OK)
	{
		*put_decimal(stamp, *ts) = '\0';
		rc = call(r, 3, args, &rep, err);
	}
	pthread_mutex_unlock(&r->mutex);
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
		*put_decimal(ts, now) = '\0';
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

	*put_decimal(idx, index) = '\0';
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
	free(r->command);
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
	r->key_len = strlen(opts->key);
	if (!(r->command = malloc(COMMAND_SIZE(r->key_len))))
		ok = false;
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
