/*
 * test_sharded.c — bucket names partitioned across several PostgreSQL
 * primaries: the shard hash, the sharded factory and its limiters.
 *
 *   test_sharded DOWN STOP-COMMAND START-COMMAND DSN0 DSN1 [DSN...]
 *
 * DSNi is shard i's server, each with the extension and the same
 * definitions (table storage): spread:* {100/1h}, exact:* {20/1h},
 * tag:* {100/1h}, down:* {1000/1h}.  STOP-COMMAND stops shard DOWN's
 * server and START-COMMAND starts it again (run with system()).
 *
 * The hash is held to fixed vectors; names land on the shard it says (read
 * back on every server by a bucket of its own); one key's limit is exact
 * from several limiters and threads; hash tags co-locate; with shard DOWN
 * stopped its names answer by the fail mode within the deadline while the
 * other shards' names are served, and once it is back it serves again.
 * The suite checks the same placement with psql and a hash of its own.
 */
#include "tap.h"

#include <pthread.h>
#include <unistd.h>

#define MAX_SHARDS 8
#define TIMEOUT_MS 3000
/* what a call may take past its deadline: the return, under valgrind */
#define SLACK_MS 1000
#define SPREAD 60
#define EXACT_LIMIT 20
#define THREADS 4
#define TRIES 15				/* per thread: THREADS * TRIES > EXACT_LIMIT */

static int	nshards;
static const char *dsns[MAX_SHARDS];
static pyrate_bucket *admin[MAX_SHARDS];	/* one per server, read back with */

/* the units name holds on shard i, or -1 on an error */
static int64_t
count_on(int i, const char *name)
{
	pyrate_error e;
	int64_t		n = -1;

	if (pyrate_pg_count(admin[i], name, &n, &e) != PYRATE_OK)
	{
		printf("# count of %s on shard %d: %s\n", name, i, e.message);
		return -1;
	}
	return n;
}

/* name holds units on its shard and nothing on the others */
static bool
placed(const char *name, int64_t units)
{
	int			home = pyrate_shard_of(name, nshards);
	int			i;
	bool		ok = true;

	for (i = 0; i < nshards; i++)
	{
		int64_t		n = count_on(i, name);

		if (n != (i == home ? units : 0))
		{
			printf("# %s: %" PRId64 " units on shard %d (home %d)\n", name, n, i, home);
			ok = false;
		}
	}
	return ok;
}

/* a limiter over the shards with a short deadline */
static pyrate_limiter *
sharded_limiter(pyrate_fail_mode mode, pyrate_error *e)
{
	pyrate_pg_options o = {NULL, NULL, NULL, TIMEOUT_MS, PYRATE_PG_FASTPATH};
	pyrate_limiter_options lo = {-1, mode};
	pyrate_factory *f = pyrate_pg_sharded_factory_new(dsns, nshards, &o, e);
	pyrate_limiter *l;

	if (!f)
		return NULL;
	if (!(l = pyrate_limiter_new(f, &lo, e)))
		pyrate_factory_free(f);
	return l;
}

/* one non-blocking permit; *outcome and the time it took */
static bool
take(pyrate_limiter *l, const char *name, pyrate_acquire_info *info, int64_t *took)
{
	pyrate_error e;
	int64_t		start = tap_ms();
	bool		ok = false;
	int			rc = pyrate_try_acquire(l, name, 1, false, -1, &ok, info, &e);

	if (took)
		*took = tap_ms() - start;
	if (rc != PYRATE_OK)
	{
		printf("# try_acquire %s: %s\n", name, e.message);
		info->outcome = (pyrate_outcome) -1;
		return false;
	}
	return ok;
}

static void
test_hash(void)
{
	static const struct
	{
		const char *name;
		uint64_t	hash;
	}			vectors[] = {
		{"", UINT64_C(0xcbf29ce484222325)},
		{"a", UINT64_C(0xaf63dc4c8601ec8c)},
		{"foobar", UINT64_C(0x85944171f73967e8)},
		{"pyrate", UINT64_C(0xab8920163b9df290)},
		{"api:user:42", UINT64_C(0x282df042fe21a678)},
		{"caf\xc3\xa9", UINT64_C(0x48e8823acfa40d89)},
		{"user:{42}:api", UINT64_C(0x07ee7e07b4b19223)},
		{"{a}{b}", UINT64_C(0xaf63dc4c8601ec8c)},
		{"{}x", UINT64_C(0xc735db1983dccc07)},
		{"a{b", UINT64_C(0xe73ebb19055c3255)},
		{"x{}{y}", UINT64_C(0x6ea1ff3a7d4c0c22)},
		{"x}{y", UINT64_C(0x2fc8ca54ad7f3a82)},
		{"\xff\xfe", UINT64_C(0x0a99c807b6f645b0)},
	};
	static const struct
	{
		const char *name;
		int			n;
		int			shard;
	}			shards[] = {
		{"", 3, 2}, {"a", 3, 1}, {"foobar", 3, 0}, {"pyrate", 3, 1}, {"api:user:42", 3, 1},
		{"api:user:42", 5, 4}, {"api:user:42", 2, 0}, {"user:{42}:api", 3, 1}, {"foobar", 5, 3},
		{"spread:0", 3, 2}, {"spread:1", 3, 0}, {"spread:2", 3, 1}, {"anything", 1, 0},
	};
	size_t		i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
	{
		uint64_t	h = pyrate_shard_hash(vectors[i].name);

		CHECK(h == vectors[i].hash, "FNV-1a(\"%s\") = 0x%016" PRIx64 " (got 0x%016" PRIx64 ")",
			  vectors[i].name, vectors[i].hash, h);
	}
	for (i = 0; i < sizeof(shards) / sizeof(shards[0]); i++)
	{
		int			s = pyrate_shard_of(shards[i].name, shards[i].n);

		CHECK(s == shards[i].shard, "shard of \"%s\" among %d: %d (got %d)", shards[i].name, shards[i].n,
			  shards[i].shard, s);
	}
	CHECK(pyrate_shard_hash("user:{42}:upload") == pyrate_shard_hash("42") &&
		  pyrate_shard_hash("{42}") == pyrate_shard_hash("42") &&
		  pyrate_shard_hash("x{42}y{7}") == pyrate_shard_hash("42"),
		  "a name with a hash tag hashes as the tag (the first one)");
	CHECK(pyrate_shard_hash("x{4{2}y") == pyrate_shard_hash("4{2"),
		  "the tag runs from the first '{' to the first '}' after it");
	CHECK(pyrate_shard_hash(NULL) == pyrate_shard_hash(""), "NULL hashes as \"\"");
	CHECK(pyrate_shard_of(NULL, 3) == -1 && pyrate_shard_of("a", 0) == -1 && pyrate_shard_of("a", -2) == -1,
		  "shard_of: -1 for NULL or fewer than one shard");
}

static void
test_arguments(void)
{
	const char *with_null[2] = {dsns[0], NULL};
	pyrate_pg_options named = {NULL, "x", NULL, 0, PYRATE_PG_FASTPATH};
	pyrate_pg_options conn = {dsns[0], NULL, NULL, 0, PYRATE_PG_FASTPATH};
	pyrate_pg_options bad = {NULL, NULL, NULL, 0, (pyrate_pg_protocol) 7};
	pyrate_pg_options negative = {NULL, NULL, NULL, -1, PYRATE_PG_FASTPATH};
	pyrate_error e;

	CHECK(!pyrate_pg_sharded_factory_new(dsns, 0, NULL, &e) && e.code == PYRATE_EINVAL,
		  "no shards: EINVAL (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(NULL, 2, NULL, &e) && e.code == PYRATE_EINVAL,
		  "no list: EINVAL (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(with_null, 2, NULL, &e) && e.code == PYRATE_EINVAL,
		  "a NULL connection string: EINVAL (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(dsns, nshards, &named, &e) && e.code == PYRATE_EINVAL,
		  "a bound name: EINVAL (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(dsns, nshards, &conn, &e) && e.code == PYRATE_EINVAL,
		  "a conninfo in the options: EINVAL (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(dsns, nshards, &bad, &e) && e.code == PYRATE_EINVAL,
		  "an unknown protocol: EINVAL from the shards' buckets (%s)", e.message);
	CHECK(!pyrate_pg_sharded_factory_new(dsns, nshards, &negative, &e) && e.code == PYRATE_EINVAL,
		  "a negative timeout: EINVAL (%s)", e.message);
	CHECK(!pyrate_limiter_new_postgres_sharded(dsns, nshards, 0, (pyrate_fail_mode) 9, &e) &&
		  e.code == PYRATE_EINVAL, "a bad fail mode: EINVAL (%s)", e.message);
	CHECK(!pyrate_limiter_new_postgres_sharded(dsns, 0, 0, PYRATE_FAIL_CLOSED, &e) && e.code == PYRATE_EINVAL,
		  "one-call limiter, no shards: EINVAL (%s)", e.message);
}

static void
test_spread(pyrate_limiter *l)
{
	pyrate_factory *f = pyrate_limiter_factory(l);
	pyrate_bucket *shard[MAX_SHARDS];
	pyrate_bucket *listed[MAX_SHARDS + 1];
	pyrate_acquire_info info;
	int			per_shard[MAX_SHARDS] = {0};
	int			admitted = 0;
	int			routed = 0;
	int			placed_ok = 0;
	int			i;
	int			k;
	bool		distinct = true;

	CHECK(pyrate_limiter_buckets(l, listed, MAX_SHARDS + 1) == (size_t) nshards,
		  "the limiter holds one bucket per shard (%d)", nshards);
	for (i = 0; i < nshards; i++)
	{
		char		key[32];

		snprintf(key, sizeof(key), "shard:%d", i);
		shard[i] = pyrate_factory_lookup(f, key);
		for (k = 0; k < i; k++)
			distinct = distinct && shard[k] != shard[i];
		distinct = distinct && shard[i] && strcmp(shard[i]->ops->kind, "postgres") == 0;
	}
	CHECK(distinct, "shard i's Postgres bucket is registered as \"shard:i\"");
	for (k = 0; k < SPREAD; k++)
	{
		char		name[32];
		pyrate_item item;
		pyrate_bucket *b = NULL;
		pyrate_error e;
		int			home;

		snprintf(name, sizeof(name), "spread:%d", k);
		home = pyrate_shard_of(name, nshards);
		per_shard[home]++;
		if (pyrate_factory_wrap_item(f, name, 1, &item, &e) == PYRATE_OK &&
			pyrate_factory_get(f, &item, &b, &e) == PYRATE_OK && b == shard[home])
			routed++;
		if (take(l, name, &info, NULL) && info.outcome == PYRATE_ACQUIRED)
			admitted++;
		if (placed(name, 1))
			placed_ok++;
	}
	CHECK(routed == SPREAD, "%d of %d names routed to the bucket of pyrate_shard_of's shard", routed, SPREAD);
	CHECK(admitted == SPREAD, "%d of %d names admitted", admitted, SPREAD);
	CHECK(placed_ok == SPREAD, "%d of %d names hold their unit on their shard's server and nothing elsewhere",
		  placed_ok, SPREAD);
	for (i = 0; i < nshards; i++)
		CHECK(per_shard[i] >= SPREAD / nshards / 2, "shard %d holds %d of the %d names", i, per_shard[i], SPREAD);
}

typedef struct hammer
{
	pyrate_limiter *l;
	pthread_t	thread;
	int			admitted;
	int			rejected;
	int			other;
	pyrate_rate failing;
} hammer;

static void *
hammer_main(void *arg)
{
	hammer	   *h = arg;
	pyrate_acquire_info info;
	int			i;

	for (i = 0; i < TRIES; i++)
	{
		bool		ok = take(h->l, "exact:hot", &info, NULL);

		if (ok && info.outcome == PYRATE_ACQUIRED)
			h->admitted++;
		else if (!ok && info.outcome == PYRATE_REJECTED)
		{
			h->rejected++;
			h->failing = info.decision.failing_rate;
		}
		else
			h->other++;
	}
	return NULL;
}

/* threads over two limiters (their own connections) on one key: exactly its limit */
static void
test_exact(pyrate_limiter *a, pyrate_limiter *b)
{
	hammer		h[THREADS];
	int			admitted = 0;
	int			rejected = 0;
	int			other = 0;
	bool		by_rate = true;
	int			i;

	memset(h, 0, sizeof(h));
	for (i = 0; i < THREADS; i++)
	{
		h[i].l = i % 2 ? b : a;
		if (pthread_create(&h[i].thread, NULL, hammer_main, &h[i]) != 0)
			h[i].l = NULL;
	}
	for (i = 0; i < THREADS; i++)
	{
		if (!h[i].l)
		{
			other += TRIES;
			continue;
		}
		pthread_join(h[i].thread, NULL);
		admitted += h[i].admitted;
		rejected += h[i].rejected;
		other += h[i].other;
		if (h[i].rejected && (h[i].failing.limit != EXACT_LIMIT || h[i].failing.interval != PYRATE_HOUR))
			by_rate = false;
	}
	CHECK(admitted == EXACT_LIMIT && rejected == THREADS * TRIES - EXACT_LIMIT && other == 0,
		  "%d threads over two limiters, %d tries on one key: %d admitted (limit %d), %d rejected, %d other",
		  THREADS, THREADS * TRIES, admitted, EXACT_LIMIT, rejected, other);
	CHECK(by_rate, "every rejection by the key's rate, %d/1h", EXACT_LIMIT);
	CHECK(placed("exact:hot", EXACT_LIMIT), "its %d units are on its shard (%d) alone", EXACT_LIMIT,
		  pyrate_shard_of("exact:hot", nshards));
}

static void
test_tags(pyrate_limiter *l)
{
	static const char *const suffix[] = {"api", "upload", "login", "export", "report", "admin"};
	const int	n = sizeof(suffix) / sizeof(suffix[0]);
	int			home = pyrate_shard_of("team7", nshards);
	int			untagged_mask = 0;
	int			together = 0;
	int			i;
	pyrate_acquire_info info;

	for (i = 0; i < n; i++)
	{
		char		tagged[64];
		char		plain[64];

		snprintf(tagged, sizeof(tagged), "tag:{team7}:%s", suffix[i]);
		snprintf(plain, sizeof(plain), "tag:team7:%s", suffix[i]);
		untagged_mask |= 1 << pyrate_shard_of(plain, nshards);
		if (pyrate_shard_of(tagged, nshards) == home && take(l, tagged, &info, NULL) && placed(tagged, 1))
			together++;
	}
	CHECK(__builtin_popcount(untagged_mask) >= 2, "without the tag these names spread over %d shards",
		  __builtin_popcount(untagged_mask));
	CHECK(together == n, "with the tag {team7} all %d live on shard %d, the shard of \"team7\" (%d did)",
		  n, home, together);
	CHECK(take(l, "tag:{}:a", &info, NULL) && placed("tag:{}:a", 1) &&
		  pyrate_shard_of("tag:{}:a", nshards) == (int) (pyrate_shard_hash("tag:{}:a") % (uint64_t) nshards),
		  "an empty tag: the whole name is hashed");
}

/* the first name "PREFIX<k>" whose shard is (or, with other, is not) shard */
static void
name_on(char *buf, size_t len, const char *prefix, int shard, bool other)
{
	int			k;

	for (k = 0;; k++)
	{
		snprintf(buf, len, "%s%d", prefix, k);
		if ((pyrate_shard_of(buf, nshards) == shard) != other)
			return;
	}
}

static void
test_outage(int down, const char *stop, const char *start, pyrate_limiter *closed, pyrate_limiter *open,
			pyrate_limiter *idle)
{
	char		on_down[32];
	char		tagged[64];
	char		elsewhere[MAX_SHARDS][32];
	pyrate_acquire_info info;
	int64_t		took;
	int64_t		n;
	int			round;
	int			i;
	bool		ok;
	pyrate_error e;

	name_on(on_down, sizeof(on_down), "down:", down, false);
	for (i = 0; i < nshards; i++)
		if (i != down)
			name_on(elsewhere[i], sizeof(elsewhere[i]), "down:", i, false);
	/* a tag that lands on the down shard */
	for (i = 0;; i++)
	{
		snprintf(tagged, sizeof(tagged), "down:{g%d}:x", i);
		if (pyrate_shard_of(tagged, nshards) == down)
			break;
	}
	CHECK(take(closed, on_down, &info, NULL) && take(open, on_down, &info, NULL) &&
		  take(idle, on_down, &info, NULL) && placed(on_down, 3),
		  "before: %s admitted by each limiter from shard %d", on_down, down);

	CHECK(system(stop) == 0, "shard %d's server is stopped", down);
	for (round = 0; round < 2; round++)
	{
		const char *name = round ? tagged : on_down;

		ok = take(closed, name, &info, &took);
		CHECK(!ok && info.outcome == PYRATE_FAILED_CLOSED &&
			  (info.backend_error.code == PYRATE_EBACKEND || info.backend_error.code == PYRATE_ETIMEOUT) &&
			  took <= TIMEOUT_MS + SLACK_MS,
			  "fail-closed: %s on the stopped shard refused in %" PRId64 " ms (%s)", name, took,
			  info.backend_error.message);
		ok = take(open, name, &info, &took);
		CHECK(ok && info.outcome == PYRATE_FAILED_OPEN && took <= TIMEOUT_MS + SLACK_MS,
			  "fail-open: %s on the stopped shard admitted unchecked in %" PRId64 " ms (%s)", name, took,
			  info.backend_error.message);
		for (i = 0; i < nshards; i++)
		{
			if (i == down)
				continue;
			ok = take(closed, elsewhere[i], &info, &took);
			CHECK(ok && info.outcome == PYRATE_ACQUIRED,
				  "fail-closed: %s on shard %d still admitted, checked (%" PRId64 " ms)", elsewhere[i], i, took);
			ok = take(open, elsewhere[i], &info, &took);
			CHECK(ok && info.outcome == PYRATE_ACQUIRED,
				  "fail-open: %s on shard %d still admitted, checked (%" PRId64 " ms)", elsewhere[i], i, took);
		}
	}
	/* blocking with no timeout: the fail mode still answers at once */
	{
		int64_t		t0 = tap_ms();
		int			rc = pyrate_try_acquire(closed, on_down, 1, true, -1, &ok, &info, &e);

		took = tap_ms() - t0;
		CHECK(rc == PYRATE_OK && !ok && info.outcome == PYRATE_FAILED_CLOSED && took <= TIMEOUT_MS + SLACK_MS,
			  "blocking, no timeout: refused in %" PRId64 " ms", took);
	}
	CHECK(pyrate_pg_count(admin[down], on_down, &n, &e) == PYRATE_EBACKEND,
		  "the stopped server itself: EBACKEND (%s)", e.message);

	CHECK(system(start) == 0, "shard %d's server is started again", down);
	ok = take(closed, on_down, &info, &took);
	CHECK(ok && info.outcome == PYRATE_ACQUIRED, "fail-closed limiter: %s admitted by shard %d again (%s, %" PRId64 " ms)",
		  on_down, down, info.outcome == PYRATE_ACQUIRED ? "checked" : info.backend_error.message, took);
	ok = take(open, on_down, &info, &took);
	CHECK(ok && info.outcome == PYRATE_ACQUIRED, "fail-open limiter: %s admitted by shard %d again (%s, %" PRId64 " ms)",
		  on_down, down, info.outcome == PYRATE_ACQUIRED ? "checked" : info.backend_error.message, took);
	ok = take(idle, on_down, &info, &took);
	CHECK(ok && info.outcome == PYRATE_ACQUIRED,
		  "a limiter idle through the outage: its old connection replaced, admitted (%s, %" PRId64 " ms)",
		  info.outcome == PYRATE_ACQUIRED ? "checked" : info.backend_error.message, took);
	/* 3 before, 3 after; the fail-open admits stored nothing, the refusals nothing */
	CHECK(placed(on_down, 6), "%s holds the 6 units checked by its shard, none of the unchecked", on_down);
	CHECK(placed(tagged, 0), "%s holds nothing: it was only ever answered by the fail modes", tagged);
}

/* a disposed shard bucket is opened again by the next call routed to it */
static void
test_dispose(pyrate_limiter *l)
{
	pyrate_factory *f = pyrate_limiter_factory(l);
	pyrate_bucket *old = pyrate_factory_lookup(f, "shard:0");
	pyrate_acquire_info info;
	char		name[32];

	name_on(name, sizeof(name), "spread:again:", 0, false);
	CHECK(old && pyrate_limiter_dispose(l, old), "shard 0's bucket disposed");
	CHECK(pyrate_limiter_buckets(l, NULL, 0) == (size_t) nshards - 1 && !pyrate_factory_lookup(f, "shard:0"),
		  "... and no longer registered");
	CHECK(take(l, name, &info, NULL) && info.outcome == PYRATE_ACQUIRED && placed(name, 1),
		  "%s, on shard 0: admitted through a bucket opened again", name);
	CHECK(pyrate_factory_lookup(f, "shard:0") && pyrate_limiter_buckets(l, NULL, 0) == (size_t) nshards,
		  "shard 0 registered again");
}

int
main(int argc, char **argv)
{
	pyrate_error e = {0};
	pyrate_limiter *closed;
	pyrate_limiter *open;
	pyrate_limiter *idle;
	int			down;
	int			i;

	if (argc < 6 || argc - 4 > MAX_SHARDS)
	{
		fprintf(stderr, "usage: test_sharded DOWN STOP-COMMAND START-COMMAND DSN0 DSN1 [DSN...] (at most %d)\n",
				MAX_SHARDS);
		return 2;
	}
	down = atoi(argv[1]);
	nshards = argc - 4;
	for (i = 0; i < nshards; i++)
	{
		pyrate_pg_options o = {argv[4 + i], NULL, NULL, TIMEOUT_MS, PYRATE_PG_UNNAMED};

		dsns[i] = argv[4 + i];
		if (!(admin[i] = pyrate_pg_bucket_new(&o, &e)))
		{
			printf("not ok - shard %d: %s\n0 passed, 1 failed\n", i, e.message);
			return 1;
		}
	}

	test_hash();
	test_arguments();

	closed = sharded_limiter(PYRATE_FAIL_CLOSED, &e);
	open = sharded_limiter(PYRATE_FAIL_OPEN, &e);
	idle = pyrate_limiter_new_postgres_sharded(dsns, nshards, -1, PYRATE_FAIL_CLOSED, &e);
	if (!closed || !open || !idle)
	{
		printf("not ok - the sharded limiters: %s\n0 passed, 1 failed\n", e.message);
		return 1;
	}
	test_spread(idle);
	test_exact(closed, open);
	test_tags(closed);
	if (down >= 0 && down < nshards)
		test_outage(down, argv[2], argv[3], closed, open, idle);
	else
		CHECK(false, "shard %d to stop is not one of the %d", down, nshards);
	test_dispose(idle);

	pyrate_limiter_free(idle);
	pyrate_limiter_free(open);
	pyrate_limiter_free(closed);
	for (i = 0; i < nshards; i++)
		pyrate_close(admin[i]);
	return tap_end();
}
