/*
 * shared.h — checks every bucket kind goes through: the AbstractBucket
 * semantics at explicit timestamps, and threads and processes hammering one
 * bucket with the window invariant checked afterwards.
 */
#ifndef PYRATE_TEST_SHARED_H
#define PYRATE_TEST_SHARED_H

#include "tap.h"

#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static const pyrate_rate rates_3s[2] __attribute__((unused)) = {{3, 1000}, {100, 60000}};

/* the AbstractBucket methods on any bucket, at explicit timestamps */
static inline void
test_bucket_semantics(const char *kind, pyrate_bucket *b)
{
	pyrate_error e = {0};
	pyrate_decision d;
	pyrate_item item = {"x", 1000, 1};
	pyrate_item got;
	bool		found;
	int64_t		n;
	int64_t		ms;
	int			i;

	CHECK_OK(pyrate_flush(b, &e), "flush");
	for (i = 0; i < 3; i++)
		CHECK_OK(pyrate_put(b, &item, &d, &e), "put");
	CHECK(d.acquired && d.remaining == 0, "%s: third of 3/s admitted, 0 remaining (%" PRId64 ")", kind, d.remaining);
	item.timestamp = 1500;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put over the limit");
	CHECK(!d.acquired && d.failing_rate.limit == 3 && d.failing_rate.interval == 1000,
		  "%s: fourth rejected by 3/1s", kind);
	CHECK(d.retry_after_ms == 501, "%s: retry after 501 ms (got %" PRId64 ")", kind, d.retry_after_ms);
	CHECK(b->failing_rate.limit == 3, "%s: failing_rate kept on the bucket", kind);
	CHECK_OK(pyrate_waiting(b, &item, &ms, &e), "waiting");
	CHECK(ms == 501, "%s: waiting 501 (got %" PRId64 ")", kind, ms);
	item.weight = 4;
	CHECK_OK(pyrate_waiting(b, &item, &ms, &e), "waiting, weight 4");
	CHECK(ms == -1, "%s: weight over the limit waits -1", kind);
	item.weight = 0;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put weight 0");
	CHECK(d.acquired, "%s: weight 0 always admitted", kind);
	item.weight = -1;
	CHECK(pyrate_put(b, &item, &d, &e) == PYRATE_EINVAL, "%s: negative weight is an error", kind);
	item.weight = 2;
	item.timestamp = 2001;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put weight 2");
	CHECK(d.acquired, "%s: weight 2 admitted once the window moved", kind);
	CHECK_OK(pyrate_count(b, &n, &e), "count");
	CHECK(n == 5, "%s: count 5 units (got %" PRId64 ")", kind, n);
	CHECK_OK(pyrate_peek(b, 1, &found, &got, &e), "peek 1");
	CHECK(found && got.timestamp == 2001 && got.weight == 2, "%s: unit 1 is in the weight-2 item", kind);
	CHECK_OK(pyrate_peek(b, 2, &found, &got, &e), "peek 2");
	CHECK(found && got.timestamp == 1000 && got.weight == 1, "%s: unit 2 is an older item", kind);
	CHECK_OK(pyrate_peek(b, 5, &found, &got, &e), "peek past the end");
	CHECK(!found, "%s: nothing past the end", kind);
	CHECK(pyrate_peek(b, -1, &found, &got, &e) == PYRATE_EINVAL, "%s: negative peek index", kind);
	/* the largest interval is 60 s: at 61001 the three items of ts 1000 are out */
	CHECK_OK(pyrate_leak(b, 61001, &n, &e), "leak");
	CHECK(n == 3, "%s: leak removes 3 units (got %" PRId64 ")", kind, n);
	CHECK_OK(pyrate_count(b, &n, &e), "count");
	CHECK(n == 2, "%s: 2 units left", kind);
	CHECK_OK(pyrate_flush(b, &e), "flush");
	CHECK_OK(pyrate_count(b, &n, &e), "count");
	CHECK(n == 0 && b->failing_rate.limit == 0, "%s: flush empties and clears failing_rate", kind);
	/* before 1970: clamped to 0 before the bucket sees it, as the core log does */
	item.timestamp = -5000;
	item.weight = 1;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put before 1970");
	CHECK(d.acquired && d.timestamp == 0 && pyrate_peek(b, 0, &found, &got, &e) == PYRATE_OK && found &&
		  got.timestamp == 0, "%s: a timestamp before 1970 is judged and stored at 0", kind);
	pyrate_flush(b, NULL);
	/* the bucket's own clock */
	item.timestamp = PYRATE_NOW;
	item.weight = 1;
	CHECK_OK(pyrate_put(b, &item, &d, &e), "put stamped by the bucket clock");
	CHECK_OK(pyrate_now(b, &ms, &e), "now");
	/* pyrate_acquire does not say the server's stamp; peek shows it */
	if (d.timestamp == PYRATE_NOW && strncmp(kind, "postgres", 8) == 0)
	{
		bool		found;

		pyrate_peek(b, 0, &found, &got, NULL);
		d.timestamp = found ? got.timestamp : PYRATE_NOW;
	}
	CHECK(d.acquired && d.timestamp != PYRATE_NOW && d.timestamp <= ms && ms - d.timestamp < 5000,
		  "%s: item stamped by the bucket's clock", kind);
	pyrate_flush(b, NULL);
}

/* ---- threads and processes on one bucket ------------------------------ */

typedef struct hammer
{
	pyrate_bucket *b;
	int			ms;				/* how long to keep putting */
	int			admitted;
	int			errors;
} hammer;

/* put weights 1..3 for h->ms, over several windows of the busy rates */
static inline void *
hammer_main(void *arg)
{
	hammer	   *h = arg;
	pyrate_item item = {"h", PYRATE_NOW, 1};
	int64_t		until = tap_ms() + h->ms;
	int			i;

	for (i = 0; tap_ms() < until; i++)
	{
		pyrate_decision d;

		item.weight = 1 + i % 3;
		if (pyrate_put(h->b, &item, &d, NULL) != PYRATE_OK)
			h->errors++;
		else if (d.acquired)
			h->admitted += item.weight;
		usleep(100 + (i % 5) * 100);
	}
	return NULL;
}

/* nthreads threads putting into b for ms; returns the units admitted */
static inline int
run_threads(pyrate_bucket *b, int nthreads, int ms, int *errors)
{
	pthread_t	t[16];
	hammer		h[16];
	int			i;
	int			total = 0;

	for (i = 0; i < nthreads; i++)
	{
		h[i] = (hammer) {b, ms, 0, 0};
		pthread_create(&t[i], NULL, hammer_main, &h[i]);
	}
	for (i = 0; i < nthreads; i++)
	{
		pthread_join(t[i], NULL);
		total += h[i].admitted;
		*errors += h[i].errors;
	}
	return total;
}

static const pyrate_rate busy_rates[2] __attribute__((unused)) = {{20, 50}, {150, 1000}};

static inline void
check_shared(const char *kind, pyrate_bucket *b, int admitted, int errors)
{
	char		why[256] = "";
	int64_t		units = 0;

	CHECK(errors == 0, "%s: no errors under contention (%d)", kind, errors);
	CHECK(tap_windows_ok(b, busy_rates, 2, &units, why, sizeof(why)),
		  "%s: no window over its limit %s", kind, why);
	/* 1.3 s of puts: the 150/s rate bound, over 150 units and at most 300 */
	CHECK(units == admitted && admitted > 150 && admitted <= 300,
		  "%s: stored units (%" PRId64 ") = admitted units (%d), 150 < units <= 300", kind, units, admitted);
}

/*
 * nproc forked processes, each with nthreads threads, through a bucket each
 * child opens with open(arg) (NULL: use the inherited one).  The children
 * report admitted units through a pipe.
 */
static inline int
run_processes(pyrate_bucket *inherited, pyrate_bucket *(*open) (void *), void *arg, int nproc,
			  int nthreads, int ms, int *errors)
{
	int			fds[2];
	int			i;
	int			total = 0;

	if (pipe(fds) != 0)
		return -1;
	for (i = 0; i < nproc; i++)
	{
		pid_t		pid = fork();

		if (pid == 0)
		{
			pyrate_bucket *b = open ? open(arg) : inherited;
			int			res[2] = {0, 0};

			close(fds[0]);
			if (b)
				res[0] = run_threads(b, nthreads, ms, &res[1]);
			else
				res[1] = 1;
			if (write(fds[1], res, sizeof(res)) != sizeof(res))
				_exit(1);
			if (open)
				pyrate_close(b);
			_exit(0);
		}
	}
	close(fds[1]);
	for (i = 0; i < nproc; i++)
	{
		int			res[2];

		if (read(fds[0], res, sizeof(res)) == sizeof(res))
		{
			total += res[0];
			*errors += res[1];
		}
		else
			(*errors)++;
	}
	close(fds[0]);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return total;
}

#endif							/* PYRATE_TEST_SHARED_H */
