/*
 * client_bench.c — libpyrate's speed, one thread, one connection.
 *
 *   client_bench memory SECONDS
 *   client_bench redis HOST PORT SECONDS
 *   client_bench postgres DSN SECONDS [prepared]
 *
 * Prints "<what> <ops/s>" lines; test/bench/client_bench.sh sets them beside
 * the baselines measured in the same run.
 */
#include "pyrate.h"

#include <pthread.h>
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

/* what any thread-safe bucket costs at least: a clock read and a mutex */
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

		for (i = 0; i < 1000000; i++)
		{
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			pthread_mutex_lock(&m);
			sink += ts.tv_nsec;
			pthread_mutex_unlock(&m);
		}
		n += 1000000;
		t = now_s() - start;
	} while (t < seconds);
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
		/* an hour-long window of a billion: every put is admitted and stored */
		pyrate_rate admit = {1000000000, PYRATE_HOUR};
		/* 10 per second: nearly every put is rejected */
		pyrate_rate reject = {10, PYRATE_SECOND};
		pyrate_limiter *l;

		secs = atof(argv[2]);
		printf("baseline_clock_mutex %.0f\n", baseline_mutex_clock(secs));
		b = pyrate_memory_bucket_new(&admit, 1, &e);
		printf("memory_put_admitted %.0f\n", run_puts(b, "m", secs, 1000000));
		pyrate_close(b);
		b = pyrate_memory_bucket_new(&reject, 1, &e);
		printf("memory_put_rejected %.0f\n", run_puts(b, "m", secs, 1000000));
		pyrate_close(b);
		b = pyrate_memory_bucket_new(&admit, 1, &e);
		l = pyrate_limiter_new_bucket(b, NULL, &e);
		printf("memory_limiter_try_acquire %.0f\n", run_limiter(l, "m", secs, 1000000));
		pyrate_limiter_free(l);
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
		bool		prepared = argc > 4 && strcmp(argv[4], "prepared") == 0;
		pyrate_pg_options o = {argv[2], "bench:1", NULL, 0, prepared};
		pyrate_rate r = {1000000000, PYRATE_HOUR};

		secs = atof(argv[3]);
		if (!(b = pyrate_pg_bucket_new(&o, &e)) ||
			pyrate_pg_define(b, "bench:*", &r, 1, "memory", false, &e) != PYRATE_OK)
			return fprintf(stderr, "%s\n", e.message), 1;
		run_puts(b, NULL, 0.5, 100);
		printf("postgres_memory_put%s %.0f\n", prepared ? "_prepared" : "", run_puts(b, NULL, secs, 100));
		pyrate_pg_dispose(b, "bench:1", NULL, NULL);
		pyrate_close(b);
		return 0;
	}
	fprintf(stderr, "usage: client_bench memory SECONDS | redis HOST PORT SECONDS | postgres DSN SECONDS [prepared]\n");
	return 2;
}
