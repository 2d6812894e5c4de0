/*
 * driver_core.c — replay straight through the algorithm module.
 */
#include "replay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct core_ctx
{
	pyr_rate	rates[PYR_MAX_RATES];
	int			nrates;
	pyr_log    *log;
} core_ctx;

static bool
core_open(void **ctx, const replay_opts *opts, char *err)
{
	core_ctx   *c = calloc(1, sizeof(core_ctx));

	(void) opts;
	if (!c || !(c->log = malloc(pyr_log_size(4))))
	{
		free(c);
		snprintf(err, REPLAY_ERR_LEN, "out of memory");
		return false;
	}
	pyr_log_init(c->log, 4);
	*ctx = c;
	return true;
}

static bool
core_scenario(void *ctx, int id, const pyr_rate *rates, int n, char *err)
{
	core_ctx   *c = ctx;

	(void) id;
	memcpy(c->rates, rates, n * sizeof(pyr_rate));
	c->nrates = n;
	pyr_log_flush(c->log);
	return pyr_rates_validate(c->rates, n, err, REPLAY_ERR_LEN) == PYR_RATES_OK;
}

static bool
core_put(void *ctx, int64_t ts, int64_t weight, bool *admitted, pyr_rate *failing, char *err)
{
	core_ctx   *c = ctx;
	pyr_decision d;
	pyr_put_result r = pyr_log_put(c->log, c->rates, c->nrates, ts, weight, true, &d);

	if (r == PYR_PUT_FULL)
	{
		pyr_log    *bigger = malloc(pyr_log_size(c->log->cap * 2));

		if (!bigger)
		{
			snprintf(err, REPLAY_ERR_LEN, "out of memory");
			return false;
		}
		pyr_log_init(bigger, c->log->cap * 2);
		pyr_log_move(bigger, c->log);
		free(c->log);
		c->log = bigger;
		pyr_log_push(c->log, ts, weight);
	}
	*admitted = d.admitted;
	if (!d.admitted)
		*failing = c->rates[d.failing];
	return true;
}

static bool
core_waiting(void *ctx, int64_t ts, int64_t weight, int64_t *ms, char *err)
{
	core_ctx   *c = ctx;
	pyr_view	v = pyr_log_view(c->log);
	pyr_decision d;

	(void) err;
	pyr_decide(&v, c->rates, c->nrates, ts, weight, &d);
	*ms = d.waiting;
	return true;
}

static bool
core_count(void *ctx, int64_t *units, char *err)
{
	(void) err;
	*units = pyr_log_count(((core_ctx *) ctx)->log);
	return true;
}

static bool
core_peek(void *ctx, int64_t index, bool *found, int64_t *ts, int64_t *weight, char *err)
{
	(void) err;
	*found = pyr_log_peek(((core_ctx *) ctx)->log, index, ts, weight);
	return true;
}

static bool
core_leak(void *ctx, int64_t ts, int64_t *removed, char *err)
{
	core_ctx   *c = ctx;

	(void) err;
	*removed = pyr_log_leak(c->log, ts - c->rates[c->nrates - 1].interval);
	return true;
}

static bool
core_flush(void *ctx, char *err)
{
	(void) err;
	pyr_log_flush(((core_ctx *) ctx)->log);
	return true;
}

static bool
core_invalid(void *ctx, const char *text, bool *rejected, char *err)
{
	pyr_rate	rates[PYR_MAX_RATES];
	int			n = 0;
	const char *p = text;

	(void) ctx;
	while (*p && n < PYR_MAX_RATES)
	{
		char		one[64];
		size_t		len = strcspn(p, ",");

		snprintf(one, sizeof(one), "%.*s", (int) len, p);
		if (!pyr_rate_parse(one, &rates[n++], err, REPLAY_ERR_LEN))
			return false;
		p += len + (p[len] == ',');
	}
	*rejected = pyr_rates_validate(rates, n, err, REPLAY_ERR_LEN) != PYR_RATES_OK;
	return true;
}

static void
core_close(void *ctx)
{
	core_ctx   *c = ctx;

	free(c->log);
	free(c);
}

const replay_driver replay_core_driver = {
	"core", core_open, core_scenario, core_put, core_waiting, core_count,
	core_peek, core_leak, core_flush, core_invalid, core_close
};
