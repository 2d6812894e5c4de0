/*
 * fuzz_log — libFuzzer target: the sliding-window log against the naive
 * model (test/unit/naive.h), driven by the input as a program of puts,
 * peeks, leaks and flushes, with the ring grown and shrunk as an engine
 * would.  Any disagreement aborts.
 */
#include "pyrate_core.h"
#include "naive.h"

#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pyr_log *
resize(pyr_log *log, uint32_t cap)
{
	pyr_log    *other = malloc(pyr_log_size(cap));

	pyr_log_init(other, cap);
	pyr_log_move(other, log);
	free(log);
	return other;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static naive m;
	pyr_rate	rates[3];
	int			nrates;
	pyr_log    *log;
	int64_t		t = 1000000;
	size_t		i;
	char		err[PYR_MSG_LEN];

	if (size < 4)
		return 0;
	/* up to three rates from the first bytes; invalid lists are skipped */
	nrates = 1 + data[0] % 3;
	for (i = 0; i < (size_t) nrates; i++)
	{
		rates[i].limit = 1 + data[1 + i] % 20 + 10 * (int64_t) i;
		rates[i].interval = (int64_t) 5 << (3 * i);
	}
	if (pyr_rates_validate(rates, nrates, err, sizeof(err)) != PYR_RATES_OK)
		return 0;
	m.n = 0;
	log = malloc(pyr_log_size(1));
	pyr_log_init(log, 1);
	for (i = 4; i + 1 < size && m.n < NAIVE_MAX; i += 2)
	{
		uint8_t		op = data[i];
		uint8_t		arg = data[i + 1];

		t += op >> 5;			/* time moves 0..7 ms per step */
		switch (op & 3)
		{
			case 0:
			case 1:
				{
					int64_t		w = arg % 6;
					pyr_decision d;
					int			fail;

					if (arg >= 250)
					{
						/* a hostile weight: never admitted, nothing stored */
						static const int64_t extreme[] = {-1, INT64_MIN, INT64_MAX,
						PYR_MAX_WEIGHT + 1, INT64_MAX - 3, -2};
						int64_t		before = pyr_log_count(log);

						w = extreme[arg - 250];
						if (pyr_log_put(log, rates, nrates, t, w, false, &d) != PYR_PUT_REJECTED ||
							d.waiting != -1 || pyr_log_count(log) != before)
							abort();
						break;
					}
					fail = naive_failing(&m, rates, nrates, t, w);

					/* exact or not (case 0 or 1): the same decision */
					if (pyr_log_put(log, rates, nrates, t, w, (op & 3) == 0, &d) == PYR_PUT_FULL)
					{
						log = resize(log, log->cap * 2);
						if (!pyr_log_push(log, t, w))
							abort();
					}
					if (d.admitted != (fail < 0) || (fail >= 0 && d.failing != fail))
						abort();
					if (fail < 0 && w > 0)
					{
						m.ts[m.n] = t;
						m.w[m.n++] = w;
					}
					break;
				}
			case 2:
				{
					int64_t		ts1 = 0,
								w1 = 0,
								ts2 = 0,
								w2 = 0;
					bool		a = pyr_log_peek(log, arg, &ts1, &w1);
					bool		b = naive_peek(&m, arg, &ts2, &w2);

					if (a != b || ts1 != ts2 || w1 != w2)
						abort();
					break;
				}
			default:
				if (arg == 255)
				{
					pyr_log_flush(log);
					m.n = 0;
				}
				else if (pyr_log_leak(log, t - rates[nrates - 1].interval) !=
						 naive_leak(&m, t - rates[nrates - 1].interval))
					abort();
				if (log->cap > 1 && log->len < log->cap / 4)
					log = resize(log, log->cap / 2);
				break;
		}
		if (pyr_log_count(log) != naive_count(&m))
			abort();
	}
	free(log);
	return 0;
}
