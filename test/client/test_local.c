/*
 * test_local.c — libpyrate without servers: rates, the in-memory,
 * multiprocess and SQLite buckets, a user-implemented bucket, factories,
 * the leaker, and the limiter's arguments, blocking and timeouts.
 *
 *   test_local DIR      (DIR: where SQLite files go)
 */
#include "shared.h"

#include <signal.h>

static char dir[1024];

static void
test_rates(void)
{
	pyrate_rate r;
	pyrate_rate list[3];
	pyrate_error e = {0};
	char		buf[64];

	CHECK_OK(pyrate_rate_parse("5/s", &r, &e), "parse 5/s");
	CHECK(r.limit == 5 && r.interval == 1000, "5/s is 5 per 1000 ms");
	CHECK_OK(pyrate_rate_parse("10/1500ms", &r, &e), "parse 10/1500ms");
	pyrate_rate_format(&r, buf, sizeof(buf));
	CHECK(strcmp(buf, "10/1500ms") == 0, "format 10/1500ms: %s", buf);
	CHECK(pyrate_rate_parse("5/parsec", &r, &e) == PYRATE_EINVAL && e.code == PYRATE_EINVAL && e.message[0],
		  "bad unit rejected: %s", e.message);
	CHECK(pyrate_duration("minute") == PYRATE_MINUTE && pyrate_duration("fortnight") == -1, "durations");
	pyrate_duration_readable(1500, buf, sizeof(buf));
	CHECK(strcmp(buf, "1.5s") == 0, "readable 1500 ms: %s", buf);

	list[0] = (pyrate_rate) {100, PYRATE_MINUTE};
	list[1] = (pyrate_rate) {5, PYRATE_SECOND};
	CHECK_OK(pyrate_rates_validate(list, 2, &e), "valid list, out of order");
	CHECK(list[0].interval == PYRATE_SECOND, "validate sorts by interval");
	list[0] = (pyrate_rate) {5, PYRATE_SECOND};
	list[1] = (pyrate_rate) {5, PYRATE_MINUTE};
	CHECK(pyrate_rates_validate(list, 2, &e) == PYRATE_EINVAL && strstr(e.message, "5/1s"),
		  "limits must increase, names the rates: %s", e.message);
	list[1] = (pyrate_rate) {6000, PYRATE_MINUTE};
	CHECK(pyrate_rates_validate(list, 2, &e) == PYRATE_EINVAL, "density must not increase: %s", e.message);
	CHECK(pyrate_memory_bucket_new(list, 2, &e) == NULL && e.code == PYRATE_EINVAL,
		  "a bucket refuses an invalid list");
	CHECK(strcmp(pyrate_code_name(PYRATE_ETIMEOUT), "PYRATE_ETIMEOUT") == 0, "code names");
}

static void
test_memory(void)
{
	pyrate_error e;
	pyrate_bucket *b = pyrate_memory_bucket_new(rates_3s, 2, &e);
	pyrate_item item = {"x", 0, 1};
	pyrate_decision d;
	int64_t		n;
	int			i;
	int			admitted = 0;

	test_bucket_semantics("memory", b);
	/* growth past the initial ring */
	pyrate_close(b);
	b = pyrate_memory_bucket_new((pyrate_rate[]) {{100000, 1000}}, 1, &e);
	for (i = 0; i < 5000; i++)
	{
		item.timestamp = i / 10;
		pyrate_put(b, &item, &d, NULL);
		admitted += d.acquired;
	}
	pyrate_count(b, &n, NULL);
	CHECK(admitted == 5000 && n == 5000, "memory: 5000 items stored through growth");
	pyrate_close(b);

	/*
	 * growth of a ring that has wrapped round: leaks move the oldest item
	 * forward, so each doubling finds the items split across the end of the
	 * ring; every item must come back in order, with its weight
	 */
	b = pyrate_memory_bucket_new((pyrate_rate[]) {{1000000, 1000000}}, 1, &e);
	{
		int64_t		next = 0;	/* timestamp of the next put */
		int64_t		oldest = 0; /* of the oldest item kept */
		bool		in_order = true;
		int			round;

		for (round = 0; round < 12; round++)
		{
			int64_t		removed;
			int64_t		k;

			/* 50 + 37 * round items (weights 1..3 by timestamp), then leak the older third */
			for (i = 0; i < 50 + 37 * round; i++)
			{
				item.timestamp = next;
				item.weight = 1 + next % 3;
				next++;
				pyrate_put(b, &item, &d, NULL);
				in_order &= d.acquired;
			}
			pyrate_leak(b, oldest + (next - oldest) / 3 + 1000000, &removed, NULL);
			oldest += (next - oldest) / 3;
			/* units newest first: item next-1 holds units 0..w-1, and so on */
			k = 0;
			for (int64_t ts = next - 1; ts >= oldest && in_order; ts--)
			{
				pyrate_item got;
				bool		found;

				pyrate_peek(b, k, &found, &got, NULL);
				in_order &= found && got.timestamp == ts && got.weight == 1 + ts % 3;
				k += 1 + ts % 3;
			}
			pyrate_count(b, &n, NULL);
			in_order &= n == k;
		}
		CHECK(in_order, "memory: a wrapped ring grows with every item in order and weight");
	}
	item.weight = 1;
	pyrate_close(b);
}

static void
test_memory_threads(void)
{
	pyrate_error e;
	pyrate_bucket *b = pyrate_memory_bucket_new(busy_rates, 2, &e);
	int			errors = 0;
	int			admitted = run_threads(b, 4, 1300, &errors);

	check_shared("memory, 4 threads", b, admitted, errors);
	pyrate_close(b);
}

static pyrate_bucket *
open_named_mp(void *arg)
{
	return pyrate_multiprocess_bucket_open(arg, NULL, 0, 0, NULL);
}

static void
test_multiprocess(void)
{
	pyrate_error e;
	pyrate_bucket *b = pyrate_multiprocess_bucket_new(rates_3s, 2, 1000, &e);
	pyrate_bucket *other;
	pyrate_item item = {"x", 0, 1};
	pyrate_decision d;
	char		name[64];
	int			errors = 0;
	int			admitted;
	int			i;
	int			rc;

	test_bucket_semantics("multiprocess", b);
	pyrate_close(b);

	b = pyrate_multiprocess_bucket_new(busy_rates, 2, 0, &e);
	admitted = run_processes(b, NULL, NULL, 3, 2, 1300, &errors);
	check_shared("multiprocess, forked 3x2", b, admitted, errors);
	pyrate_close(b);

	snprintf(name, sizeof(name), "/pyrate-test-%d", (int) getpid());
	pyrate_multiprocess_unlink(name, NULL);
	b = pyrate_multiprocess_bucket_open(name, busy_rates, 2, 0, &e);
	CHECK(b != NULL, "named multiprocess bucket created: %s", b ? "" : e.message);
	if (b)
	{
		errors = 0;
		admitted = run_processes(NULL, open_named_mp, name, 3, 2, 1300, &errors);
		check_shared("multiprocess, named, 3 processes attaching", b, admitted, errors);
		other = pyrate_multiprocess_bucket_open(name, rates_3s, 2, 0, &e);
		CHECK(!other && e.code == PYRATE_EINVAL, "attaching with other rates is refused: %s", e.message);
		pyrate_close(b);
	}
	CHECK_OK(pyrate_multiprocess_unlink(name, &e), "unlink the named bucket");
	CHECK(!pyrate_multiprocess_bucket_open(name, NULL, 0, 0, &e) && e.code == PYRATE_ENOTFOUND,
		  "attaching a missing name: %s", e.message);

	/* a fixed mapping: a full log drops what left every window, then says EFULL */
	b = pyrate_multiprocess_bucket_new((pyrate_rate[]) {{1000, 100}}, 1, 16, &e);
	for (i = 0; i < 40; i++)
	{
		item.timestamp = i * 50;
		rc = pyrate_put(b, &item, &d, &e);
		if (rc != PYRATE_OK)
			break;
	}
	CHECK(rc == PYRATE_OK, "full ring recovers by dropping items outside the window");
	for (i = 0; i < 20 && rc == PYRATE_OK; i++)
	{
		item.timestamp = 5000;
		rc = pyrate_put(b, &item, &d, &e);
	}
	CHECK(rc == PYRATE_EFULL && strstr(e.message, "capacity"), "EFULL past capacity: %s", e.message);
	pyrate_close(b);

	/* processes killed mid-put (likely holding the lock) do not wedge the bucket */
	b = pyrate_multiprocess_bucket_new((pyrate_rate[]) {{10, 1000}}, 1, 0, &e);
	item.timestamp = PYRATE_NOW;
	for (i = 0; i < 5; i++)
	{
		pid_t		pid = fork();

		if (pid == 0)
			for (;;)
				pyrate_put(b, &item, &d, NULL);
		usleep(20000);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	alarm(10);
	rc = pyrate_put(b, &item, &d, &e);
	alarm(0);
	CHECK(rc == PYRATE_OK, "puts go on after holders of the lock were killed: %s", rc ? e.message : "");
	pyrate_close(b);
}

/* ---- SQLite ------------------------------------------------------------ */

static pyrate_bucket *
open_sqlite(void *arg)
{
	char		path[1100];
	pyrate_sqlite_options o = {path, "busy", false, arg != NULL, 0};

	snprintf(path, sizeof(path), "%s/shared.db", dir);
	return pyrate_sqlite_bucket_new(busy_rates, 2, &o, NULL);
}

static void
test_sqlite(void)
{
	char		path[1100];
	pyrate_sqlite_options o = {path, NULL, false, false, 0};
	pyrate_error e = {0};
	pyrate_bucket *b;
	pyrate_bucket *again;
	pyrate_clock *clock;
	pyrate_item item = {"x", 1000, 1};
	pyrate_decision d;
	int64_t		n;
	int64_t		now;
	int			errors = 0;
	int			admitted;

	snprintf(path, sizeof(path), "%s/semantics.db", dir);
	b = pyrate_sqlite_bucket_new(rates_3s, 2, &o, &e);
	CHECK(b != NULL, "sqlite bucket in a file: %s", b ? "" : e.message);
	if (!b)
		return;
	test_bucket_semantics("sqlite", b);
	pyrate_put(b, &item, &d, NULL);
	pyrate_close(b);
	/* the file keeps the items */
	b = pyrate_sqlite_bucket_new(rates_3s, 2, &o, &e);
	CHECK(b && pyrate_count(b, &n, &e) == PYRATE_OK && n == 1, "sqlite: items survive reopening");
	pyrate_close(b);

	o.table = "missing";
	o.require_table = true;
	CHECK(!pyrate_sqlite_bucket_new(rates_3s, 2, &o, &e) && e.code == PYRATE_ENOTFOUND,
		  "require_table refuses a missing table: %s", e.message);
	o.path = "/nonexistent-dir/x.db";
	o.require_table = false;
	CHECK(!pyrate_sqlite_bucket_new(rates_3s, 2, &o, &e) && e.code == PYRATE_EBACKEND,
		  "unopenable file: %s", e.message);

	clock = pyrate_sqlite_clock_new(NULL, &e);
	CHECK(clock && pyrate_clock_now(clock, &now, &e) == PYRATE_OK, "SQLite clock reads");
	CHECK(llabs(now - (int64_t) time(NULL) * 1000) < 5000, "SQLite clock is wall-clock ms");
	pyrate_clock_free(clock);

	/* processes with threads, each process its own connection, with and without flock */
	b = open_sqlite(NULL);
	pyrate_flush(b, NULL);
	admitted = run_processes(NULL, open_sqlite, NULL, 3, 2, 1300, &errors);
	check_shared("sqlite, 3 processes x 2 threads", b, admitted, errors);
	pyrate_flush(b, NULL);
	errors = 0;
	admitted = run_processes(NULL, open_sqlite, "flock", 3, 2, 1300, &errors);
	check_shared("sqlite with use_file_lock, 3 processes x 2 threads", b, admitted, errors);
	again = open_sqlite("flock");
	CHECK(again != NULL, "sqlite: lock file opened");
	pyrate_close(again);
	pyrate_close(b);
}

/*
 * Processes opening one new file at the same moment: each sets it up (WAL,
 * the table) while the others hold it, and every one must get its bucket.
 */
static void
test_sqlite_first_open(void)
{
	int			failures = 0;
	int			round;

	for (round = 0; round < 10; round++)
	{
		char		path[1100];
		pid_t		pids[8];
		int			go[2];
		int			i;

		snprintf(path, sizeof(path), "%s/first-%d.db", dir, round);
		if (pipe(go) != 0)
			break;
		for (i = 0; i < 8; i++)
			if ((pids[i] = fork()) == 0)
			{
				pyrate_sqlite_options o = {path, NULL, false, false, 0};
				pyrate_item item = {"x", PYRATE_NOW, 1};
				pyrate_bucket *b;
				pyrate_decision d;
				char		c;
				int			ok;

				close(go[1]);
				/* every child starts when the parent closes the pipe */
				while (read(go[0], &c, 1) > 0)
					;
				b = pyrate_sqlite_bucket_new(rates_3s, 2, &o, NULL);
				ok = b && pyrate_put(b, &item, &d, NULL) == PYRATE_OK;
				if (b)
					pyrate_close(b);
				_exit(ok ? 0 : 1);
			}
		close(go[0]);
		close(go[1]);
		for (i = 0; i < 8; i++)
		{
			int			status;

			if (pids[i] < 0 || waitpid(pids[i], &status, 0) != pids[i] ||
				!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				failures++;
		}
	}
	CHECK(failures == 0, "sqlite: 8 processes opening a new file at once, 10 times: all set it up and put "
		  "(%d failed)", failures);
}

/* ---- a bucket of the user's ------------------------------------------- */

typedef struct user_bucket
{
	pyrate_bucket base;
	int64_t		units;			/* a toy: one fixed window, never leaks */
	int			locks;
	int			unlocks;
	bool		closed;
} user_bucket;

static int
ub_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	user_bucket *u = (user_bucket *) b;

	(void) err;
	d->acquired = u->units + item->weight <= b->rates[0].limit;
	if (d->acquired)
		u->units += item->weight;
	else
		d->failing_rate = b->rates[0];
	return PYRATE_OK;
}

static int
ub_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	(void) b;
	(void) item;
	(void) err;
	*ms = 42;
	return PYRATE_OK;
}

static int
ub_unsupported(pyrate_bucket *b, pyrate_error *err)
{
	(void) b;
	err->code = PYRATE_EUNSUPPORTED;
	snprintf(err->message, sizeof(err->message), "the toy bucket cannot do that");
	return PYRATE_EUNSUPPORTED;
}

static int
ub_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	(void) now;
	*removed = 0;
	return ub_unsupported(b, err);
}

static int
ub_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	(void) err;
	*units = ((user_bucket *) b)->units;
	return PYRATE_OK;
}

static int
ub_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	(void) index;
	(void) ts;
	(void) weight;
	*found = false;
	return ub_unsupported(b, err);
}

static int
ub_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	(void) b;
	(void) err;
	*ms = 7;
	return PYRATE_OK;
}

static int
ub_lock(pyrate_bucket *b, pyrate_error *err)
{
	(void) err;
	((user_bucket *) b)->locks++;
	return PYRATE_OK;
}

static void
ub_unlock(pyrate_bucket *b)
{
	((user_bucket *) b)->unlocks++;
}

static void
ub_close(pyrate_bucket *b)
{
	((user_bucket *) b)->closed = true;
}

static const pyrate_bucket_ops user_ops = {
	"toy", ub_put, ub_waiting, ub_leak, ub_unsupported, ub_count, ub_peek,
	ub_now, ub_lock, ub_unlock, ub_close
};

static void
test_user_bucket(void)
{
	user_bucket u;
	pyrate_error e = {0};
	pyrate_limiter *l;
	pyrate_acquire_info info;
	pyrate_decision d;
	pyrate_item item = {"t", PYRATE_NOW, 2};
	bool		ok;
	pyrate_bucket_ops broken = user_ops;

	broken.lock = NULL;
	CHECK(pyrate_bucket_init(&u.base, &broken, rates_3s, 2, &e) == PYRATE_EINVAL,
		  "ops with lock but no unlock refused: %s", e.message);
	memset(&u, 0, sizeof(u));
	CHECK_OK(pyrate_bucket_init(&u.base, &user_ops, rates_3s, 2, &e), "user bucket init");
	CHECK_OK(pyrate_put(&u.base, &item, &d, &e), "user put");
	CHECK_OK(pyrate_put(&u.base, &item, &d, &e), "user put");
	CHECK(!d.acquired && d.retry_after_ms == 42, "a rejection asks the bucket's waiting (%" PRId64 ")",
		  d.retry_after_ms);
	CHECK(pyrate_flush(&u.base, &e) == PYRATE_EUNSUPPORTED, "an op the bucket lacks: %s", e.message);
	u.units = 0;
	l = pyrate_limiter_new_bucket(&u.base, NULL, &e);
	CHECK_OK(pyrate_try_acquire(l, "t", 1, false, -1, &ok, &info, &e), "limiter over a user bucket");
	CHECK(ok && u.locks == 1 && u.unlocks == 1, "the limiter holds the bucket's limiter lock around put");
	pyrate_limiter_free(l);
	CHECK(u.closed, "the limiter closes the bucket it was given");
}

/* ---- factories, leaker, limiter ---------------------------------------- */

static int	routed;

static int
route_by_prefix(pyrate_factory *f, const pyrate_item *item, void *user, pyrate_bucket **out,
				pyrate_error *err)
{
	const char *key = strncmp(item->name, "api:", 4) == 0 ? "api" : "other";
	pyrate_bucket *b = pyrate_factory_lookup(f, key);

	(void) user;
	routed++;
	if (!b)
	{
		pyrate_rate r = strcmp(key, "api") == 0 ? (pyrate_rate) {2, 60000} : (pyrate_rate) {5, 60000};

		if (!(b = pyrate_memory_bucket_new(&r, 1, err)))
			return err->code;
		if (pyrate_factory_create(f, key, b, err) != PYRATE_OK)
		{
			pyrate_close(b);
			return err->code;
		}
	}
	*out = b;
	return PYRATE_OK;
}

static void
test_factory(void)
{
	pyrate_factory_options fo = {route_by_prefix, NULL, NULL, NULL, 50};
	pyrate_error e = {0};
	pyrate_factory *f = pyrate_factory_new(&fo, &e);
	pyrate_limiter *l = pyrate_limiter_new(f, NULL, &e);
	pyrate_bucket *list[4];
	pyrate_item item;
	pyrate_bucket *b;
	bool		ok;
	int			i;
	int			api = 0,
				other = 0;

	for (i = 0; i < 6; i++)
	{
		pyrate_try_acquire(l, "api:1", 1, false, -1, &ok, NULL, &e);
		api += ok;
		pyrate_try_acquire(l, "web", 1, false, -1, &ok, NULL, &e);
		other += ok;
	}
	CHECK(api == 2 && other == 5, "user routing: api:* 2/min, others 5/min (%d, %d)", api, other);
	CHECK(pyrate_limiter_buckets(l, list, 4) == 2, "two buckets created");
	CHECK(pyrate_factory_leak_interval(f) == 50, "leak_interval");
	CHECK_OK(pyrate_factory_wrap_item(f, "api:2", 3, &item, &e), "wrap_item");
	CHECK(item.timestamp == PYRATE_NOW && item.weight == 3, "wrap_item without a clock leaves stamping to the bucket");
	CHECK_OK(pyrate_factory_get(f, &item, &b, &e), "get");
	CHECK(b == pyrate_factory_lookup(f, "api"), "get routes to the api bucket");
	CHECK(pyrate_limiter_dispose(l, b) && pyrate_limiter_buckets(l, NULL, 0) == 1, "dispose");
	CHECK(!pyrate_limiter_dispose(l, b), "dispose twice is false");
	pyrate_try_acquire(l, "api:1", 1, false, -1, &ok, NULL, &e);
	CHECK(ok, "a disposed bucket comes back empty");
	CHECK(pyrate_try_acquire(l, "api:1", 1, false, 1, &ok, NULL, &e) == PYRATE_EINVAL,
		  "a timeout without blocking is an error: %s", e.message);
	CHECK(pyrate_try_acquire(l, "api:1", 1, true, -2, &ok, NULL, &e) == PYRATE_EINVAL,
		  "timeout -2 is an error: %s", e.message);
	CHECK(pyrate_try_acquire(l, "api:1", -1, true, -1, &ok, NULL, &e) == PYRATE_EINVAL,
		  "negative weight is an error: %s", e.message);
	pyrate_limiter_free(l);
}

static void
test_leaker(void)
{
	pyrate_error e = {0};
	pyrate_rate r = {1000, 100};
	pyrate_bucket *b = pyrate_memory_bucket_new(&r, 1, &e);
	pyrate_factory *f = pyrate_single_bucket_factory_new(b, true, NULL, &e);
	pyrate_factory_options fo = {route_by_prefix, NULL, NULL, NULL, 20};
	pyrate_item item;
	int64_t		n = -1;
	int64_t		start;
	int			i;

	CHECK(pyrate_factory_leak_interval(f) == 10000, "default leak_interval 10 s");
	pyrate_factory_free(f);
	CHECK(!pyrate_factory_new_keyed(NULL, NULL, NULL, 20, &e) && e.code == PYRATE_EINVAL,
		  "a keyed factory needs a constructor");

	/* a 20 ms leaker: items older than the largest interval go without any put */
	f = pyrate_factory_new(&fo, &e);
	b = pyrate_memory_bucket_new(&r, 1, &e);
	CHECK_OK(pyrate_factory_create(f, "fast", b, &e), "create registers and schedules");
	CHECK(pyrate_factory_create(f, "fast", b, &e) == PYRATE_EINVAL, "a key registers once");
	pyrate_factory_wrap_item(f, "fast", 1, &item, &e);
	for (i = 0; i < 5; i++)
		pyrate_put(b, &item, NULL, NULL);
	start = tap_ms();
	do
	{
		usleep(10000);
		pyrate_count(b, &n, NULL);
	} while (n > 0 && tap_ms() - start < 3000);
	CHECK(n == 0 && tap_ms() - start >= 90, "the leaker thread emptied the bucket after %" PRId64 " ms",
		  tap_ms() - start);
	start = tap_ms();
	pyrate_factory_free(f);
	CHECK(tap_ms() - start < 1000, "free stops the leaker at once");
}

static int	calls;

typedef struct blocker
{
	pyrate_limiter *l;
	int			got;
} blocker;

static void *
blocker_main(void *arg)
{
	blocker    *b = arg;
	int			i;

	for (i = 0; i < 10; i++)
	{
		bool		ok = false;

		if (pyrate_try_acquire(b->l, "t", 1, true, -1, &ok, NULL, NULL) == PYRATE_OK && ok)
			b->got++;
	}
	return NULL;
}

static int
work(void *arg)
{
	calls++;
	return *(int *) arg;
}

static void
test_limiter(void)
{
	pyrate_error e = {0};
	pyrate_rate r[2] = {{2, 200}, {3, 2000}};
	pyrate_limiter *l = pyrate_limiter_new_memory(r, 2, 10, &e);
	pyrate_acquire_info info;
	bool		ok = false;
	bool		called;
	int64_t		start;
	int			value = 7;
	int			result = 0;

	CHECK(l && pyrate_limiter_buffer_ms(l) == 10, "memory limiter, buffer 10 ms");
	CHECK_OK(pyrate_try_acquire(l, NULL, 2, false, -1, &ok, &info, &e), "acquire 2");
	CHECK(ok && info.outcome == PYRATE_ACQUIRED && info.decision.remaining == 0, "admitted, 0 remaining");
	CHECK_OK(pyrate_try_acquire(l, NULL, 1, false, -1, &ok, &info, &e), "acquire again");
	CHECK(!ok && info.outcome == PYRATE_REJECTED && info.decision.failing_rate.limit == 2 &&
		  info.decision.retry_after_ms > 0 && info.decision.retry_after_ms <= 201,
		  "rejected by 2/200ms, retry after %" PRId64, info.decision.retry_after_ms);
	start = tap_ms();
	CHECK_OK(pyrate_try_acquire(l, NULL, 1, true, -1, &ok, &info, &e), "blocking acquire");
	CHECK(ok && info.attempts >= 2 && tap_ms() - start >= 150 && tap_ms() - start < 1500,
		  "blocking acquire waited %" PRId64 " ms for the window", tap_ms() - start);
	/* 3 per 2 s are used up: the next fits in ~2 s, more than the timeout */
	CHECK_OK(pyrate_try_acquire(l, NULL, 1, true, 0, &ok, &info, &e), "blocking with timeout 0");
	CHECK(!ok && info.outcome == PYRATE_TIMED_OUT && info.attempts == 1 && info.waited_ms == 0,
		  "timeout 0: one put, no sleep (%d puts, %" PRId64 " ms)", info.attempts, info.waited_ms);
	start = tap_ms();
	CHECK_OK(pyrate_try_acquire(l, NULL, 1, true, 0.5, &ok, &info, &e), "blocking with timeout 0.5");
	CHECK(!ok && info.outcome == PYRATE_TIMED_OUT && info.attempts >= 2 &&
		  tap_ms() - start >= 495 && tap_ms() - start < 1500 &&
		  info.waited_ms >= 495 && info.waited_ms <= 510,
		  "a wait beyond the timeout sleeps until the timeout, puts once more, then gives up "
		  "(%" PRId64 " ms, %" PRId64 " ms asleep, %d puts)", tap_ms() - start, info.waited_ms, info.attempts);
	CHECK_OK(pyrate_try_acquire(l, NULL, 5, true, -1, &ok, &info, &e), "weight above every limit");
	CHECK(!ok && info.outcome == PYRATE_NEVER, "can never fit: false at once");
	CHECK_OK(pyrate_try_acquire(l, NULL, 0, false, -1, &ok, &info, &e), "weight 0");
	CHECK(ok, "weight 0 is admitted");
	CHECK_OK(pyrate_call(l, "fn", 1, -1, work, &value, &result, &called, &e), "call wrapper");
	CHECK(called && calls == 1 && result == 7, "the wrapped function ran and its result came back");
	pyrate_call(l, "fn", 1, -1, work, &value, &result, &called, &e);
	pyrate_call(l, "fn", 5, 0.1, work, &value, &result, &called, &e);
	CHECK(!called && calls == 2, "the wrapped function is not called when rejected");
	pyrate_limiter_free(l);

	CHECK(!pyrate_limiter_new_memory(r, 0, 0, &e) && e.code == PYRATE_EINVAL, "no rates: error");
	{
		pyrate_bucket *b = pyrate_memory_bucket_new(r, 2, &e);
		pyrate_limiter_options bad = {0, (pyrate_fail_mode) 9};

		CHECK(!pyrate_limiter_new_bucket(b, &bad, &e) && e.code == PYRATE_EINVAL,
			  "bad fail mode refused, bucket still the caller's");
		pyrate_close(b);
	}

	/* threads through one limiter, blocking: everyone gets in, windows hold */
	{
		pyrate_rate tr[1] = {{10, 100}};
		pyrate_bucket *b = pyrate_memory_bucket_new(tr, 1, &e);
		pyrate_limiter *tl = pyrate_limiter_new_bucket(b, &(pyrate_limiter_options) {5, PYRATE_FAIL_CLOSED}, &e);
		pthread_t	t[3];
		blocker		bl[3];
		char		why[256] = "";
		int			i;
		int			got = 0;

		start = tap_ms();
		for (i = 0; i < 3; i++)
		{
			bl[i] = (blocker) {tl, 0};
			pthread_create(&t[i], NULL, blocker_main, &bl[i]);
		}
		for (i = 0; i < 3; i++)
		{
			pthread_join(t[i], NULL);
			got += bl[i].got;
		}
		CHECK(got == 30 && tap_ms() - start >= 180,
			  "3 threads x 10 blocking acquires at 10/100ms: all in, after %" PRId64 " ms", tap_ms() - start);
		CHECK(tap_windows_ok(b, tr, 1, NULL, why, sizeof(why)), "blocking acquires keep the windows %s", why);
		pyrate_limiter_free(tl);
	}
}

int
main(int argc, char **argv)
{
	snprintf(dir, sizeof(dir), "%s", argc > 1 ? argv[1] : "/tmp");
	test_rates();
	test_memory();
	test_memory_threads();
	test_multiprocess();
	test_sqlite();
	test_sqlite_first_open();
	test_user_bucket();
	test_factory();
	test_leaker();
	test_limiter();
	return tap_end();
}
