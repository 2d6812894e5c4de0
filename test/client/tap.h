/*
 * tap.h — the checks of the client tests: one "ok"/"not ok" line per check
 * and a closing "N passed, N failed" line, as the suites count them.
 */
#ifndef PYRATE_TEST_TAP_H
#define PYRATE_TEST_TAP_H

#include "pyrate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int	tap_passed;
static int	tap_failed;

#define CHECK(cond, ...) \
	do { \
		if (cond) { tap_passed++; printf("ok - "); } \
		else { tap_failed++; printf("not ok - [%s:%d] ", __FILE__, __LINE__); } \
		printf(__VA_ARGS__); \
		putchar('\n'); \
		fflush(stdout); \
	} while (0)

/* a call that must succeed, its error in the pyrate_error e of the caller */
#define CHECK_OK(call, what) \
	do { \
		int rc_ = (call); \
		CHECK(rc_ == PYRATE_OK, "%s%s%s", what, rc_ == PYRATE_OK ? "" : ": ", \
			  rc_ == PYRATE_OK ? "" : e.message); \
	} while (0)

/* the same with a formatted description */
#define CHECK_OKF(call, fmt, ...) \
	do { \
		int rc_ = (call); \
		CHECK(rc_ == PYRATE_OK, fmt "%s%s", __VA_ARGS__, rc_ == PYRATE_OK ? "" : ": ", \
			  rc_ == PYRATE_OK ? "" : e.message); \
	} while (0)

static inline int
tap_end(void)
{
	printf("%d passed, %d failed\n", tap_passed, tap_failed);
	return tap_failed == 0 ? 0 : 1;
}

static inline int64_t
tap_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The invariant every bucket must keep: read every stored item back
 * (peek, newest first) and check that at each item's timestamp the units of
 * the window ending there, that item included, fit every rate.
 */
static inline bool
tap_windows_ok(pyrate_bucket *b, const pyrate_rate *rates, int nrates, int64_t *units_out,
			   char *why, size_t whylen)
{
	int64_t		count;
	int64_t    *ts;
	int64_t    *w;
	int64_t		n = 0;
	int64_t		i;
	int64_t		units = 0;
	pyrate_error e;
	bool		ok = true;

	if (pyrate_count(b, &count, &e) != PYRATE_OK)
	{
		snprintf(why, whylen, "count: %.200s", e.message);
		return false;
	}
	ts = malloc((count + 1) * sizeof(int64_t));
	w = malloc((count + 1) * sizeof(int64_t));
	/* peek by unit index: one item per distinct item, oldest last */
	for (i = 0; i < count && ok;)
	{
		pyrate_item item;
		bool		found;

		if (pyrate_peek(b, i, &found, &item, &e) != PYRATE_OK || !found)
		{
			snprintf(why, whylen, "peek %" PRId64 ": %.200s", i, found ? "missing" : e.message);
			ok = false;
			break;
		}
		ts[n] = item.timestamp;
		w[n] = item.weight;
		n++;
		i += item.weight;
		units += item.weight;
	}
	/* items are newest first; walk oldest to newest */
	for (i = n - 1; i >= 0 && ok; i--)
	{
		int			r;

		if (i + 1 < n && ts[i] < ts[i + 1])
		{
			snprintf(why, whylen, "timestamps out of order");
			ok = false;
		}
		for (r = 0; r < nrates && ok; r++)
		{
			int64_t		sum = 0;
			int64_t		j;

			for (j = i; j < n && ts[j] >= ts[i] - rates[r].interval; j++)
				sum += w[j];
			if (sum > rates[r].limit)
			{
				snprintf(why, whylen, "%" PRId64 " units in the window of %" PRId64 "/%" PRId64
						 " ending at %" PRId64, sum, rates[r].limit, rates[r].interval, ts[i]);
				ok = false;
			}
		}
	}
	free(ts);
	free(w);
	if (units_out)
		*units_out = units;
	return ok;
}

#endif							/* PYRATE_TEST_TAP_H */
