/*
 * pyrate_core.h — the pyrate-limiter model in plain C.
 *
 * No PostgreSQL headers: this module is compiled into the extension (the
 * memory engine, and the decision logic of every engine) and into the client
 * library (its in-memory bucket).  Nothing here allocates, prints or aborts.
 *
 * Rates:    parse/format ("5/s", "10/1500ms"), validation of a rate list.
 * Log:      a sliding-window log kept as a ring of (timestamp, cumulative
 *           units) entries; window counts, peek and leak are binary searches.
 * Decision: put/waiting/retry-after/remaining computed once, over a "view"
 *           that any storage can provide (the log itself, or index probes in
 *           the table engine).
 */
#ifndef PYRATE_CORE_H
#define PYRATE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PYR_SECOND  INT64_C(1000)
#define PYR_MINUTE  INT64_C(60000)
#define PYR_HOUR    INT64_C(3600000)
#define PYR_DAY     INT64_C(86400000)
#define PYR_WEEK    INT64_C(604800000)

/* Largest limit a rate may carry (SQL exposes it as int4). */
#define PYR_MAX_LIMIT     INT64_C(2147483647)
/* Largest interval: 100 years of milliseconds, far from int64 overflow. */
#define PYR_MAX_INTERVAL  (INT64_C(36525) * PYR_DAY)
/*
 * Largest weight of one item.  Every entry point (SQL, trigger, client)
 * rejects larger ones; the log also refuses them, so no caller can make
 * "units + weight" overflow: a window holds at most PYR_MAX_LIMIT units and
 * a log at most 2^31 entries of at most PYR_MAX_WEIGHT units each.
 */
#define PYR_MAX_WEIGHT    PYR_MAX_LIMIT
/*
 * Timestamps are milliseconds since the Unix epoch, from 1970-01-01 to
 * 9999-12-31.  The log clamps anything outside into that range, so
 * "ts - interval" and "ts + wait" stay far from int64 overflow.
 */
#define PYR_MIN_TS        INT64_C(0)
#define PYR_MAX_TS        INT64_C(253402300799999)
/* Rates per bucket. */
#define PYR_MAX_RATES     32
/* Room for any formatted rate, reason or readable duration. */
#define PYR_MSG_LEN       256

typedef struct pyr_rate
{
	int64_t		limit;			/* units admitted per interval, >= 1 */
	int64_t		interval;		/* milliseconds, >= 1 */
} pyr_rate;

/* ---- rates --------------------------------------------------------- */

/*
 * Parse "<limit>/<interval>", interval being "<n><unit>" or "<unit>" with
 * unit one of ms, s, m, h, d, w, or a bare number of milliseconds.
 * Returns true on success; on failure writes the reason into err.
 */
bool		pyr_rate_parse(const char *text, pyr_rate *out, char *err, size_t errlen);

/* Canonical text: the largest unit that divides the interval ("5/1s"). */
void		pyr_rate_format(const pyr_rate *rate, char *buf, size_t buflen);

/* Duration names SECOND, MINUTE, HOUR, DAY, WEEK (any case); -1 if unknown. */
int64_t		pyr_duration(const char *name);

/* Duration.readable: "1.5s", "2.0h", "500ms". */
void		pyr_duration_readable(int64_t ms, char *buf, size_t buflen);

typedef enum pyr_rates_check
{
	PYR_RATES_OK = 0,
	PYR_RATES_EMPTY,
	PYR_RATES_TOO_MANY,
	PYR_RATES_BAD_LIMIT,
	PYR_RATES_BAD_INTERVAL,
	PYR_RATES_INTERVALS,		/* intervals do not strictly increase */
	PYR_RATES_LIMITS,			/* limits do not strictly increase */
	PYR_RATES_DENSITY			/* limit/interval increases */
} pyr_rates_check;

/*
 * Sort rates by interval (stable) and check the rate-list rules.  On failure
 * err says which rule failed and names the offending rates.
 */
pyr_rates_check pyr_rates_validate(pyr_rate *rates, int n, char *err, size_t errlen);

/* ---- the sliding-window log ---------------------------------------- */

typedef struct pyr_entry
{
	int64_t		ts;				/* stored timestamp, non-decreasing */
	int64_t		cum;			/* units put since the log began, inclusive */
} pyr_entry;

/*
 * A ring of entries.  Entry i (0 = oldest) lives at e[(head + i) & (cap - 1)].
 * Its weight is cum(i) - cum(i - 1), cum(-1) being base.  The caller owns the
 * memory (malloc, or a block in shared memory) and grows it with
 * pyr_log_move when pyr_log_push reports the ring full.
 */
typedef struct pyr_log
{
	uint32_t	cap;			/* entries, a power of two */
	uint32_t	head;
	uint32_t	len;
	uint32_t	reserved;
	int64_t		base;			/* cumulative units before the oldest entry */
	pyr_entry	e[];
} pyr_log;

size_t		pyr_log_size(uint32_t cap);
void		pyr_log_init(pyr_log *log, uint32_t cap);
/* Copy src into dst (initialised with a capacity >= src->len). */
/* (cum values are relative to base: a log rebases itself long before they
 * could overflow, so only differences of them mean anything.) */
void		pyr_log_move(pyr_log *dst, const pyr_log *src);

/* Units stored. */
int64_t		pyr_log_count(const pyr_log *log);
/* The oldest item's timestamp; false when the log is empty. */
bool		pyr_log_oldest(const pyr_log *log, int64_t *ts);
/* Units whose timestamp is >= since. */
int64_t		pyr_log_since(const pyr_log *log, int64_t since);
/* Item holding unit index (0 = newest unit); false past the end. */
bool		pyr_log_peek(const pyr_log *log, int64_t index, int64_t *ts, int64_t *weight);
/*
 * Append an item.  A timestamp older than the newest one is stored as the
 * newest (a clock stepping back never breaks the order); one outside
 * PYR_MIN_TS .. PYR_MAX_TS is clamped into it.  Returns false, changing
 * nothing, when the ring is full or the weight is outside 0 .. PYR_MAX_WEIGHT.
 */
bool		pyr_log_push(pyr_log *log, int64_t ts, int64_t weight);
/* Remove items with timestamp < before; returns the units removed. */
int64_t		pyr_log_leak(pyr_log *log, int64_t before);
void		pyr_log_flush(pyr_log *log);

/* ---- bounded storage (slots) ---------------------------------------- */

/*
 * A definition with slots => n keeps its smallest rate's window exact and
 * merges older entries into coarse ones: an entry counts as late as its
 * newest unit (merging keeps the newer entry's timestamp and cumulative
 * count), so no window of the true clock ever holds more than its limit.
 *
 * Levels, at a time now: an entry stamped at or after now - interval[0] is
 * at level 0 and never merged; one older than now - interval[j - 1] but not
 * older than now - interval[j] is at level j, whose cells are width[j] ms
 * (about interval[j] / n, each a multiple of the level below it, so cells
 * nest); one older than every window is at level nrates, one cell.  Two
 * neighbouring entries at the same level >= 1 and in the same cell merge.
 * A level only grows with time, so a coarse entry's units all lie within
 * one cell of its level, and a rate j counts at most width[j] <=
 * interval[j] / n ms of units from before its window: it admits at least
 * n / (n + 1) of its limit.
 */
#define PYR_MAX_SLOTS 1000

typedef struct pyr_slots
{
	int			n;				/* slots per rate; 0: exact (never merge) */
	int			nrates;
	int64_t		interval[PYR_MAX_RATES];
	int64_t		width[PYR_MAX_RATES];	/* width[j], j = 1 .. nrates - 1 */
	/*
	 * Entries older than the smallest window after a compaction, at most:
	 * one per cell each level can span, and one beyond every window.
	 */
	int64_t		bound;
} pyr_slots;

/* rates validated and sorted; n in 1 .. PYR_MAX_SLOTS, or 0 for exact */
void		pyr_slots_init(pyr_slots *s, const pyr_rate *rates, int nrates, int n);
/* Whether the entry stamped older_ts merges into its newer neighbour at now. */
bool		pyr_slots_merge(const pyr_slots *s, int64_t now, int64_t older_ts, int64_t newer_ts);
/*
 * Whether a put that takes the cumulative count from cum_before to cum_after
 * should compact: once every bound units, so a compaction's cost (reading
 * the entries older than the smallest window) is spread over the puts, and
 * the log keeps at most the smallest rate's limit + 2 * bound + 1 entries.
 */
bool		pyr_slots_due(const pyr_slots *s, int64_t cum_before, int64_t cum_after);
/*
 * Merge the entries of log that may merge at now (the newest timestamp the
 * bucket has stored).  Counts, the newest entry and every entry of the
 * smallest window are unchanged; an entry never holds more than
 * PYR_MAX_WEIGHT units.  Returns the entries removed.
 */
uint32_t	pyr_log_compact(pyr_log *log, const pyr_slots *s, int64_t now);
/* Entries stored (each holds one or more units). */
uint32_t	pyr_log_entries(const pyr_log *log);

/* ---- decisions ------------------------------------------------------ */

/*
 * What a storage must answer for a decision.  The log answers natively; the
 * table engine answers with index probes.
 */
typedef struct pyr_view
{
	void	   *ctx;
	int64_t		(*since) (void *ctx, int64_t since);
	bool		(*peek) (void *ctx, int64_t index, int64_t *ts, int64_t *weight);

	/*
	 * Optional (NULL when none): a cheap upper bound of since(), or -1 when
	 * there is none.  A rate the bound already admits is not counted
	 * exactly, so the decision's remaining is then a lower bound: leave this
	 * NULL when remaining must be exact.
	 */
	int64_t		(*since_bound) (void *ctx, int64_t since);
} pyr_view;

/* The view of a pyr_log. */
pyr_view	pyr_log_view(const pyr_log *log);

typedef struct pyr_decision
{
	bool		admitted;		/* every rate has room for the weight */
	int			failing;		/* first rejecting rate (sorted order), or -1 */
	int64_t		waiting;		/* AbstractBucket.waiting: 0, -1 or ms */
	int64_t		retry_after;	/* ms until every rate admits; 0; -1 never */
	int64_t		remaining;		/* units left in the tightest window after */
	int			tightest;		/* rate with the fewest units left */
} pyr_decision;

/*
 * Decide whether an item (ts, weight) is admitted under rates (validated,
 * sorted), without storing it.  The remaining count assumes the item is
 * stored when admitted.  A weight outside 0 .. PYR_MAX_WEIGHT is never
 * admitted (it can never fit: waiting and retry_after are -1); a timestamp
 * outside PYR_MIN_TS .. PYR_MAX_TS is clamped into that range.
 */
void		pyr_decide(const pyr_view *view, const pyr_rate *rates, int nrates,
					   int64_t ts, int64_t weight, pyr_decision *d);

/* AbstractBucket.put on a log: decide, then store when admitted. */
typedef enum pyr_put_result
{
	PYR_PUT_REJECTED = 0,
	PYR_PUT_ADMITTED,
	PYR_PUT_FULL				/* admitted, but the ring must grow first */
} pyr_put_result;

/*
 * Unless exact, a rate that every unit of the log leaves room in is not
 * searched: the decision is the same, its remaining a lower bound.
 */
pyr_put_result pyr_log_put(pyr_log *log, const pyr_rate *rates, int nrates,
						   int64_t ts, int64_t weight, bool exact, pyr_decision *d);

#endif							/* PYRATE_CORE_H */
