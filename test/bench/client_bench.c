/*
 * client_bench.c — libpyrate's speed, one thread, one connection.
 *
 *   client_bench memory SECONDS
 *   client_bench redis HOST PORT SECONDS
 *   client_bench postgres DSN SECONDS [fastpath|unnamed|prepared]
 *   client_bench sqlite PATH SECONDS    (the SQLite bucket, and its floor: a
 *                                         bare insert, one BEGIN IMMEDIATE
 *                                         transaction each, same pragmas)
 *   client_bench call SECONDS           (the floor of the in-memory bucket:
 *                                         an empty function called through a
 *                                         pointer, as a bucket's ops are)
 *
 * Prints "<what> <ops/s>" lines (memory: "<what> <median> <min> <max>" over
 * rounds); test/bench/client_bench.sh sets them beside the baselines
 * measured in the same run.  What each memory case measures:
 *
 *   baseline_clock_mutex            clock_gettime(CLOCK_MONOTONIC) + an
 *                                   uncontended pthread mutex, nothing else
 *   memory_put_admitted_now         pyrate_put(), item timestamp PYRATE_NOW:
 *   memory_put_rejected_now         the bucket reads CLOCK_MONOTONIC per put
 *   memory_put_admitted_stamped     pyrate_put(), caller-stamped items (one
 *   memory_put_rejected_stamped     clock read by the caller per 1000 puts,
 *   memory_put_3rates_stamped       counted in the time); no clock in the bucket
 *   memory_limiter_try_acquire_now  pyrate_try_acquire(limiter, "m", 1,
 *                                   non-blocking) on Limiter(in-memory bucket):
 *                                   one CLOCK_MONOTONIC read per call
 */
#include "pyrate.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* puts through b for about seconds; ops/s, or -1 on an error */
static double
run_puts(pyrate_bucket *b, const char *name, double seconds, long batch)
{
	pyrate_item item = {name, PYRATE_NOW, 1};
	pyrate_decision d;
	pyrate_error e;
	double		start = now_s();
	double		t;
	long		n = 0;

	do
	{
		long		i;

		for (i = 0; i < batch; i++)
			if (pyrate_put(b, &item, &d, &e) != PYRATE_OK)
			{
				fprintf(stderr, "put: %s\n", e.message);
				return -1;
			}
		n += batch;
		t = now_s() - start;
	} while (t < seconds);
	return n / t;
}

/*
 * the same with caller-stamped items: the caller reads CLOCK_MONOTONIC once
 * per 1000 puts (as a loop handling a batch of events stamped on arrival
 * would) and every put carries that timestamp, so the bucket reads no clock
 */
static double
run_puts_stamped(pyrate_bucket *b, const char *name, double seconds)
{
	pyrate_item item = {name, 0, 1};
	pyrate_decision d;
	pyrate_error e;
	double		start = now_s();
	double		t;
	long		n = 0;

	do
	{
		long		i;

		item.timestamp = (int64_t) (now_s() * 1000);
		for (i = 0; i < 1000; i++)
			if (pyrate_put(b, &item, &d, &e) != PYRATE_OK)
			{
				fprintf(stderr, "put: %s\n", e.message);
				return -1;
			}
		n += 1000;
		t = now_s() - start;
	} while (t < seconds);
	return n / t;
}

static double
run_limiter(pyrate_limiter *l, const char *name, double seconds, long batch)
{
	pyrate_error e;
	double		start = now_s();
	double		t;
	long		n = 0;

	do
	{
		long		i;

		for (i = 0; i < batch; i++)
		{
			bool		ok;

			if (pyrate_try_acquire(l, name, 1, false, -1, &ok, NULL, &e) != PYRATE_OK)
			{
				fprintf(stderr, "try_acquire: %s\n", e.message);
				return -1;
			}
		}
		n += batch;
		t = now_s() - start;
	} while (t < seconds);
	return n / t;
}

/* what any thread-safe bucket stamping its own items costs at least: a clock read and a mutex */
static double
baseline_mutex_clock(double seconds)
{
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	volatile long sink = 0;
	double		start = now_s();
	double		t;
	long		n = 0;

	do
	{
		long		i;

		for (i = 0; i < 100000; i++)
		{
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			pthread_mutex_lock(&m);
			sink += ts.tv_nsec;
			pthread_mutex_unlock(&m);
		}
		n += 100000;
		t = now_s() - start;
	} while (t < seconds);
	return n / t;
}

/* ---- the in-memory cases ---------------------------------------------- */

/* an hour-long window of a billion: every put is admitted and stored */
static const pyrate_rate admit = {1000000000, PYRATE_HOUR};
/* 10 per second: nearly every put is rejected */
static const pyrate_rate reject = {10, PYRATE_SECOND};
/* three rates, every put admitted and stored */
static const pyrate_rate three[3] = {
	{1000000000, PYRATE_SECOND}, {2000000000, PYRATE_MINUTE}, {2147483647, PYRATE_HOUR}
};

typedef enum
{
	BASELINE, PUT_ADMITTED_NOW, PUT_REJECTED_NOW, PUT_ADMITTED_STAMPED, PUT_REJECTED_STAMPED,
	PUT_3RATES_STAMPED, LIMITER_NOW, NCASES
} mem_case;

static const char *const case_names[NCASES] = {
	"baseline_clock_mutex",
	"memory_put_admitted_now",
	"memory_put_rejected_now",
	"memory_put_admitted_stamped",
	"memory_put_rejected_stamped",
	"memory_put_3rates_stamped",
	"memory_limiter_try_acquire_now",
};

/* one round of one case on a fresh bucket (a fresh, empty log each round) */
static double
mem_round(mem_case c, double secs)
{
	pyrate_error e;
	pyrate_bucket *b;
	pyrate_limiter *l;
	double		r;

	switch (c)
	{
		case BASELINE:
			return baseline_mutex_clock(secs);
		case LIMITER_NOW:
			b = pyrate_memory_bucket_new(&admit, 1, &e);
			l = pyrate_limiter_new_bucket(b, NULL, &e);
			r = run_limiter(l, "m", secs, 100000);
			pyrate_limiter_free(l);
			return r;
		default:
			break;
	}
	if (c == PUT_3RATES_STAMPED)
		b = pyrate_memory_bucket_new(three, 3, &e);
	else
		b = pyrate_memory_bucket_new(c == PUT_REJECTED_NOW || c == PUT_REJECTED_STAMPED ? &reject : &admit, 1, &e);
	if (!b)
	{
		fprintf(stderr, "%s\n", e.message);
		return -1;
	}
	if (c == PUT_ADMITTED_NOW || c == PUT_REJECTED_NOW)
		r = run_puts(b, "m", secs, 100000);
	else
		r = run_puts_stamped(b, "m", secs);
	pyrate_close(b);
	return r;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/*
 * ROUNDS rounds of every case, interleaved (so that a noisy neighbour
 * slows every case alike), each round secs / ROUNDS long; prints each case's
 * median round, and its slowest and fastest.
 */
#define ROUNDS 5

static void
bench_memory(double secs)
{
	double		r[NCASES][ROUNDS];
	int			c,
				k;

	for (k = 0; k < ROUNDS; k++)
		for (c = 0; c < NCASES; c++)
			r[c][k] = mem_round((mem_case) c, secs / ROUNDS);
	for (c = 0; c < NCASES; c++)
	{
		qsort(r[c], ROUNDS, sizeof(double), cmp_double);
		printf("%s %.0f %.0f %.0f\n", case_names[c], r[c][ROUNDS / 2], r[c][0], r[c][ROUNDS - 1]);
	}
}

/* a bare insert per transaction, as the SQLite bucket's put is shaped */
static double
sqlite_floor(const char *path, double seconds)
{
	sqlite3    *db;
	sqlite3_stmt *begin,
			   *ins,
			   *commit;
	double		start;
	double		t;
	long		n = 0;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
		sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
					 "CREATE TABLE IF NOT EXISTS floor (ts INTEGER, weight INTEGER)",
					 NULL, NULL, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "INSERT INTO floor VALUES (?, 1)", -1, &ins, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK)
	{
		fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
		return -1;
	}
	start = now_s();
	do
	{
		int			i;

		for (i = 0; i < 100; i++, n++)
		{
			sqlite3_step(begin);
			sqlite3_reset(begin);
			sqlite3_bind_int64(ins, 1, n);
			sqlite3_step(ins);
			sqlite3_reset(ins);
			sqlite3_step(commit);
			sqlite3_reset(commit);
		}
	} while ((t = now_s() - start) < seconds);
	sqlite3_finalize(begin);
	sqlite3_finalize(ins);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	return n / t;
}

static int	calls;

static void __attribute__((noinline))
empty_op(void)
{
	calls++;
	__asm__ volatile ("":::"memory");
}

static void (*volatile op_ptr) (void) = empty_op;

/* the floor of an in-memory put: a call through a function pointer */
static double
call_floor(double seconds)
{
	double		start = now_s();
	double		t;
	long		n = 0;

	do
	{
		int			i;

		for (i = 0; i < 100000; i++, n++)
			op_ptr();
	} while ((t = now_s() - start) < seconds);
	return n / t;
}

int
main(int argc, char **argv)
{
	pyrate_error e;
	pyrate_bucket *b = NULL;
	double		secs;

	if (argc >= 3 && strcmp(argv[1], "memory") == 0)
	{
		bench_memory(atof(argv[2]));
		return 0;
	}
	if (argc >= 5 && strcmp(argv[1], "redis") == 0)
	{
		pyrate_rate r = {1000000000, PYRATE_HOUR};
		pyrate_redis_options o = {argv[2], atoi(argv[3]), NULL, NULL, "pyrate:bench", 0, 0};

		secs = atof(argv[4]);
		if (!(b = pyrate_redis_bucket_new(&r, 1, &o, &e)))
			return fprintf(stderr, "%s\n", e.message), 1;
		pyrate_flush(b, NULL);
		printf("redis_put %.0f\n", run_puts(b, "r", secs, 1000));
		pyrate_flush(b, NULL);
		pyrate_close(b);
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "postgres") == 0)
	{
		static const char *const modes[3] = {"fastpath", "unnamed", "prepared"};
		pyrate_pg_options o = {argv[2], "bench:1", NULL, 0, PYRATE_PG_FASTPATH};
		pyrate_rate r = {1000000000, PYRATE_HOUR};

		if (argc > 4)
			for (o.protocol = PYRATE_PG_FASTPATH; o.protocol <= PYRATE_PG_PREPARED; o.protocol++)
				if (strcmp(argv[4], modes[o.protocol]) == 0)
					break;
		if (o.protocol > PYRATE_PG_PREPARED)
			return fprintf(stderr, "unknown mode %s\n", argv[4]), 1;
		secs = atof(argv[3]);
		if (!(b = pyrate_pg_bucket_new(&o, &e)) ||
			pyrate_pg_define(b, "bench:*", &r, 1, "memory", false, &e) != PYRATE_OK)
			return fprintf(stderr, "%s\n", e.message), 1;
		run_puts(b, NULL, 0.5, 100);
		printf("postgres_memory_put_%s %.0f\n", modes[o.protocol], run_puts(b, NULL, secs, 100));
		pyrate_pg_dispose(b, "bench:1", NULL, NULL);
		pyrate_close(b);
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "sqlite") == 0)
	{
		pyrate_rate r = {1000000000, PYRATE_HOUR};
		pyrate_sqlite_options o = {argv[2], NULL, false, false, 0};
		char		floor_path[4096];

		secs = atof(argv[3]);
		snprintf(floor_path, sizeof(floor_path), "%s.floor", argv[2]);
		printf("sqlite_bare_insert %.0f\n", sqlite_floor(floor_path, secs));
		if (!(b = pyrate_sqlite_bucket_new(&r, 1, &o, &e)))
			return fprintf(stderr, "%s\n", e.message), 1;
		printf("sqlite_put %.0f\n", run_puts(b, "s", secs, 100));
		pyrate_close(b);
		return 0;
	}
	if (argc >= 3 && strcmp(argv[1], "call") == 0)
	{
		printf("bare_call %.0f\n", call_floor(atof(argv[2])));
		return 0;
	}
	fprintf(stderr, "usage: client_bench memory SECONDS | redis HOST PORT SECONDS | postgres DSN SECONDS [fastpath|unnamed|prepared]"
			" | sqlite PATH SECONDS | call SECONDS\n");
	return 2;
}
