/*
 * soak.c — over-admission soak and clock-stepping-back trace, through
 * libpyrate, on any bucket kind (memory, multiprocess, sqlite, redis, and
 * postgres with the extension's table or memory storage).
 *
 *   soak soak  --kind K [options]   clients hammer a hot key and many keys
 *   soak clock --kind K [options]   one trace whose clock steps back
 *
 * soak: --clients (32) clients, as --procs processes of threads, put weights
 * 1..3 for --seconds, or until --stop-file exists; every attempt goes to the hot key or, as often, to one
 * of --keys other keys.  Afterwards every key is read back through the
 * library (count, then peek unit by unit) and every window of every rate is
 * checked (tap.h's tap_windows_ok), the stored units are compared with the
 * units the clients were told were admitted (--expect equal, atleast when a
 * crash may have lost replies but never a committed permit, none when the
 * storage may lose everything), and the hot key's admissions are compared
 * with the most its rates allow over the same span.
 *
 * clock: puts at explicit timestamps that mostly go forward and now and then
 * step back up to 1 s; every decision must equal a naive model's (decide at
 * the given time, store an item older than the newest as the newest), and the
 * stored log must be in order with the newest timestamp on top.
 *
 * Prints "ok"/"not ok" lines and "N passed, N failed", as the suites count.
 */
#include "tap.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_KEYS 100000
#define MAX_THREADS 256

static const pyrate_rate rates[] = {{10, 100}, {50, 1000}, {200, 10000}};
static const int nrates = 3;

static struct
{
	const char *mode;
	const char *kind;
	const char *storage;
	const char *dsn;
	const char *redis_host;
	int			redis_port;
	const char *sqlite;
	const char *prefix;
	const char *stop_file;		/* stop early once this file exists */
	int			seconds;
	int			clients;
	int			procs;
	int			keys;
	int			trace;
	unsigned	seed;
	double		min_ratio;
	enum
	{
		EXPECT_EQUAL, EXPECT_ATLEAST, EXPECT_NONE
	}			expect;
}			opt = {
	.storage = "table", .prefix = "soak", .seconds = 60, .clients = 32, .procs = 0,
	.keys = 100, .trace = 5000, .seed = 1, .min_ratio = 0.8, .expect = EXPECT_EQUAL
};

/* shared by every process of the soak (MAP_SHARED) */
typedef struct counters
{
	int64_t		attempts;
	int64_t		errors;
	char		first_error[PYRATE_MSG_LEN + 32];
	int64_t		admitted[];		/* units, per key; key 0 is the hot key */
} counters;

static counters *shared;
static char label[64];			/* the kind, and the storage for postgres */
static pyrate_bucket **shared_buckets;	/* memory, multiprocess: one per key */

static void
key_name(int k, char *buf, size_t len)
{
	if (k == 0)
		snprintf(buf, len, "%s:hot", opt.prefix);
	else
		snprintf(buf, len, "%s:k%d", opt.prefix, k);
}

/* A bucket of its own for key k (sqlite, redis, postgres bound to k). */
static pyrate_bucket *
open_bucket(int k, pyrate_error *e)
{
	char		name[128];

	key_name(k, name, sizeof(name));
	if (strcmp(opt.kind, "sqlite") == 0)
	{
		char		table[64];
		pyrate_sqlite_options o = {opt.sqlite, table, false, false, 30000};

		snprintf(table, sizeof(table), "%s_%d", opt.prefix, k);
		return pyrate_sqlite_bucket_new(rates, nrates, &o, e);
	}
	if (strcmp(opt.kind, "redis") == 0)
	{
		/* keep every key for the check, however long ago its last put */
		pyrate_redis_options o = {opt.redis_host, opt.redis_port, NULL, NULL, name, 10000, 3600000};

		return pyrate_redis_bucket_new(rates, nrates, &o, e);
	}
	if (strcmp(opt.kind, "postgres") == 0)
	{
		pyrate_pg_options o = {opt.dsn, name, NULL, 10000, PYRATE_PG_FASTPATH};

		return pyrate_pg_bucket_new(&o, e);
	}
	snprintf(e->message, sizeof(e->message), "no per-key buckets for kind %s", opt.kind);
	return NULL;
}

static bool
is_shared_kind(void)
{
	return strcmp(opt.kind, "memory") == 0 || strcmp(opt.kind, "multiprocess") == 0;
}

static void
note_error(const pyrate_error *e)
{
	if (__atomic_fetch_add(&shared->errors, 1, __ATOMIC_RELAXED) == 0)
		snprintf(shared->first_error, sizeof(shared->first_error), "%s: %s",
				 pyrate_code_name(e->code), e->message);
}

typedef struct worker
{
	int			id;
	int64_t		until;
} worker;

static void *
worker_main(void *arg)
{
	worker	   *w = arg;
	unsigned	seed = opt.seed * 7919 + w->id * 104729 + getpid();
	pyrate_bucket *pg = NULL;	/* postgres: one connection, unbound */
	pyrate_bucket **own = NULL; /* sqlite, redis: a bucket per key, opened on first use */
	pyrate_error e = {0};
	char		name[128];
	int			i;

	if (strcmp(opt.kind, "postgres") == 0)
	{
		pyrate_pg_options o = {opt.dsn, NULL, NULL, 10000, PYRATE_PG_FASTPATH};

		if (!(pg = pyrate_pg_bucket_new(&o, &e)))
		{
			note_error(&e);
			return NULL;
		}
	}
	else if (!is_shared_kind())
		own = calloc(opt.keys + 1, sizeof(*own));

	for (i = 0; tap_ms() < w->until && !(opt.stop_file && access(opt.stop_file, F_OK) == 0); i++)
	{
		int			k = rand_r(&seed) % 2 ? 0 : 1 + rand_r(&seed) % opt.keys;
		pyrate_item item = {name, PYRATE_NOW, 1 + rand_r(&seed) % 3};
		pyrate_bucket *b;
		pyrate_decision d;

		key_name(k, name, sizeof(name));
		if (pg)
			b = pg;
		else if (own)
		{
			if (!own[k] && !(own[k] = open_bucket(k, &e)))
			{
				note_error(&e);
				usleep(10000);
				continue;
			}
			b = own[k];
		}
		else
			b = shared_buckets[k];
		__atomic_fetch_add(&shared->attempts, 1, __ATOMIC_RELAXED);
		if (pyrate_put(b, &item, &d, &e) != PYRATE_OK)
		{
			note_error(&e);
			usleep(10000);
		}
		else if (d.acquired)
			__atomic_fetch_add(&shared->admitted[k], item.weight, __ATOMIC_RELAXED);
		/* 1..3 ms between attempts: every target gets its share of 2 cores */
		usleep(1000 + rand_r(&seed) % 2000);
	}
	if (own)
	{
		for (i = 0; i <= opt.keys; i++)
			pyrate_close(own[i]);
		free(own);
	}
	pyrate_close(pg);
	return NULL;
}

static void
run_threads(int first, int n)
{
	pthread_t	t[MAX_THREADS];
	worker		w[MAX_THREADS];
	int64_t		until = tap_ms() + (int64_t) opt.seconds * 1000;
	int			i;

	for (i = 0; i < n; i++)
	{
		w[i] = (worker) {first + i, until};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
}

/*
 * The most units a client putting weight 1 as early as it can gets within
 * span ms: greedy is optimal for one-unit items, and weights of 2 or 3 can
 * only do worse.
 */
static int64_t
max_allowed(int64_t span)
{
	pyrate_error e;
	pyrate_bucket *b = pyrate_memory_bucket_new(rates, nrates, &e);
	pyrate_item item = {"max", 0, 1};
	pyrate_decision d;
	int64_t		n = 0;
	int64_t		t;

	if (!b)
		return -1;
	for (t = 0; t <= span; t++)
	{
		item.timestamp = t;
		while (pyrate_put(b, &item, &d, NULL) == PYRATE_OK && d.acquired)
			n++;
	}
	pyrate_close(b);
	return n;
}

/* Oldest and newest timestamps of a bucket holding units units. */
static bool
span_of(pyrate_bucket *b, int64_t units, int64_t *oldest, int64_t *newest)
{
	pyrate_item item;
	bool		found;

	if (units <= 0 || pyrate_peek(b, 0, &found, &item, NULL) != PYRATE_OK || !found)
		return false;
	*newest = item.timestamp;
	if (pyrate_peek(b, units - 1, &found, &item, NULL) != PYRATE_OK || !found)
		return false;
	*oldest = item.timestamp;
	return true;
}

static int
do_soak(void)
{
	int			nproc = opt.procs;
	size_t		size = sizeof(counters) + (opt.keys + 1) * sizeof(int64_t);
	int64_t		stored_total = 0;
	int64_t		admitted_total = 0;
	int64_t		allowed_keys = 0;
	int64_t		stored_keys = 0;
	int			bad_windows = 0;
	int			bad_counts = 0;
	int			unreadable = 0;
	char		first_bad[512] = "";
	pyrate_error e = {0};
	int			k;
	int64_t		t0;

	if (nproc <= 0)
		nproc = strcmp(opt.kind, "memory") == 0 ? 1 : 4;
	if (strcmp(opt.kind, "memory") == 0)
		nproc = 1;				/* an in-process bucket: threads only */
	if (opt.clients % nproc != 0 || opt.clients / nproc > MAX_THREADS)
	{
		fprintf(stderr, "soak: --clients must be a multiple of the process count (%d)\n", nproc);
		return 2;
	}
	shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 2;
	memset(shared, 0, size);

	if (is_shared_kind())
	{
		shared_buckets = calloc(opt.keys + 1, sizeof(*shared_buckets));
		for (k = 0; k <= opt.keys; k++)
		{
			shared_buckets[k] = strcmp(opt.kind, "memory") == 0
				? pyrate_memory_bucket_new(rates, nrates, &e)
				: pyrate_multiprocess_bucket_new(rates, nrates, 16384, &e);
			if (!shared_buckets[k])
			{
				fprintf(stderr, "soak: %s\n", e.message);
				return 2;
			}
		}
	}
	else if (strcmp(opt.kind, "postgres") == 0)
	{
		pyrate_pg_options o = {opt.dsn, NULL, NULL, 10000, PYRATE_PG_FASTPATH};
		pyrate_bucket *pg = pyrate_pg_bucket_new(&o, &e);
		char		pattern[128];

		snprintf(pattern, sizeof(pattern), "%s:*", opt.prefix);
		if (!pg || pyrate_pg_define(pg, pattern, rates, nrates, opt.storage, false, &e) != PYRATE_OK)
		{
			fprintf(stderr, "soak: define %s: %s\n", pattern, e.message);
			return 2;
		}
		pyrate_close(pg);
	}

	t0 = tap_ms();
	if (nproc == 1)
		run_threads(0, opt.clients);
	else
	{
		int			p;

		for (p = 0; p < nproc; p++)
		{
			pid_t		pid = fork();

			if (pid == 0)
			{
				run_threads(p * (opt.clients / nproc), opt.clients / nproc);
				_exit(0);
			}
			if (pid < 0)
				return 2;
		}
		while (wait(NULL) > 0 || errno == EINTR)
			;
	}
	printf("# %s: %d clients (%d processes) for %.1f s: %" PRId64 " attempts, %" PRId64 " errors%s%s\n",
		   label, opt.clients, nproc, (tap_ms() - t0) / 1000.0, shared->attempts, shared->errors,
		   shared->errors ? "; first: " : "", shared->first_error);
	if (opt.expect == EXPECT_EQUAL)
		CHECK(shared->errors == 0, "%s: no errors under load", label);

	/* read every key back through the library */
	for (k = 0; k <= opt.keys; k++)
	{
		pyrate_bucket *b = is_shared_kind() ? shared_buckets[k] : open_bucket(k, &e);
		int64_t		units = 0;
		int64_t		count = -1;
		int64_t		admitted = shared->admitted[k];
		char		why[256] = "";
		int64_t		oldest,
					newest;
		bool		found = true;
		pyrate_item item;
		bool		windows;
		bool		counts;

		if (!b || pyrate_count(b, &count, &e) != PYRATE_OK)
		{
			unreadable++;
			if (!first_bad[0])
				snprintf(first_bad, sizeof(first_bad), "key %d unreadable: %s", k, e.message);
			pyrate_close(b);
			continue;
		}
		windows = tap_windows_ok(b, rates, nrates, &units, why, sizeof(why));
		/* conformance-style: the units walked are the count, nothing past it */
		windows = windows && units == count &&
			pyrate_peek(b, count, &found, &item, NULL) == PYRATE_OK && !found;
		counts = opt.expect == EXPECT_NONE ||
			(opt.expect == EXPECT_EQUAL ? units == admitted : units >= admitted);
		if (!windows)
		{
			bad_windows++;
			if (!first_bad[0])
				snprintf(first_bad, sizeof(first_bad), "key %d: %s (walked %" PRId64 " of %" PRId64 " units)",
						 k, why[0] ? why : "peek past the end found an item", units, count);
		}
		if (!counts)
		{
			bad_counts++;
			if (!first_bad[0])
				snprintf(first_bad, sizeof(first_bad), "key %d: %" PRId64 " units stored, %" PRId64 " admitted",
						 k, units, admitted);
		}
		stored_total += units;
		admitted_total += admitted;
		if (span_of(b, units, &oldest, &newest))
		{
			int64_t		allowed = max_allowed(newest - oldest);

			if (k == 0)
			{
				double		ratio = allowed > 0 ? (double) units / allowed : 0;

				printf("# %s hot key: %" PRId64 " units stored (%" PRId64 " admitted), at most %" PRId64
					   " allowed over its %.1f s: %.0f%%\n",
					   label, units, admitted, allowed, (newest - oldest) / 1000.0, ratio * 100);
				CHECK(units <= allowed, "%s: the hot key holds no more than its rates allow over its span", label);
				if (opt.expect == EXPECT_EQUAL)
					CHECK(ratio >= opt.min_ratio, "%s: the hot key was kept busy: %.0f%% of the most allowed (>= %.0f%%)",
						  label, ratio * 100, opt.min_ratio * 100);
			}
			else
			{
				allowed_keys += allowed;
				stored_keys += units;
			}
		}
		if (!is_shared_kind())
			pyrate_close(b);
	}
	printf("# %s: %d keys: %" PRId64 " units stored, %" PRId64 " admitted; the other keys hold %" PRId64
		   " units of at most %" PRId64 " allowed over their spans\n",
		   label, opt.keys + 1, stored_total, admitted_total,
		   stored_keys, allowed_keys);
	CHECK(unreadable == 0, "%s: every key reads back%s%s", label, unreadable ? ": " : "", unreadable ? first_bad : "");
	CHECK(bad_windows == 0, "%s: no window of any rate of any key holds more than its limit (%d keys bad)%s%s",
		  label, bad_windows, bad_windows ? ": " : "", bad_windows ? first_bad : "");
	if (opt.expect != EXPECT_NONE)
		CHECK(bad_counts == 0, "%s: stored units %s admitted units on every key (%d keys differ)%s%s",
			  label, opt.expect == EXPECT_EQUAL ? "equal" : "are at least", bad_counts,
			  bad_counts ? ": " : "", bad_counts ? first_bad : "");
	if (shared_buckets)
		for (k = 0; k <= opt.keys; k++)
			pyrate_close(shared_buckets[k]);
	return tap_end();
}

/* ---- clock stepping back ----------------------------------------------- */

typedef struct naive_item
{
	int64_t		ts;
	int64_t		weight;
} naive_item;

static int
do_clock(void)
{
	pyrate_error e = {0};
	pyrate_bucket *b;
	naive_item *log = calloc(opt.trace, sizeof(*log));
	int			n = 0;
	unsigned	seed = opt.seed;
	int64_t		ts = 1000000;
	int64_t		newest = INT64_MIN;
	int64_t		units = 0;
	int			mismatches = 0;
	int			backs = 0;
	int			admitted_back = 0;
	char		first[256] = "";
	char		name[128];
	int			i;

	key_name(0, name, sizeof(name));
	if (strcmp(opt.kind, "memory") == 0)
		b = pyrate_memory_bucket_new(rates, nrates, &e);
	else if (strcmp(opt.kind, "multiprocess") == 0)
		b = pyrate_multiprocess_bucket_new(rates, nrates, opt.trace + 1, &e);
	else
	{
		if (strcmp(opt.kind, "postgres") == 0)
		{
			pyrate_pg_options o = {opt.dsn, NULL, NULL, 10000, PYRATE_PG_FASTPATH};
			pyrate_bucket *pg = pyrate_pg_bucket_new(&o, &e);

			if (!pg || pyrate_pg_define(pg, name, rates, nrates, opt.storage, false, &e) != PYRATE_OK)
			{
				fprintf(stderr, "clock: define: %s\n", e.message);
				return 2;
			}
			pyrate_close(pg);
		}
		b = open_bucket(0, &e);
	}
	if (!b || pyrate_flush(b, &e) != PYRATE_OK)
	{
		fprintf(stderr, "clock: %s\n", e.message);
		return 2;
	}

	for (i = 0; i < opt.trace; i++)
	{
		pyrate_item item = {name, 0, 1 + rand_r(&seed) % 3};
		pyrate_decision d;
		bool		want = true;
		int			fail = -1;
		int			r;
		bool		back = rand_r(&seed) % 10 == 0;

		/* forward 0..300 ms, or one step back of up to 1 s */
		ts += back ? -(1 + rand_r(&seed) % 1000) : rand_r(&seed) % 301;
		backs += back;
		item.timestamp = ts;
		/* the model: decide at the given time over everything stored */
		for (r = 0; r < nrates && want; r++)
		{
			int64_t		used = 0;
			int			j;

			for (j = n - 1; j >= 0 && log[j].ts >= ts - rates[r].interval; j--)
				used += log[j].weight;
			if (used + item.weight > rates[r].limit)
			{
				want = false;
				fail = r;
			}
		}
		if (pyrate_put(b, &item, &d, &e) != PYRATE_OK)
		{
			CHECK(false, "%s: put %d at %" PRId64 ": %s", label, i, ts, e.message);
			break;
		}
		if (d.acquired != want ||
			(!want && (d.failing_rate.limit != rates[fail].limit || d.failing_rate.interval != rates[fail].interval)))
		{
			if (!mismatches++)
				snprintf(first, sizeof(first), "put %d (ts %" PRId64 ", weight %" PRId64 ", newest %" PRId64
						 "): %s by %" PRId64 "/%" PRId64 ", the model says %s",
						 i, ts, item.weight, newest, d.acquired ? "admitted" : "rejected",
						 d.failing_rate.limit, d.failing_rate.interval, want ? "admitted" : "rejected");
		}
		if (want)
		{
			if (ts < newest)
				admitted_back++;
			newest = ts > newest ? ts : newest;
			log[n++] = (naive_item) {newest, item.weight};
			units += item.weight;
		}
	}
	printf("# %s: %d puts, %d steps back, %d items admitted, %d of them older than the newest\n",
		   label, opt.trace, backs, n, admitted_back);
	CHECK(backs > 0 && admitted_back > 0, "%s: the trace steps back (%d times) and items older than the newest are admitted (%d)",
		  label, backs, admitted_back);
	CHECK(mismatches == 0, "%s: every decision with a clock stepping back matches the model (%d differ)%s%s",
		  label, mismatches, mismatches ? ": " : "", first);
	{
		char		why[256] = "";
		int64_t		got = 0;
		pyrate_item top;
		bool		found = false;
		bool		same = true;
		int64_t		unit = 0;

		CHECK(tap_windows_ok(b, rates, nrates, &got, why, sizeof(why)) && got == units,
			  "%s: the log is in order and no window holds more than its limit (%" PRId64 " of %" PRId64 " units) %s",
			  label, got, units, why);
		pyrate_peek(b, 0, &found, &top, NULL);
		CHECK(found && top.timestamp == newest,
			  "%s: the newest stored item carries the newest timestamp (%" PRId64 ", want %" PRId64 ")",
			  label, found ? top.timestamp : -1, newest);
		/* item by item: items that came in with an older time were stored as the newest */
		for (i = n - 1; i >= 0 && same; i--)
		{
			pyrate_item it;

			if (pyrate_peek(b, unit, &found, &it, NULL) != PYRATE_OK || !found ||
				it.timestamp != log[i].ts || it.weight != log[i].weight)
				same = false;
			unit += log[i].weight;
		}
		CHECK(same, "%s: every stored item is where the model put it (never reordered)", label);
	}
	pyrate_flush(b, NULL);
	pyrate_close(b);
	free(log);
	return tap_end();
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: soak soak|clock --kind memory|multiprocess|sqlite|redis|postgres\n"
			"         [--storage table|memory] [--dsn DSN] [--redis HOST:PORT] [--sqlite PATH]\n"
			"         [--prefix P] [--seconds N] [--stop-file PATH] [--clients N] [--procs N] [--keys N]\n"
			"         [--expect equal|atleast|none] [--min-ratio R] [--trace N] [--seed N]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static struct option longopts[] = {
		{"kind", required_argument, NULL, 'k'},
		{"storage", required_argument, NULL, 's'},
		{"dsn", required_argument, NULL, 'd'},
		{"redis", required_argument, NULL, 'r'},
		{"sqlite", required_argument, NULL, 'q'},
		{"prefix", required_argument, NULL, 'p'},
		{"seconds", required_argument, NULL, 'S'},
		{"stop-file", required_argument, NULL, 'F'},
		{"clients", required_argument, NULL, 'c'},
		{"procs", required_argument, NULL, 'P'},
		{"keys", required_argument, NULL, 'K'},
		{"expect", required_argument, NULL, 'e'},
		{"min-ratio", required_argument, NULL, 'm'},
		{"trace", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'x'},
		{NULL, 0, NULL, 0}
	};
	int			c;

	if (argc < 2)
		usage();
	opt.mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'k': opt.kind = optarg; break;
			case 's': opt.storage = optarg; break;
			case 'd': opt.dsn = optarg; break;
			case 'r':
				{
					static char host[128];
					const char *colon = strrchr(optarg, ':');

					if (!colon || (size_t) (colon - optarg) >= sizeof(host))
						usage();
					memcpy(host, optarg, colon - optarg);
					opt.redis_host = host;
					opt.redis_port = atoi(colon + 1);
					break;
				}
			case 'q': opt.sqlite = optarg; break;
			case 'p': opt.prefix = optarg; break;
			case 'S': opt.seconds = atoi(optarg); break;
			case 'F': opt.stop_file = optarg; break;
			case 'c': opt.clients = atoi(optarg); break;
			case 'P': opt.procs = atoi(optarg); break;
			case 'K': opt.keys = atoi(optarg); break;
			case 'm': opt.min_ratio = atof(optarg); break;
			case 't': opt.trace = atoi(optarg); break;
			case 'x': opt.seed = (unsigned) atoi(optarg); break;
			case 'e':
				if (strcmp(optarg, "equal") == 0)
					opt.expect = EXPECT_EQUAL;
				else if (strcmp(optarg, "atleast") == 0)
					opt.expect = EXPECT_ATLEAST;
				else if (strcmp(optarg, "none") == 0)
					opt.expect = EXPECT_NONE;
				else
					usage();
				break;
			default: usage();
		}
	}
	if (!opt.kind || opt.keys < 1 || opt.keys > MAX_KEYS || opt.clients < 1 || opt.trace < 1)
		usage();
	if (strcmp(opt.kind, "postgres") == 0)
		snprintf(label, sizeof(label), "postgres/%s", opt.storage);
	else
		snprintf(label, sizeof(label), "%s", opt.kind);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(opt.mode, "soak") == 0)
		return do_soak();
	if (strcmp(opt.mode, "clock") == 0)
		return do_clock();
	usage();
	return 2;
}
