/*
 * naive.h — the sliding-window-log rules the simplest way: items in a plain
 * array, every window counted by scanning.  The reference the algorithm
 * module is checked against (test_core, fuzz_log).
 */
#ifndef PYRATE_NAIVE_H
#define PYRATE_NAIVE_H

#include <stdbool.h>
#include <stdint.h>

#define NAIVE_MAX 4096

typedef struct naive
{
	int64_t		ts[NAIVE_MAX];
	int64_t		w[NAIVE_MAX];
	int			n;
} naive;

static inline int64_t
naive_since(const naive *m, int64_t since)
{
	int64_t		units = 0;
	int			i;

	for (i = 0; i < m->n; i++)
		if (m->ts[i] >= since)
			units += m->w[i];
	return units;
}

static inline bool
naive_peek(const naive *m, int64_t index, int64_t *ts, int64_t *w)
{
	int			i;

	for (i = m->n - 1; i >= 0 && index >= 0; i--)
	{
		if (index < m->w[i])
		{
			*ts = m->ts[i];
			*w = m->w[i];
			return true;
		}
		index -= m->w[i];
	}
	return false;
}

static inline int64_t
naive_count(const naive *m)
{
	return naive_since(m, INT64_MIN);
}

/* Remove items older than before; returns the units removed. */
static inline int64_t
naive_leak(naive *m, int64_t before)
{
	int64_t		removed = 0;
	int			i,
				k = 0;

	for (i = 0; i < m->n; i++)
		if (m->ts[i] < before)
			removed += m->w[i];
		else
		{
			m->ts[k] = m->ts[i];
			m->w[k++] = m->w[i];
		}
	m->n = k;
	return removed;
}

/* Index of the first rate that rejects, -1 when every rate admits. */
static inline int
naive_failing(const naive *m, const pyr_rate *rates, int n, int64_t ts, int64_t w)
{
	int			i;

	if (w == 0)
		return -1;
	for (i = 0; i < n; i++)
		if (naive_since(m, ts - rates[i].interval) + w > rates[i].limit)
			return i;
	return -1;
}

#endif							/* PYRATE_NAIVE_H */
