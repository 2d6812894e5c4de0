/*
 * test_core — unit tests of the algorithm module (src/core), including a
 * randomized comparison of the log against a naive model of the same rules.
 * Ends with "N passed, N failed".
 */
#include "pyrate_core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	passed;
static int	failed;

#define CHECK(cond, ...) \
	do { \
		if (cond) \
			passed++; \
		else \
		{ \
			failed++; \
			printf("not ok %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__); \
			putchar('\n'); \
		} \
	} while (0)

static void
test_parse_format(void)
{
	static const struct
	{
		const char *in;
		const char *out;
	}			cases[] = {
		{"5/s", "5/1s"}, {"100/1m", "100/1m"}, {"10/1500ms", "10/1500ms"},
		{"1000/h", "1000/1h"}, {"7/2d", "7/2d"}, {"1/w", "1/1w"}, {"10/10", "10/10ms"},
		{"3/60s", "3/1m"}, {" 4 / 2 H ", "4/2h"}, {"2/90000", "2/90s"},
	};
	static const char *bad[] = {"", "5", "5/", "/s", "x/s", "5/x", "0/s", "5/0", "5/s x",
	"-1/s", "5/-1s", "99999999999/s", "5/999999999999999d", "5//s"};
	size_t		i;
	char		buf[64];
	char		err[PYR_MSG_LEN];
	pyr_rate	r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		bool		okp = pyr_rate_parse(cases[i].in, &r, err, sizeof(err));

		if (okp)
			pyr_rate_format(&r, buf, sizeof(buf));
		CHECK(okp && strcmp(buf, cases[i].out) == 0, "parse/format %s", cases[i].in);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!pyr_rate_parse(bad[i], &r, err, sizeof(err)) && err[0] != '\0',
			  "rejects '%s'", bad[i]);
	CHECK(pyr_duration("hour") == PYR_HOUR && pyr_duration("WEEK") == PYR_WEEK &&
		  pyr_duration("year") == -1, "durations");
	pyr_duration_readable(1500, buf, sizeof(buf));
	CHECK(strcmp(buf, "1.5s") == 0, "readable 1500 = %s", buf);
	pyr_duration_readable(42, buf, sizeof(buf));
	CHECK(strcmp(buf, "42ms") == 0, "readable 42 = %s", buf);
}

static void
test_validate(void)
{
	pyr_rate	ok[] = {{1000, PYR_HOUR}, {5, PYR_SECOND}, {100, PYR_MINUTE}};
	pyr_rate	same_interval[] = {{5, 1000}, {6, 1000}};
	pyr_rate	limits[] = {{5, 1000}, {5, 60000}};
	pyr_rate	density[] = {{1, 100}, {20, 1000}};
	pyr_rate	zero[] = {{0, 1000}};
	char		err[PYR_MSG_LEN];

	CHECK(pyr_rates_validate(ok, 3, err, sizeof(err)) == PYR_RATES_OK &&
		  ok[0].interval == PYR_SECOND && ok[2].interval == PYR_HOUR, "sorts a valid list");
	CHECK(pyr_rates_validate(ok, 0, err, sizeof(err)) == PYR_RATES_EMPTY, "empty");
	CHECK(pyr_rates_validate(same_interval, 2, err, sizeof(err)) == PYR_RATES_INTERVALS &&
		  strstr(err, "5/1s") && strstr(err, "6/1s"), "same interval named: %s", err);
	CHECK(pyr_rates_validate(limits, 2, err, sizeof(err)) == PYR_RATES_LIMITS, "limits");
	CHECK(pyr_rates_validate(density, 2, err, sizeof(err)) == PYR_RATES_DENSITY, "density");
	CHECK(pyr_rates_validate(zero, 1, err, sizeof(err)) == PYR_RATES_BAD_LIMIT, "zero limit");
}

#include "naive.h"

/* a log that grows and shrinks like an engine's would */
static pyr_log *
resize(pyr_log *log, uint32_t cap)
{
	pyr_log    *bigger = malloc(pyr_log_size(cap));

	pyr_log_init(bigger, cap);
	pyr_log_move(bigger, log);
	free(log);
	return bigger;
}

static void
test_random(unsigned seed)
{
	pyr_rate	rates[] = {{7, 10}, {15, 100}, {40, 1000}};
	naive	   *m = calloc(1, sizeof(naive));
	pyr_log    *log = malloc(pyr_log_size(2));
	int64_t		t = 1000000;
	int			op;
	int			bad = 0;

	srand(seed);
	pyr_log_init(log, 2);
	for (op = 0; op < 20000 && !bad; op++)
	{
		int			kind = rand() % 10;

		t += rand() % 7;
		if (kind < 6)
		{
			int64_t		w = rand() % 5;
			pyr_decision d;
			pyr_decision fast;
			pyr_log    *copy = malloc(pyr_log_size(log->cap));
			pyr_put_result fr;
			pyr_put_result r;
			int			fail = naive_failing(m, rates, 3, t, w);
			bool		fits = fail < 0;

			/* the same put, not exact: on a copy, before */
			memcpy(copy, log, pyr_log_size(log->cap));
			fr = pyr_log_put(copy, rates, 3, t, w, false, &fast);
			free(copy);
			r = pyr_log_put(log, rates, 3, t, w, true, &d);
			if (fits != d.admitted || (!fits && d.failing != fail))
				bad = printf("op %d: put %" PRId64 " at %" PRId64 ": log %d, model %d\n",
							 op, w, t, d.admitted, fits);
			if (fr != r || fast.admitted != d.admitted || fast.failing != d.failing ||
				fast.waiting != d.waiting || fast.retry_after != d.retry_after ||
				fast.remaining > d.remaining || fast.remaining < 0)
				bad = printf("op %d: the put not exact decided otherwise (remaining %" PRId64
							 " against %" PRId64 ")\n", op, fast.remaining, d.remaining);
			if (r == PYR_PUT_FULL)
			{
				log = resize(log, log->cap * 2);
				pyr_log_push(log, t, w);
			}
			if (fits && w > 0)
			{
				m->ts[m->n] = t;
				m->w[m->n++] = w;
			}
			/* retry_after is exact: rejected one ms before, admitted at it */
			if (!d.admitted && d.retry_after > 0)
			{
				pyr_view	v = pyr_log_view(log);
				pyr_decision later;

				pyr_decide(&v, rates, 3, t + d.retry_after, w, &later);
				if (!later.admitted)
					bad = printf("op %d: not admitted after retry_after\n", op);
				pyr_decide(&v, rates, 3, t + d.retry_after - 1, w, &later);
				if (later.admitted)
					bad = printf("op %d: retry_after %" PRId64 " not the least\n", op, d.retry_after);
			}
		}
		else if (kind < 8)
		{
			int64_t		idx = rand() % 60;
			int64_t		a_ts = 0,
						a_w = 0,
						b_ts = 0,
						b_w = 0;
			bool		a = pyr_log_peek(log, idx, &a_ts, &a_w);
			bool		b = naive_peek(m, idx, &b_ts, &b_w);

			if (a != b || a_ts != b_ts || a_w != b_w)
				bad = printf("op %d: peek %" PRId64 " differs\n", op, idx);
		}
		else
		{
			int64_t		before = t - rates[2].interval;
			int64_t		removed = pyr_log_leak(log, before);
			int64_t		expect = naive_leak(m, before);

			if (removed != expect)
				bad = printf("op %d: leak removed %" PRId64 ", model %" PRId64 "\n", op, removed, expect);
			if (log->len < log->cap / 4 && log->cap > 2)
				log = resize(log, log->cap / 2);
		}
		if (pyr_log_count(log) != naive_count(m))
			bad = printf("op %d: count %" PRId64 " vs %" PRId64 "\n", op,
						 pyr_log_count(log), naive_count(m));
		else
		{
			/* the oldest item: the one holding the oldest unit */
			int64_t		o_ts, m_ts, m_w;
			bool		has = pyr_log_oldest(log, &o_ts);
			bool		m_has = naive_count(m) > 0 && naive_peek(m, naive_count(m) - 1, &m_ts, &m_w);

			if (has != m_has || (has && o_ts != m_ts))
				bad = printf("op %d: oldest differs\n", op);
		}
	}
	CHECK(!bad, "random run with seed %u agrees with the naive model", seed);
	free(log);
	free(m);
}

/*
 * Units of the true history (every admitted item, never leaked, ts sorted)
 * stamped in [from, to]: prefix sums and binary searches.
 */
typedef struct history
{
	int64_t    *ts;
	int64_t    *prefix;			/* prefix[i]: units of items 0 .. i - 1 */
	int			n;
	int			cap;
} history;

static void
history_add(history *h, int64_t ts, int64_t w)
{
	if (h->n + 1 >= h->cap)
	{
		h->cap = h->cap ? h->cap * 2 : 1024;
		h->ts = realloc(h->ts, sizeof(int64_t) * h->cap);
		h->prefix = realloc(h->prefix, sizeof(int64_t) * (h->cap + 1));
	}
	if (h->n == 0)
		h->prefix[0] = 0;
	h->ts[h->n] = ts;
	h->prefix[h->n + 1] = h->prefix[h->n] + w;
	h->n++;
}

static int
history_first(const history *h, int64_t ts)
{
	int			lo = 0,
				hi = h->n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (h->ts[mid] < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int64_t
history_units(const history *h, int64_t from, int64_t to)
{
	return h->prefix[history_first(h, to + 1)] - h->prefix[history_first(h, from)];
}

typedef struct slots_run
{
	int64_t		admitted;		/* units */
	int64_t		puts;
	uint32_t	max_entries;
	int			bad;
} slots_run;

/*
 * A long run of random arrivals, mostly more than the rates admit, on a log
 * with slots => n (0: exact).  Checked at every put: every window of the
 * true clock within its limit; every rejection by rate j justified by more
 * than limit - weight true units within interval + width[j] (so rate j
 * admits at least n / (n + 1) of its limit); the smallest window and the
 * count exact (against a plain model leaked alike); the entries within
 * smallest limit + 2 * bound + 1.
 */
static slots_run
run_slots(const pyr_rate *rates, int nrates, int n, unsigned seed, int puts, int max_gap)
{
	pyr_slots	s;
	pyr_log    *log = malloc(pyr_log_size(2));
	history		h = {0};
	naive	   *m = calloc(1, sizeof(naive));
	int64_t		t = 5000000;
	int64_t		largest = rates[nrates - 1].interval;
	slots_run	r = {0};
	int64_t		leaked = 0;
	int64_t		naive_leaked = 0;
	uint32_t	max_len;
	int			op;

	pyr_slots_init(&s, rates, nrates, n);
	max_len = (uint32_t) (rates[0].limit + 2 * s.bound + 1);
	pyr_log_init(log, 2);
	srand(seed);
	for (op = 0; op < puts && !r.bad; op++)
	{
		int64_t		w = 1 + rand() % 3;
		int64_t		before = pyr_log_count(log) + log->base;
		pyr_decision d;
		pyr_put_result pr;
		int			j;

		t += rand() % (max_gap + 1);
		pr = pyr_log_put(log, rates, nrates, t, w, true, &d);
		if (pr == PYR_PUT_FULL)
		{
			log = resize(log, log->cap * 2);
			pyr_log_push(log, t, w);
		}
		if (d.admitted)
		{
			history_add(&h, t, w);
			r.admitted += w;
			if (m->n < NAIVE_MAX)
			{
				m->ts[m->n] = t;
				m->w[m->n++] = w;
			}
			else
				r.bad = printf("model full\n");
			for (j = 0; j < nrates; j++)
				if (history_units(&h, t - rates[j].interval, t) > rates[j].limit)
					r.bad = printf("seed %u n %d op %d: window %d over its limit\n", seed, n, op, j);
			if (pyr_slots_due(&s, before, before + w))
				pyr_log_compact(log, &s, t);
		}
		else
		{
			j = d.failing;
			if (history_units(&h, t - rates[j].interval - (j > 0 ? s.width[j] : 0), t) + w <= rates[j].limit)
				r.bad = printf("seed %u n %d op %d: rejected by rate %d without cause\n", seed, n, op, j);
		}
		if (n > 0)
			for (j = 1; j < nrates; j++)
				if (s.width[j] > rates[j].interval / n && s.width[j] > 1)
					r.bad = printf("width %d too wide\n", j);
		if (pyr_log_since(log, t - rates[0].interval) != naive_since(m, t - rates[0].interval) ||
			pyr_log_count(log) != r.admitted - leaked || pyr_log_count(log) < naive_count(m))
			r.bad = printf("seed %u n %d op %d: smallest window or count not exact\n", seed, n, op);
		if (log->len > r.max_entries)
			r.max_entries = log->len;
		if (n > 0 && log->len > max_len)
			r.bad = printf("seed %u n %d op %d: %u entries, bound %u\n", seed, n, op, log->len, max_len);
		if (op % 64 == 63)
		{
			/* a coarse entry goes when its newest unit does: no sooner */
			int64_t		gone = pyr_log_leak(log, t - largest);

			leaked += gone;
			naive_leaked += naive_leak(m, t - largest);
			if (leaked > naive_leaked ||
				(n == 0 && pyr_log_count(log) != naive_count(m)))
				r.bad = printf("seed %u op %d: leaks differ\n", seed, op);
			if (log->len < log->cap / 4 && log->cap > 2)
				log = resize(log, log->cap / 2);
		}
	}
	r.puts = op;
	free(h.ts);
	free(h.prefix);
	free(m);
	free(log);
	return r;
}

static void
test_slots(void)
{
	static const struct
	{
		pyr_rate	rates[3];
		int			nrates;
		int			max_gap;
	}			sets[] = {
		{{{10, 100}, {50, 1000}, {200, 10000}}, 3, 12},
		{{{5, 1000}, {100, 60000}}, 2, 150},
		{{{3, 7}, {20, 93}, {150, 1001}}, 3, 3},
		{{{10, 100}}, 1, 20},
	};
	static const int slots[] = {1, 4, 10, 60};
	size_t		i;
	size_t		k;
	unsigned	seed;

	for (i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		for (k = 0; k < sizeof(slots) / sizeof(slots[0]); k++)
		{
			int			bad = 0;
			double		worst = 2;
			uint32_t	exact_entries = 0;
			uint32_t	slot_entries = 0;

			for (seed = 1; seed <= 3; seed++)
			{
				slots_run	x = run_slots(sets[i].rates, sets[i].nrates, 0, seed, 30000, sets[i].max_gap);
				slots_run	c = run_slots(sets[i].rates, sets[i].nrates, slots[k], seed, 30000, sets[i].max_gap);
				double		frac = (double) c.admitted / (double) x.admitted;

				bad |= x.bad | c.bad;
				exact_entries = x.max_entries > exact_entries ? x.max_entries : exact_entries;
				slot_entries = c.max_entries > slot_entries ? c.max_entries : slot_entries;
				if (frac < worst)
					worst = frac;
				/* a long run: the bound holds over it, less one largest window */
				if ((double) c.admitted <
					(double) slots[k] / (slots[k] + 1) * (double) x.admitted -
					(double) sets[i].rates[sets[i].nrates - 1].limit)
					bad = printf("set %zu slots %d seed %u: admitted %" PRId64 " of exact %" PRId64 "\n",
								 i, slots[k], seed, c.admitted, x.admitted);
			}
			printf("# rate set %zu, slots => %d: at most %u entries (exact: %u), admitted %.3f of exact\n",
				   i, slots[k], slot_entries, exact_entries, worst);
			CHECK(!bad, "slots => %d on rate set %zu: never over a limit, rejections justified, "
				  "entries bounded, admitted fraction %.3f >= %d/%d", slots[k], i, worst,
				  slots[k], slots[k] + 1);
		}
}

static void
test_clock_back_and_flush(void)
{
	pyr_log    *log = malloc(pyr_log_size(8));
	pyr_rate	r = {10, 100};
	pyr_decision d;
	int64_t		ts,
				w;

	pyr_log_init(log, 8);
	pyr_log_put(log, &r, 1, 5000, 1, true, &d);
	pyr_log_put(log, &r, 1, 4000, 2, true, &d);
	CHECK(pyr_log_peek(log, 0, &ts, &w) && ts == 5000 && w == 2, "an older timestamp is stored as the newest");
	CHECK(pyr_log_since(log, 4990) == 3, "window counts after a clock step back");
	pyr_log_flush(log);
	CHECK(pyr_log_count(log) == 0 && !pyr_log_peek(log, 0, &ts, &w), "flush empties");
	pyr_log_put(log, &r, 1, 100, 1, true, &d);
	CHECK(pyr_log_peek(log, 0, &ts, &w) && ts == 100, "after flush the clock starts anew");
	pyr_log_put(log, &r, 1, 100, 11, true, &d);
	CHECK(!d.admitted && d.waiting == -1 && d.retry_after == -1, "a weight over the limit never fits");
	pyr_log_put(log, &r, 1, 100, 0, true, &d);
	CHECK(d.admitted && pyr_log_count(log) == 1, "weight 0 stores nothing");
	free(log);
}

/*
 * Extreme weights and timestamps, as a hostile caller would send them: no
 * input gets past a limit, corrupts the count or overflows (UBSan aborts on
 * a signed overflow, so an overflow fails this test).
 */
static void
test_extreme(void)
{
	static const int64_t weights[] = {0, 1, 2, 3, PYR_MAX_WEIGHT - 1, PYR_MAX_WEIGHT,
		PYR_MAX_WEIGHT + 1, INT64_C(1) << 40, INT64_MAX, INT64_MAX - 1, -1, INT64_MIN, INT64_MIN + 1};
	static const int64_t stamps[] = {INT64_MIN, -1, 0, 1, 1000, PYR_MAX_TS - 1, PYR_MAX_TS,
		PYR_MAX_TS + 1, INT64_MAX, INT64_MAX - 1000};
	pyr_rate	rates[2][2] = {{{3, PYR_HOUR}, {0, 0}}, {{PYR_MAX_LIMIT - 1, 1000}, {PYR_MAX_LIMIT, PYR_MAX_INTERVAL}}};
	int			nrates[2] = {1, 2};
	int			k;
	unsigned	seed = 7;
	bool		bad = false;

	for (k = 0; k < 2; k++)
	{
		pyr_log    *log = malloc(pyr_log_size(64));
		int64_t		admitted = 0;
		int			step;

		pyr_log_init(log, 64);
		for (step = 0; step < 20000 && !bad; step++)
		{
			int64_t		w = weights[(seed = seed * 1103515245 + 12345) % (sizeof(weights) / sizeof(weights[0]))];
			int64_t		t = stamps[(seed = seed * 1103515245 + 12345) % (sizeof(stamps) / sizeof(stamps[0]))];
			int64_t		clamped = t < PYR_MIN_TS ? PYR_MIN_TS : t > PYR_MAX_TS ? PYR_MAX_TS : t;
			int64_t		before;
			int64_t		ts,
						iw;
			pyr_decision d;
			pyr_put_result r;
			int			i;

			if (log->len == log->cap)
				admitted -= pyr_log_leak(log, INT64_MAX);
			before = pyr_log_count(log);
			r = pyr_log_put(log, rates[k], nrates[k], t, w, true, &d);
			if ((w < 0 || w > PYR_MAX_WEIGHT) && (d.admitted || d.waiting != -1 || pyr_log_count(log) != before))
			{
				printf("# weight %" PRId64 " at %" PRId64 " was admitted or stored\n", w, t);
				bad = true;
			}
			if (r == PYR_PUT_ADMITTED)
				admitted += w;
			if (pyr_log_count(log) < 0 || pyr_log_count(log) > admitted)
			{
				printf("# count %" PRId64 " after weight %" PRId64 "\n", pyr_log_count(log), w);
				bad = true;
			}
			/* the window ending at the item just stored (a step back stores it as the newest) */
			for (i = 0; r == PYR_PUT_ADMITTED && w > 0 && i < nrates[k]; i++)
				if (pyr_log_peek(log, 0, &ts, &iw) &&
					pyr_log_since(log, ts - rates[k][i].interval) > rates[k][i].limit)
				{
					printf("# window of rate %d over its limit after weight %" PRId64 "\n", i, w);
					bad = true;
				}
			if (step % 97 == 0)
				admitted -= pyr_log_leak(log, clamped - rates[k][nrates[k] - 1].interval);
		}
		free(log);
	}
	CHECK(!bad, "extreme weights and timestamps never pass a limit or corrupt the count");

	/* the cumulative counter restarts from 0 long before it could overflow */
	{
		pyr_log    *log = malloc(pyr_log_size(8));
		pyr_rate	big = {PYR_MAX_LIMIT, 1000};
		pyr_decision d;
		int64_t		ts,
					w;

		pyr_log_init(log, 8);
		log->base = INT64_MAX - 10;
		CHECK(pyr_log_put(log, &big, 1, 5000, 5, true, &d) == PYR_PUT_ADMITTED, "a put near the counter's end");
		CHECK(pyr_log_put(log, &big, 1, 5001, PYR_MAX_WEIGHT - 5, true, &d) == PYR_PUT_ADMITTED &&
			  pyr_log_count(log) == PYR_MAX_WEIGHT, "a put past the counter's end rebases it");
		CHECK(pyr_log_peek(log, 0, &ts, &w) && ts == 5001 && w == PYR_MAX_WEIGHT - 5 &&
			  pyr_log_peek(log, PYR_MAX_WEIGHT - 1, &ts, &w) && ts == 5000 && w == 5,
			  "peek after the rebase");
		CHECK(pyr_log_since(log, 4001) == PYR_MAX_WEIGHT && pyr_log_leak(log, 5001) == 5 &&
			  pyr_log_count(log) == PYR_MAX_WEIGHT - 5, "windows and leak after the rebase");
		CHECK(!pyr_log_push(log, 6000, PYR_MAX_WEIGHT + 1) && !pyr_log_push(log, 6000, -1) &&
			  pyr_log_count(log) == PYR_MAX_WEIGHT - 5, "the log refuses weights out of range");
		free(log);
	}
}

int
main(void)
{
	unsigned	seed;

	test_parse_format();
	test_validate();
	test_clock_back_and_flush();
	test_extreme();
	for (seed = 1; seed <= 20; seed++)
		test_random(seed);
	test_slots();
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
