/*
 * common.c — errors, rates, clocks and the AbstractBucket methods that
 * dispatch to a bucket's ops.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* text of n bytes at dst (n >= len): cut a multibyte character the end split */
static void
cut_at_character(char *dst, size_t len)
{
	size_t		end = len;

	/* back to the lead byte of the last character, then drop it unless it is whole */
	while (end > 0 && ((unsigned char) dst[end - 1] & 0xC0) == 0x80)
		end--;
	if (end > 0 && (unsigned char) dst[end - 1] >= 0xC0)
	{
		unsigned char lead = (unsigned char) dst[end - 1];
		size_t		need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;

		if (len - (end - 1) < need)
			dst[end - 1] = '\0';
	}
}

void
pyr_set_text(char *dst, size_t size, const char *src)
{
	size_t		len;

	if (!src)
		src = "";
	len = strlen(src);
	if (len < size)
	{
		memcpy(dst, src, len + 1);
		return;
	}
	memcpy(dst, src, size - 1);
	dst[size - 1] = '\0';
	cut_at_character(dst, size - 1);
}

int
pyr_fail(pyrate_error *err, int code, const char *fmt, ...)
{
	if (err)
	{
		va_list		ap;
		int			len;

		err->code = code;
		va_start(ap, fmt);
		len = vsnprintf(err->message, sizeof(err->message), fmt, ap);
		va_end(ap);
		if (len >= (int) sizeof(err->message))
			cut_at_character(err->message, sizeof(err->message) - 1);
		err->sqlstate[0] = '\0';
		err->detail[0] = '\0';
		err->hint[0] = '\0';
	}
	return code;
}

int
pyr_forward(pyrate_error *err, const pyrate_error *e, int code)
{
	if (err)
	{
		*err = *e;
		err->code = code;
	}
	return code;
}

const char *
pyrate_code_name(int code)
{
	static const char *const names[] = {
		"PYRATE_OK", "PYRATE_EINVAL", "PYRATE_ENOMEM", "PYRATE_EBACKEND",
		"PYRATE_ETIMEOUT", "PYRATE_ENOTFOUND", "PYRATE_ESERVER", "PYRATE_EFULL",
		"PYRATE_EUNSUPPORTED", "PYRATE_ESYSTEM"
	};

	if (code < 0 || (size_t) code >= sizeof(names) / sizeof(names[0]))
		return "PYRATE_UNKNOWN";
	return names[code];
}

int64_t
pyr_realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
pyr_sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
pyr_bad_weight(int64_t weight, pyrate_error *err)
{
	if (weight < 0)
		return pyr_fail(err, PYRATE_EINVAL, "weight must not be negative (got %lld)", (long long) weight);
	if (weight > PYR_MAX_LIMIT)
		return pyr_fail(err, PYRATE_EINVAL, "weight %lld exceeds the largest limit %lld",
						(long long) weight, (long long) PYR_MAX_LIMIT);
	return PYRATE_OK;
}

/* ---- rates ------------------------------------------------------------ */

int
pyrate_rate_parse(const char *text, pyrate_rate *out, pyrate_error *err)
{
	char		msg[PYR_MSG_LEN];

	if (!text || !out)
		return pyr_fail(err, PYRATE_EINVAL, "rate text is NULL");
	if (!pyr_rate_parse(text, (pyr_rate *) out, msg, sizeof(msg)))
		return pyr_fail(err, PYRATE_EINVAL, "%s", msg);
	return PYRATE_OK;
}

void
pyrate_rate_format(const pyrate_rate *rate, char *buf, size_t buflen)
{
	pyr_rate_format((const pyr_rate *) rate, buf, buflen);
}

int64_t
pyrate_duration(const char *name)
{
	return name ? pyr_duration(name) : -1;
}

void
pyrate_duration_readable(int64_t ms, char *buf, size_t buflen)
{
	pyr_duration_readable(ms, buf, buflen);
}

int
pyrate_rates_validate(pyrate_rate *rates, int n, pyrate_error *err)
{
	char		msg[PYR_MSG_LEN];

	if (!rates && n > 0)
		return pyr_fail(err, PYRATE_EINVAL, "rates is NULL");
	if (pyr_rates_validate((pyr_rate *) rates, n, msg, sizeof(msg)) != PYR_RATES_OK)
		return pyr_fail(err, PYRATE_EINVAL, "%s", msg);
	return PYRATE_OK;
}

/* ---- clocks ---------------------------------------------------------- */

static int
monotonic_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	(void) clock;
	(void) err;
	*ms = pyr_monotonic_ms();
	return PYRATE_OK;
}

static int
time_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	(void) clock;
	(void) err;
	*ms = pyr_realtime_ms();
	return PYRATE_OK;
}

static pyrate_clock monotonic_clock = {monotonic_now, NULL};
static pyrate_clock time_clock = {time_now, NULL};

pyrate_clock *
pyrate_clock_monotonic(void)
{
	return &monotonic_clock;
}

pyrate_clock *
pyrate_clock_time(void)
{
	return &time_clock;
}

int
pyrate_clock_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	if (!clock)
	{
		*ms = PYRATE_NOW;
		return PYRATE_OK;
	}
	return clock->now(clock, ms, err);
}

void
pyrate_clock_free(pyrate_clock *clock)
{
	if (clock && clock->free)
		clock->free(clock);
}

/* ---- buckets ----------------------------------------------------------- */

int
pyrate_bucket_init(pyrate_bucket *b, const pyrate_bucket_ops *ops,
				   const pyrate_rate *rates, int nrates, pyrate_error *err)
{
	if (!b || !ops || !ops->put || !ops->waiting || !ops->leak || !ops->flush ||
		!ops->count || !ops->peek || !ops->now || !ops->close || !ops->lock != !ops->unlock)
		return pyr_fail(err, PYRATE_EINVAL, "bucket ops: put, waiting, leak, flush, count, peek, now "
						"and close are required, lock and unlock go together");
	if (nrates < 0 || nrates > PYRATE_MAX_RATES || (nrates > 0 && !rates))
		return pyr_fail(err, PYRATE_EINVAL, "a bucket takes 1 to %d rates", PYRATE_MAX_RATES);
	memset(b, 0, sizeof(*b));
	b->ops = ops;
	if (nrates > 0)
	{
		memcpy(b->rates, rates, nrates * sizeof(pyrate_rate));
		if (pyrate_rates_validate(b->rates, nrates, err) != PYRATE_OK)
			return PYRATE_EINVAL;
	}
	b->nrates = nrates;
	return PYRATE_OK;
}

/*
 * A timestamp as the core log takes it: one outside PYR_MIN_TS .. PYR_MAX_TS
 * is clamped into that range before any bucket sees it, so that every kind
 * judges it alike.
 */
static int64_t
clamp_ts(int64_t ts)
{
	if (ts == PYRATE_NOW)
		return ts;
	return ts < PYR_MIN_TS ? PYR_MIN_TS : ts > PYR_MAX_TS ? PYR_MAX_TS : ts;
}

int
pyrate_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	pyrate_decision local;
	pyrate_item at;
	int			rc;

	if (!b || !item)
		return pyr_fail(err, PYRATE_EINVAL, "bucket and item are required");
	if (pyr_check_weight(item->weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	if (!d)
		d = &local;
	at = *item;
	at.timestamp = clamp_ts(item->timestamp);
	d->acquired = false;
	d->failing_rate = (pyrate_rate) {0, 0};
	d->retry_after_ms = -1;
	d->remaining = -1;
	d->timestamp = at.timestamp;
	rc = b->ops->put(b, &at, d, err);
	if (rc != PYRATE_OK)
		return rc;
	if (d->acquired)
	{
		d->retry_after_ms = 0;
		return PYRATE_OK;
	}
	b->failing_rate = d->failing_rate;
	if (d->retry_after_ms == -1 && item->weight > 0)
	{
		/* a bucket of the user's that does not report the wait */
		at.timestamp = d->timestamp;
		rc = b->ops->waiting(b, &at, &d->retry_after_ms, err);
	}
	return rc;
}

int
pyrate_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	pyrate_item at;

	if (!b || !item || !ms)
		return pyr_fail(err, PYRATE_EINVAL, "bucket, item and result are required");
	if (pyr_check_weight(item->weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	at = *item;
	at.timestamp = clamp_ts(item->timestamp);
	return b->ops->waiting(b, &at, ms, err);
}

int
pyrate_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	int64_t		dummy;

	if (!b)
		return pyr_fail(err, PYRATE_EINVAL, "bucket is required");
	return b->ops->leak(b, clamp_ts(now), removed ? removed : &dummy, err);
}

int
pyrate_flush(pyrate_bucket *b, pyrate_error *err)
{
	int			rc;

	if (!b)
		return pyr_fail(err, PYRATE_EINVAL, "bucket is required");
	rc = b->ops->flush(b, err);
	if (rc == PYRATE_OK)
		b->failing_rate = (pyrate_rate) {0, 0};
	return rc;
}

int
pyrate_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	if (!b || !units)
		return pyr_fail(err, PYRATE_EINVAL, "bucket and result are required");
	return b->ops->count(b, units, err);
}

int
pyrate_peek(pyrate_bucket *b, int64_t index, bool *found, pyrate_item *item, pyrate_error *err)
{
	int64_t		ts = 0,
				weight = 0;
	int			rc;

	if (!b || !found || !item)
		return pyr_fail(err, PYRATE_EINVAL, "bucket and results are required");
	*found = false;
	if (index < 0)
		return pyr_fail(err, PYRATE_EINVAL, "peek index must not be negative (got %lld)", (long long) index);
	rc = b->ops->peek(b, index, found, &ts, &weight, err);
	item->name = NULL;
	item->timestamp = *found ? ts : 0;
	item->weight = *found ? weight : 0;
	return rc;
}

int
pyrate_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	if (!b || !ms)
		return pyr_fail(err, PYRATE_EINVAL, "bucket and result are required");
	return b->ops->now(b, ms, err);
}

void
pyrate_close(pyrate_bucket *b)
{
	if (b)
		b->ops->close(b);
}
