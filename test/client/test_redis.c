/*
 * test_redis.c — the Redis bucket against a real redis-server.
 *
 *   test_redis HOST PORT [RESTART-COMMAND]
 *
 * RESTART-COMMAND (run with system()) restarts that server, for the check
 * that a limiter recovers.
 */
#include "shared.h"
#include "silent.h"

#include <hiredis/hiredis.h>

static const char *host;
static int	port;

static pyrate_bucket *
open_redis(const char *key, const pyrate_rate *rates, int n, int64_t expire_ms, pyrate_error *e)
{
	pyrate_redis_options o = {host, port, NULL, NULL, key, 0, expire_ms};

	return pyrate_redis_bucket_new(rates, n, &o, e);
}

static pyrate_bucket *
open_busy(void *arg)
{
	pyrate_error e;

	return open_redis(arg, busy_rates, 2, 0, &e);
}

static long long
redis_int(redisContext *c, const char *cmd, const char *key)
{
	redisReply *r = redisCommand(c, cmd, key);
	long long	v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;

	freeReplyObject(r);
	return v;
}

static void
test_storage(redisContext *c)
{
	pyrate_error e = {0};
	pyrate_rate r = {5000, 1000};
	pyrate_bucket *b = open_redis("pyrate:test:weight", &r, 1, 0, &e);
	pyrate_item item = {"w", PYRATE_NOW, 1000};
	pyrate_decision d;
	redisReply *rep;
	long long	ttl;
	int64_t		n;

	pyrate_flush(b, NULL);
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put weight 1000");
	CHECK(d.acquired && labs((long) (d.timestamp - (int64_t) time(NULL) * 1000)) < 5000,
		  "admitted, stamped by the Redis clock");
	CHECK(redis_int(c, "ZCARD %s", "pyrate:test:weight") == 1, "weight 1000 is one sorted-set member");
	CHECK(pyrate_count(b, &n, &e) == PYRATE_OK && n == 1000, "count 1000 units");
	ttl = redis_int(c, "PTTL %s", "pyrate:test:weight");
	CHECK(ttl > 0 && ttl <= 2000, "the key expires: PTTL %lld ms (largest interval + 1 s)", ttl);

	/* the server forgets the script: the bucket loads it again */
	rep = redisCommand(c, "SCRIPT FLUSH");
	freeReplyObject(rep);
	item.weight = 1;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put after SCRIPT FLUSH (NOSCRIPT reloaded)");
	CHECK(d.acquired, "admitted after the reload");
	pyrate_close(b);

	/*
	 * server-stamped puts refresh the expiry once per second here (expire_ms
	 * 2000 - largest interval 1000), yet after every put the key outlives
	 * the item by the largest interval
	 */
	b = open_redis("pyrate:test:refresh", &r, 1, 0, &e);
	pyrate_flush(b, NULL);
	{
		long long	min_ttl = 1LL << 62;
		int			i;
		int			failed = 0;

		for (i = 0; i < 40; i++)
		{
			failed += pyrate_put(b, &item, &d, NULL) != PYRATE_OK || !d.acquired;
			ttl = redis_int(c, "PTTL %s", "pyrate:test:refresh");
			if (ttl < min_ttl)
				min_ttl = ttl;
			usleep(50000);
		}
		CHECK(failed == 0 && min_ttl >= 900 && min_ttl <= 2000,
			  "40 puts over 2 s: the key always outlived the put by about the largest interval (PTTL >= %lld ms)", min_ttl);
	}
	pyrate_close(b);

	b = open_redis("pyrate:test:idle", &r, 1, 200, &e);
	pyrate_put(b, &item, &d, NULL);
	CHECK(redis_int(c, "EXISTS %s", "pyrate:test:idle") == 1, "idle key exists after a put");
	usleep(400000);
	CHECK(redis_int(c, "EXISTS %s", "pyrate:test:idle") == 0, "idle key expired by itself");
	pyrate_close(b);
}

static void
test_faults(const char *restart)
{
	pyrate_error e = {0};
	pyrate_redis_options o = {"127.0.0.1", 0, NULL, NULL, "pyrate:test:fault", 300, 0};
	pyrate_rate r = {1000, 1000};
	pyrate_bucket *b;
	pyrate_limiter *l;
	pyrate_acquire_info info;
	pyrate_item item = {"f", PYRATE_NOW, 1};
	bool		ok;
	int64_t		start;
	int			fd;
	int			i;

	/* a server that accepts and never answers */
	fd = silent_listen(&o.port);
	b = pyrate_redis_bucket_new(&r, 1, &o, &e);
	start = tap_ms();
	CHECK(pyrate_put(b, &item, NULL, &e) == PYRATE_ETIMEOUT, "silent server: ETIMEOUT (%s)", e.message);
	CHECK(tap_ms() - start >= 250 && tap_ms() - start < 1500, "after the 300 ms timeout (%" PRId64 " ms)",
		  tap_ms() - start);
	l = pyrate_limiter_new_bucket(b, &(pyrate_limiter_options) {-1, PYRATE_FAIL_OPEN}, &e);
	CHECK_OK(pyrate_try_acquire(l, "f", 1, true, -1, &ok, &info, &e), "fail-open acquire");
	CHECK(ok && info.outcome == PYRATE_FAILED_OPEN && info.backend_error.code == PYRATE_ETIMEOUT,
		  "fail open: admitted, and says so");
	pyrate_limiter_free(l);
	b = pyrate_redis_bucket_new(&r, 1, &o, &e);
	l = pyrate_limiter_new_bucket(b, NULL, &e);
	CHECK_OK(pyrate_try_acquire(l, "f", 1, false, -1, &ok, &info, &e), "fail-closed acquire");
	CHECK(!ok && info.outcome == PYRATE_FAILED_CLOSED && info.backend_error.message[0],
		  "fail closed (default): rejected, and says so: %s", info.backend_error.message);
	pyrate_limiter_free(l);
	close(fd);

	o.port = closed_port();
	b = pyrate_redis_bucket_new(&r, 1, &o, &e);
	CHECK(pyrate_put(b, &item, NULL, &e) == PYRATE_EBACKEND, "nothing listening: EBACKEND (%s)", e.message);
	pyrate_close(b);

	if (!restart)
		return;
	b = open_redis("pyrate:test:restart", &r, 1, 0, &e);
	l = pyrate_limiter_new_bucket(b, NULL, &e);
	pyrate_try_acquire(l, "r", 1, false, -1, &ok, &info, &e);
	CHECK(ok, "acquire before the restart");
	CHECK(system(restart) == 0, "redis restarted");
	start = tap_ms();
	for (i = 0, ok = false; !ok && tap_ms() - start < 10000; i++)
	{
		if (pyrate_try_acquire(l, "r", 1, false, -1, &ok, &info, &e) != PYRATE_OK)
			break;
		if (!ok)
		{
			CHECK(info.outcome == PYRATE_FAILED_CLOSED, "a failure meanwhile is reported fail-closed: %s",
				  info.backend_error.message);
			usleep(100000);
		}
	}
	CHECK(ok && info.outcome == PYRATE_ACQUIRED, "the limiter recovered after the restart (%d tries)", i);
	pyrate_limiter_free(l);
}

/*
 * a leak that removes every item leaves the key with its expiry, its count
 * at 0, and puts after it counted, peeked and leaked from there
 */
static void
test_leak_all(redisContext *c)
{
	pyrate_error e = {0};
	pyrate_rate r = {5, 1000};
	pyrate_bucket *b = open_redis("pyrate:test:leakall", &r, 1, 3600000, &e);
	pyrate_item item = {"l", 1000, 2};
	pyrate_item got;
	pyrate_decision d;
	bool		found;
	int64_t		n = -1;
	long long	ttl;

	pyrate_flush(b, NULL);
	pyrate_put(b, &item, &d, NULL);
	item.timestamp = 1500;
	item.weight = 3;
	pyrate_put(b, &item, &d, NULL);
	CHECK(pyrate_leak(b, 5000, &n, &e) == PYRATE_OK && n == 5, "leak every item: 5 units removed (%" PRId64 ")", n);
	ttl = redis_int(c, "PTTL %s", "pyrate:test:leakall");
	CHECK(ttl > 3500000, "the key keeps its expiry (PTTL %lld ms)", ttl);
	CHECK(pyrate_count(b, &n, &e) == PYRATE_OK && n == 0, "count 0 after it (%" PRId64 ")", n);
	CHECK(pyrate_peek(b, 0, &found, &got, &e) == PYRATE_OK && !found, "nothing to peek");
	CHECK(pyrate_leak(b, 6000, &n, &e) == PYRATE_OK && n == 0, "leaking again removes nothing");
	item.timestamp = 6000;
	item.weight = 4;
	CHECK(pyrate_put(b, &item, &d, &e) == PYRATE_OK && d.acquired && d.remaining == 1,
		  "a put after it sees an empty window (remaining %" PRId64 ")", d.remaining);
	CHECK(pyrate_count(b, &n, &e) == PYRATE_OK && n == 4, "count 4 (%" PRId64 ")", n);
	CHECK(pyrate_peek(b, 3, &found, &got, &e) == PYRATE_OK && found && got.timestamp == 6000 && got.weight == 4,
		  "peek 3: the weight-4 item");
	CHECK(pyrate_peek(b, 4, &found, &got, &e) == PYRATE_OK && !found, "peek 4: nothing");
	CHECK(pyrate_leak(b, 8000, &n, &e) == PYRATE_OK && n == 4, "leak it: 4 units (%" PRId64 ")", n);
	pyrate_flush(b, NULL);
	pyrate_close(b);
}

/* a key written by an earlier member format: a clear error until it is flushed */
static void
test_old_format(redisContext *c)
{
	pyrate_error e = {0};
	pyrate_rate r = {5, 1000};
	pyrate_bucket *b = open_redis("pyrate:test:old", &r, 1, 3600000, &e);
	pyrate_item item = {"o", 2000, 1};
	pyrate_item got;
	pyrate_decision d;
	redisReply *rep;
	bool		found;
	int64_t		n = -1;
	int			rc;

	pyrate_flush(b, NULL);
	rep = redisCommand(c, "ZADD pyrate:test:old 1000 000000000000000011000");
	freeReplyObject(rep);
	rc = pyrate_put(b, &item, &d, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "earlier format") && strstr(e.message, "flush"),
		  "put: %s (%s)", pyrate_code_name(rc), e.message);
	rc = pyrate_count(b, &n, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "earlier format"), "count: %s (%s)", pyrate_code_name(rc), e.message);
	rc = pyrate_peek(b, 0, &found, &got, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "earlier format"), "peek: %s (%s)", pyrate_code_name(rc), e.message);
	rc = pyrate_leak(b, 9000, &n, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "earlier format"), "leak: %s (%s)", pyrate_code_name(rc), e.message);
	CHECK(redis_int(c, "ZCARD %s", "pyrate:test:old") == 1, "the key is left as it was");
	CHECK_OK(pyrate_flush(b, &e), "flush");
	CHECK(pyrate_put(b, &item, &d, &e) == PYRATE_OK && d.acquired && d.remaining == 4, "then a put is admitted");
	pyrate_flush(b, NULL);
	pyrate_close(b);
}

/*
 * The same put on the Redis bucket rb and the in-memory bucket mb (the core
 * log): 1 when the decisions differ (printed, with label), else 0.
 * *acquired is the in-memory bucket's decision.
 */
static int
put_both(const char *label, pyrate_bucket *rb, pyrate_bucket *mb, const pyrate_item *item, bool *acquired)
{
	pyrate_error e = {0};
	pyrate_decision d1 = {0},
				d2 = {0};

	if (pyrate_put(rb, item, &d1, &e) != PYRATE_OK || pyrate_put(mb, item, &d2, NULL) != PYRATE_OK)
	{
		printf("# %s: put at %lld: %s\n", label, (long long) item->timestamp, e.message);
		return 1;
	}
	if (acquired)
		*acquired = d2.acquired;
	if (d1.acquired == d2.acquired && d1.retry_after_ms == d2.retry_after_ms &&
		d1.remaining == d2.remaining && d1.failing_rate.limit == d2.failing_rate.limit)
		return 0;
	printf("# %s: put at %lld weight %lld: redis %d/%lld/%lld, memory %d/%lld/%lld\n", label,
		   (long long) item->timestamp, (long long) item->weight, d1.acquired,
		   (long long) d1.retry_after_ms, (long long) d1.remaining, d2.acquired,
		   (long long) d2.retry_after_ms, (long long) d2.remaining);
	return 1;
}

/* the same leak on both: 1 when the units removed differ */
static int
leak_both(const char *label, pyrate_bucket *rb, pyrate_bucket *mb, int64_t at)
{
	int64_t		r1 = -1,
				r2 = -2;

	pyrate_leak(rb, at, &r1, NULL);
	pyrate_leak(mb, at, &r2, NULL);
	if (r1 == r2)
		return 0;
	printf("# %s: leak at %lld: redis %lld, memory %lld\n", label, (long long) at, (long long) r1, (long long) r2);
	return 1;
}

/*
 * steps on a Redis bucket and an in-memory one: put (weight > 0) or leak
 * (weight 0) at a timestamp; every decision, removal and the final count
 * must agree.  Returns how many differed.
 */
static int
replay_against_memory(const char *key, const pyrate_rate *rates, int n, const int64_t (*steps)[2], int nsteps)
{
	pyrate_error e = {0};
	pyrate_bucket *rb = open_redis(key, rates, n, 3600000, &e);
	pyrate_bucket *mb = pyrate_memory_bucket_new(rates, n, &e);
	int64_t		c1 = -1,
				c2 = -2;
	int			differ = 0;
	int			i;

	pyrate_flush(rb, NULL);
	for (i = 0; i < nsteps; i++)
	{
		pyrate_item item = {"h", steps[i][0], steps[i][1]};

		differ += steps[i][1] == 0 ? leak_both(key, rb, mb, steps[i][0]) : put_both(key, rb, mb, &item, NULL);
	}
	pyrate_count(rb, &c1, NULL);
	pyrate_count(mb, &c2, NULL);
	differ += c1 != c2;
	pyrate_flush(rb, NULL);
	pyrate_close(rb);
	pyrate_close(mb);
	return differ;
}

/*
 * A window that holds the whole log is counted from the newest member's
 * hint (the oldest item's timestamp and the units before it), without a
 * read; a leak that removes the oldest items must renew the hint.
 */
static void
test_hint(redisContext *c)
{
	pyrate_error e = {0};
	pyrate_rate r = {3, 1000};
	pyrate_rate two[2] = {{3, 1000}, {5, 10000}};
	pyrate_bucket *b = open_redis("pyrate:test:hint", &r, 1, 3600000, &e);
	pyrate_item item = {"h", 0, 1};
	pyrate_decision d;
	int64_t		n = -1;
	int			i;
	/* a leak, then puts from the past whose windows reach back over what it removed */
	static const int64_t after_leak[][2] = {
		{0, 1}, {1, 1}, {2, 1}, {1500, 1}, {2001, 0}, {900, 1}, {950, 1}, {990, 1}, {2600, 1}, {2600, 2},
		{3000, 0}, {1200, 1}, {3700, 1}
	};
	/*
	 * timestamps the hint cannot hold (past 10^13): every window is read;
	 * negative ones are clamped to 0 before they reach a bucket, as in the core
	 */
	static const int64_t outside[][2] = {
		{-2000, 1}, {-1990, 2}, {-1500, 1}, {-900, 1}, {-500, 0}, {-700, 1}, {20000000000000, 1},
		{20000000000500, 2}, {20000000001600, 1}
	};

	pyrate_flush(b, NULL);
	for (i = 0; i < 3; i++)
	{
		item.timestamp = i;
		pyrate_put(b, &item, &d, NULL);
	}
	item.timestamp = 1500;
	pyrate_put(b, &item, &d, NULL);
	CHECK(pyrate_leak(b, 2001, &n, &e) == PYRATE_OK && n == 3, "leak the three oldest (%" PRId64 ")", n);
	CHECK(redis_int(c, "ZCARD %s", "pyrate:test:hint") == 2, "the marker and the item at 1500 are left");
	item.timestamp = 900;
	CHECK(pyrate_put(b, &item, &d, &e) == PYRATE_OK && d.acquired && d.remaining == 1,
		  "a put at 900 after the leak counts only the item at 1500 (remaining %" PRId64 ", want 1)", d.remaining);
	pyrate_flush(b, NULL);
	pyrate_close(b);
	CHECK(replay_against_memory("pyrate:test:hint1", &r, 1, after_leak, 13) == 0,
		  "puts from the past after leaks: Redis = in-memory, one rate");
	CHECK(replay_against_memory("pyrate:test:hint2", two, 2, after_leak, 13) == 0,
		  "the same with two rates");
	CHECK(replay_against_memory("pyrate:test:hint3", two, 2, outside, 9) == 0,
		  "timestamps outside the hint's range: Redis = in-memory");
}

/*
 * the Redis bucket against the in-memory one (the core log) on random
 * puts: weights 1 to 7, a few items per millisecond, now and then a
 * timestamp from the past; every decision, count and peek must agree
 */
static void
test_random_against_memory(void)
{
	pyrate_error e = {0};
	pyrate_rate rates[2] = {{12, 40}, {60, 300}};
	pyrate_bucket *rb = open_redis("pyrate:test:random", rates, 2, 3600000, &e);
	pyrate_bucket *mb = pyrate_memory_bucket_new(rates, 2, &e);
	int64_t		t = 1000000;
	int			i;
	int			differ = 0;
	int			rejected = 0;
	unsigned	seed = 12345;

	pyrate_flush(rb, NULL);
	for (i = 0; i < 1500 && differ == 0; i++)
	{
		pyrate_item item = {"x", t, 1};
		bool		acquired = true;
		int64_t		n1 = -1,
					n2 = -2;

		seed = seed * 1103515245 + 12345;
		t += (seed >> 16) % 24;
		item.timestamp = (seed >> 8) % 17 == 0 ? t - 50 : t;
		item.weight = 1 + (seed >> 20) % 7;
		differ += put_both("random", rb, mb, &item, &acquired);
		rejected += !acquired;
		if (i % 50 == 49)
		{
			int64_t		k;

			pyrate_count(rb, &n1, NULL);
			pyrate_count(mb, &n2, NULL);
			differ += n1 != n2;
			for (k = 0; k < n2 + 2; k += 1 + k / 4)
			{
				pyrate_item p1,
							p2;
				bool		f1,
							f2;

				pyrate_peek(rb, k, &f1, &p1, NULL);
				pyrate_peek(mb, k, &f2, &p2, NULL);
				differ += f1 != f2 || (f1 && (p1.timestamp != p2.timestamp || p1.weight != p2.weight));
			}
		}
		if (i % 300 == 299)
			differ += leak_both("random", rb, mb, t);
	}
	CHECK(differ == 0 && rejected > 100 && rejected < 1400, "1500 random puts, counts, peeks and leaks: Redis = in-memory "
		  "(%d rejected)", rejected);
	pyrate_flush(rb, NULL);
	pyrate_close(rb);
	pyrate_close(mb);
}

/* the server's TIME in ms, read directly */
static int64_t
server_ms(redisContext *c)
{
	redisReply *r = redisCommand(c, "TIME");
	int64_t		ms = -1;

	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
		ms = strtoll(r->element[0]->str, NULL, 10) * 1000 + strtoll(r->element[1]->str, NULL, 10) / 1000;
	freeReplyObject(r);
	return ms;
}

/*
 * A put at PYRATE_NOW is stamped with the server's clock as the client
 * reckons it (TIME at most every second, the monotonic clock between):
 * within a few ms of TIME around it, on a fresh connection, a second later
 * (read again) and after the server dropped the connection.
 */
static void
test_clock(redisContext *c)
{
	pyrate_error e = {0};
	pyrate_rate r = {1000, 60000};
	pyrate_bucket *b = open_redis("pyrate:test:clock", &r, 1, 0, &e);
	pyrate_item item = {"c", PYRATE_NOW, 1};
	const char *const when[3] = {"on a fresh connection", "1.2 s later", "after CLIENT KILL"};
	int			k;

	pyrate_flush(b, NULL);
	for (k = 0; k < 3; k++)
	{
		pyrate_decision d = {0};
		int64_t		before;
		int64_t		after;
		int			rc;

		if (k == 1)
			usleep(1200000);
		if (k == 2)
			freeReplyObject(redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes"));
		before = server_ms(c);
		rc = pyrate_put(b, &item, &d, &e);
		if (rc != PYRATE_OK && k == 2)	/* the call that finds the connection gone reports it */
			rc = pyrate_put(b, &item, &d, &e);
		after = server_ms(c);
		CHECK(rc == PYRATE_OK && d.acquired && d.timestamp >= before - 2 && d.timestamp <= after + 2,
			  "%s: stamped %" PRId64 ", server TIME %" PRId64 "..%" PRId64 " %s", when[k], d.timestamp,
			  before, after, rc == PYRATE_OK ? "" : e.message);
	}
	pyrate_flush(b, NULL);
	pyrate_close(b);
}

int
main(int argc, char **argv)
{
	pyrate_error e = {0};
	pyrate_bucket *b;
	redisContext *c;
	int			errors = 0;
	int			admitted;

	if (argc < 3)
	{
		fprintf(stderr, "usage: test_redis HOST PORT [RESTART-COMMAND]\n");
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	c = redisConnect(host, port);
	if (!c || c->err)
	{
		printf("not ok - cannot reach redis at %s:%d\n0 passed, 1 failed\n", host, port);
		return 1;
	}

	b = open_redis("pyrate:test:semantics", rates_3s, 2, 3600000, &e);
	test_bucket_semantics("redis", b);
	pyrate_close(b);
	test_storage(c);
	test_clock(c);
	test_leak_all(c);
	test_old_format(c);
	test_hint(c);
	test_random_against_memory();

	b = open_busy("pyrate:test:busy");
	pyrate_flush(b, NULL);
	admitted = run_processes(NULL, open_busy, "pyrate:test:busy", 3, 2, 1300, &errors);
	check_shared("redis, 3 processes x 2 threads", b, admitted, errors);
	pyrate_close(b);

	{
		pyrate_limiter *l = pyrate_limiter_new_redis(rates_3s, 2, host, port, 10, &e);
		bool		ok;
		int			got = 0;
		int			i;

		CHECK(l != NULL, "one-call Redis limiter");
		for (i = 0; l && i < 5; i++)
			if (pyrate_try_acquire(l, "x", 1, false, -1, &ok, NULL, &e) == PYRATE_OK && ok)
				got++;
		CHECK(got == 3, "3/s through the Redis limiter: %d of 5", got);
		for (i = got = 0; l && i < 5; i++)
			if (pyrate_try_acquire(l, "y", 1, false, -1, &ok, NULL, &e) == PYRATE_OK && ok)
				got++;
		CHECK(got == 3, "another name has a bucket of its own: %d of 5", got);
		CHECK(redis_int(c, "ZCARD %s", "pyrate:x") == 3 && redis_int(c, "ZCARD %s", "pyrate:y") == 3,
			  "one key per name: pyrate:x and pyrate:y");
		pyrate_limiter_free(l);
	}
	redisFree(c);
	test_faults(argc > 3 ? argv[3] : NULL);
	return tap_end();
}
