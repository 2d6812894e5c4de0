/*
 * swlog.c — the sliding-window log and the decisions made over it.
 *
 * Entries carry cumulative units, so the units in any window are one
 * subtraction after a binary search on the timestamp, and the item holding a
 * given unit is a binary search on the cumulative count.
 */
#include "pyrate_core.h"

#define ENTRY(log, i) ((log)->e[((log)->head + (i)) & ((log)->cap - 1)])

/* cumulative units before logical entry i */
static inline int64_t
cum_before(const pyr_log *log, uint32_t i)
{
	return i == 0 ? log->base : ENTRY(log, i - 1).cum;
}

static inline int64_t
total(const pyr_log *log)
{
	return log->len == 0 ? log->base : ENTRY(log, log->len - 1).cum;
}

/*
 * The first logical entry whose field (ts or cum) is >= key, len when none.
 * Windows usually hold the whole log (the largest rate, leaked) or its
 * newest part (the smaller rates), and peeks ask for units near the newest,
 * so: O(1) when all or none of the log qualifies, else a gallop back from
 * the newest entry and a binary search over what it brackets, O(log k) for
 * the k newest entries that qualify.
 */
#define FIELD(log, i, off) (*(const int64_t *) ((const char *) &ENTRY(log, i) + (off)))

static inline uint32_t
lower_bound(const pyr_log *log, size_t off, int64_t key)
{
	uint32_t	len = log->len;
	uint32_t	lo;
	uint32_t	hi;
	uint32_t	step;

	if (len == 0 || FIELD(log, 0, off) >= key)
		return 0;
	if (FIELD(log, len - 1, off) < key)
		return len;
	/* entry 0 is below key, entry len - 1 is not: the answer is in (0, len - 1] */
	hi = len - 1;
	lo = 0;
	for (step = 1; step < hi; step <<= 1)
	{
		if (FIELD(log, hi - step, off) < key)
		{
			lo = hi - step;
			break;
		}
		hi -= step;
	}
	/* entry lo is below key, entry hi is not: the answer is in (lo, hi] */
	lo++;
	while (lo < hi)
	{
		uint32_t	mid = lo + (hi - lo) / 2;

		if (FIELD(log, mid, off) < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define lower_bound_ts(log, since) lower_bound((log), offsetof(pyr_entry, ts), (since))
#define lower_bound_cum(log, unit) lower_bound((log), offsetof(pyr_entry, cum), (unit))

size_t
pyr_log_size(uint32_t cap)
{
	return offsetof(pyr_log, e) + (size_t) cap * sizeof(pyr_entry);
}

void
pyr_log_init(pyr_log *log, uint32_t cap)
{
	log->cap = cap;
	log->head = 0;
	log->len = 0;
	log->reserved = 0;
	log->base = 0;
}

void
pyr_log_move(pyr_log *dst, const pyr_log *src)
{
	uint32_t	i;

	dst->head = 0;
	dst->len = src->len;
	dst->base = src->base;
	for (i = 0; i < src->len; i++)
		dst->e[i] = ENTRY(src, i);
}

int64_t
pyr_log_count(const pyr_log *log)
{
	return total(log) - log->base;
}

bool
pyr_log_oldest(const pyr_log *log, int64_t *ts)
{
	if (log->len == 0)
		return false;
	*ts = ENTRY(log, 0).ts;
	return true;
}

static inline int64_t
log_since(const pyr_log *log, int64_t since)
{
	return total(log) - cum_before(log, lower_bound_ts(log, since));
}

int64_t
pyr_log_since(const pyr_log *log, int64_t since)
{
	return log_since(log, since);
}

static inline bool
log_peek(const pyr_log *log, int64_t index, int64_t *ts, int64_t *weight)
{
	uint32_t	i;

	if (index < 0 || index >= total(log) - log->base)
		return false;
	/* the unit, numbered 1.. in cumulative space; find the first cum >= it */
	i = lower_bound_cum(log, total(log) - index);
	*ts = ENTRY(log, i).ts;
	*weight = ENTRY(log, i).cum - cum_before(log, i);
	return true;
}

bool
pyr_log_peek(const pyr_log *log, int64_t index, int64_t *ts, int64_t *weight)
{
	return log_peek(log, index, ts, weight);
}

static inline int64_t
clamp_ts(int64_t ts)
{
	return ts < PYR_MIN_TS ? PYR_MIN_TS : ts > PYR_MAX_TS ? PYR_MAX_TS : ts;
}

/*
 * Make cum values start again from 0.  Called when the next push could
 * overflow them: after it the total is the count, below 2^62 (at most 2^31
 * entries of at most PYR_MAX_WEIGHT units), so this runs at most once per
 * 2^62 units put.
 */
static void
rebase(pyr_log *log)
{
	uint32_t	i;

	for (i = 0; i < log->len; i++)
		ENTRY(log, i).cum -= log->base;
	log->base = 0;
}

bool
pyr_log_push(pyr_log *log, int64_t ts, int64_t weight)
{
	pyr_entry  *e;

	if (log->len == log->cap || weight < 0 || weight > PYR_MAX_WEIGHT)
		return false;
	if (total(log) > INT64_MAX - PYR_MAX_WEIGHT)
		rebase(log);
	ts = clamp_ts(ts);
	if (log->len > 0 && ts < ENTRY(log, log->len - 1).ts)
		ts = ENTRY(log, log->len - 1).ts;
	e = &ENTRY(log, log->len);
	e->ts = ts;
	e->cum = total(log) + weight;
	log->len++;
	return true;
}

int64_t
pyr_log_leak(pyr_log *log, int64_t before)
{
	uint32_t	n = lower_bound_ts(log, before);
	int64_t		removed = cum_before(log, n) - log->base;

	log->base = cum_before(log, n);
	log->head = (log->head + n) & (log->cap - 1);
	log->len -= n;
	return removed;
}

void
pyr_log_flush(pyr_log *log)
{
	log->head = 0;
	log->len = 0;
	log->base = 0;
}

static int64_t
view_since(void *ctx, int64_t since)
{
	return pyr_log_since((const pyr_log *) ctx, since);
}

static bool
view_peek(void *ctx, int64_t index, int64_t *ts, int64_t *weight)
{
	return pyr_log_peek((const pyr_log *) ctx, index, ts, weight);
}

pyr_view
pyr_log_view(const pyr_log *log)
{
	pyr_view	v;

	v.ctx = (void *) log;
	v.since = view_since;
	v.peek = view_peek;
	v.since_bound = NULL;
	return v;
}

/*
 * The decision, written once.  With log set it reads the log directly (the
 * put path of the in-process log: no indirect calls, everything inlined);
 * with log NULL it asks the view (any storage).  Both are this one function.
 */
#define VIEW_SINCE(log, view, s) \
	((log) ? log_since((log), (s)) : (view)->since((view)->ctx, (s)))
#define VIEW_PEEK(log, view, i, ts, w) \
	((log) ? log_peek((log), (i), (ts), (w)) : (view)->peek((view)->ctx, (i), (ts), (w)))

/*
 * An upper bound of the units in the window from since, or -1: for a log
 * (unless exact) every unit it holds, read from its newest entry; for a view
 * its since_bound.
 */
static inline int64_t
view_bound(const pyr_log *log, const pyr_view *view, bool exact, int64_t since)
{
	if (log)
		return exact ? -1 : total(log) - log->base;
	return view->since_bound ? view->since_bound(view->ctx, since) : -1;
}

/*
 * A rate whose bound already admits the weight is not counted exactly (for
 * a log: no search of its window), so remaining is then a lower bound.
 */
static inline __attribute__((always_inline)) void
decide(const pyr_log *log, const pyr_view *view, bool exact, const pyr_rate *rates,
	   int nrates, int64_t ts, int64_t weight, pyr_decision *d)
{
	int64_t		used[PYR_MAX_RATES];
	int			i;

	d->admitted = true;
	d->failing = -1;
	d->waiting = 0;
	d->retry_after = 0;
	d->remaining = 0;
	d->tightest = 0;

	if (weight < 0 || weight > PYR_MAX_WEIGHT)
	{
		/* larger than any limit can be: it never fits */
		d->admitted = false;
		d->failing = 0;
		d->waiting = -1;
		d->retry_after = -1;
		return;
	}
	ts = clamp_ts(ts);

	for (i = 0; i < nrates; i++)
	{
		const pyr_rate *r = &rates[i];
		int64_t		w;
		int64_t		bts;
		int64_t		bweight;

		if (weight > 0)
		{
			int64_t		bound = view_bound(log, view, exact, ts - r->interval);

			if (bound >= 0 && bound + weight <= r->limit)
			{
				used[i] = bound;
				continue;
			}
		}
		used[i] = VIEW_SINCE(log, view, ts - r->interval);
		if (weight == 0 || used[i] + weight <= r->limit)
			continue;

		/*
		 * ms until rate r admits weight: the item holding unit (limit -
		 * weight) from the newest must leave the window.
		 */
		if (weight > r->limit)
			w = -1;
		else if (!VIEW_PEEK(log, view, r->limit - weight, &bts, &bweight))
			w = 0;
		else
			w = bts - (ts - r->interval) + 1;
		if (d->admitted)
		{
			d->admitted = false;
			d->failing = i;
			d->waiting = w;
		}
		if (w < 0 || d->retry_after < 0)
			d->retry_after = -1;
		else if (w > d->retry_after)
			d->retry_after = w;
	}
	for (i = 0; i < nrates; i++)
	{
		int64_t		left = rates[i].limit - used[i] - (d->admitted ? weight : 0);

		if (left < 0)
			left = 0;
		if (i == 0 || left < d->remaining)
		{
			d->remaining = left;
			d->tightest = i;
		}
	}
}

void
pyr_decide(const pyr_view *view, const pyr_rate *rates, int nrates,
		   int64_t ts, int64_t weight, pyr_decision *d)
{
	decide(NULL, view, false, rates, nrates, ts, weight, d);
}

pyr_put_result
pyr_log_put(pyr_log *log, const pyr_rate *rates, int nrates,
			int64_t ts, int64_t weight, bool exact, pyr_decision *d)
{
	decide(log, NULL, exact, rates, nrates, ts, weight, d);
	if (!d->admitted)
		return PYR_PUT_REJECTED;
	if (weight == 0)
		return PYR_PUT_ADMITTED;
	return pyr_log_push(log, ts, weight) ? PYR_PUT_ADMITTED : PYR_PUT_FULL;
}

/* ---- bounded storage (slots) ---------------------------------------- */

void
pyr_slots_init(pyr_slots *s, const pyr_rate *rates, int nrates, int n)
{
	int			j;

	s->n = n;
	s->nrates = nrates;
	s->bound = 1;				/* the entry beyond every window */
	for (j = 0; j < nrates; j++)
		s->interval[j] = rates[j].interval;
	s->width[0] = 0;
	for (j = 1; j < nrates && n > 0; j++)
	{
		int64_t		want = rates[j].interval / n;

		if (j == 1)
			s->width[j] = want > 0 ? want : 1;
		else
		{
			/* the largest multiple of the level below that is <= want */
			int64_t		m = want / s->width[j - 1];

			s->width[j] = s->width[j - 1] * (m > 0 ? m : 1);
		}
		s->bound += (rates[j].interval - rates[j - 1].interval - 1) / s->width[j] + 2;
	}
}

/* The entry's level at now: how many windows it is older than. */
static inline int
slot_level(const pyr_slots *s, int64_t now, int64_t ts)
{
	int			lev = 0;

	while (lev < s->nrates && ts < now - s->interval[lev])
		lev++;
	return lev;
}

bool
pyr_slots_merge(const pyr_slots *s, int64_t now, int64_t older_ts, int64_t newer_ts)
{
	int			lev;

	if (s->n <= 0)
		return false;
	lev = slot_level(s, now, newer_ts);
	if (lev == 0 || slot_level(s, now, older_ts) != lev)
		return false;
	if (lev == s->nrates)
		return true;			/* both past every window: one cell */
	/* timestamps are >= PYR_MIN_TS (0): division is floor */
	return older_ts / s->width[lev] == newer_ts / s->width[lev];
}

bool
pyr_slots_due(const pyr_slots *s, int64_t cum_before, int64_t cum_after)
{
	if (s->n <= 0)
		return false;
	/* cum values may be negative after a rebase: compare floors */
	return (cum_before - (cum_before < 0 ? s->bound - 1 : 0)) / s->bound !=
		(cum_after - (cum_after < 0 ? s->bound - 1 : 0)) / s->bound;
}

uint32_t
pyr_log_compact(pyr_log *log, const pyr_slots *s, int64_t now)
{
	uint32_t	old;
	uint32_t	dst;
	uint32_t	i;

	if (s->n <= 0 || s->nrates == 0)
		return 0;
	/* entries [0, old) are older than the smallest window */
	old = lower_bound_ts(log, now - s->interval[0]);
	if (old < 2)
		return 0;
	/*
	 * From the newest old entry down: an entry merges into the entry kept
	 * after it (which keeps its own cum, so it absorbs the units), or is
	 * kept, moved up next to it.
	 */
	dst = old - 1;
	for (i = old - 1; i-- > 0;)
	{
		/* (a merged entry holds at most PYR_MAX_WEIGHT units, as an item does) */
		if (pyr_slots_merge(s, now, ENTRY(log, i).ts, ENTRY(log, dst).ts) &&
			ENTRY(log, dst).cum - cum_before(log, i) <= PYR_MAX_WEIGHT)
			continue;
		dst--;
		if (dst != i)
			ENTRY(log, dst) = ENTRY(log, i);
	}
	/* entries [0, dst) are gone; base (the units before the oldest) stays */
	log->head = (log->head + dst) & (log->cap - 1);
	log->len -= dst;
	return dst;
}

uint32_t
pyr_log_entries(const pyr_log *log)
{
	return log->len;
}
