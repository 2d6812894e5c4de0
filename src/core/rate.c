/*
 * rate.c — rates and durations: parsing, canonical text, validation.
 */
#include "pyrate_core.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct
{
	const char *unit;
	int64_t		ms;
}			units[] = {
	{"w", PYR_WEEK},
	{"d", PYR_DAY},
	{"h", PYR_HOUR},
	{"m", PYR_MINUTE},
	{"s", PYR_SECOND},
	{"ms", 1},
};

#define NUNITS (sizeof(units) / sizeof(units[0]))

/* Parse a non-negative decimal; false on no digits or overflow past max. */
static bool
parse_uint(const char **p, int64_t max, int64_t *out)
{
	const char *s = *p;
	int64_t		v = 0;

	if (!isdigit((unsigned char) *s))
		return false;
	while (isdigit((unsigned char) *s))
	{
		int			d = *s - '0';

		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
		s++;
	}
	*p = s;
	*out = v;
	return true;
}

static void
skip_space(const char **p)
{
	while (isspace((unsigned char) **p))
		(*p)++;
}

bool
pyr_rate_parse(const char *text, pyr_rate *out, char *err, size_t errlen)
{
	const char *p = text;
	int64_t		limit;
	int64_t		count = 1;
	int64_t		unit = 1;
	bool		have_count;

	skip_space(&p);
	if (!parse_uint(&p, PYR_MAX_LIMIT, &limit))
	{
		snprintf(err, errlen, "a rate starts with its limit, a whole number from 1 to %lld",
				 (long long) PYR_MAX_LIMIT);
		return false;
	}
	if (limit < 1)
	{
		snprintf(err, errlen, "the limit must be at least 1");
		return false;
	}
	skip_space(&p);
	if (*p != '/')
	{
		snprintf(err, errlen, "a rate is written limit/interval, as in 5/s, 100/1m or 10/1500ms");
		return false;
	}
	p++;
	skip_space(&p);
	have_count = isdigit((unsigned char) *p);
	if (have_count && !parse_uint(&p, PYR_MAX_INTERVAL, &count))
	{
		snprintf(err, errlen, "the interval is longer than 100 years");
		return false;
	}
	skip_space(&p);
	if (*p != '\0')
	{
		size_t		i;
		size_t		n = 0;

		while (isalpha((unsigned char) p[n]))
			n++;
		for (i = 0; i < NUNITS; i++)
			if (strlen(units[i].unit) == n && strncasecmp(p, units[i].unit, n) == 0)
				break;
		if (n == 0 || i == NUNITS)
		{
			snprintf(err, errlen, "unknown interval unit; use ms, s, m, h, d or w, or a bare number of milliseconds");
			return false;
		}
		unit = units[i].ms;
		p += n;
		skip_space(&p);
		if (*p != '\0')
		{
			snprintf(err, errlen, "unexpected text after the interval");
			return false;
		}
	}
	else if (!have_count)
	{
		snprintf(err, errlen, "the interval is missing, as in 5/s, 100/1m or 10/1500ms");
		return false;
	}
	if (count < 1)
	{
		snprintf(err, errlen, "the interval must be at least 1 ms");
		return false;
	}
	if (count > PYR_MAX_INTERVAL / unit)
	{
		snprintf(err, errlen, "the interval is longer than 100 years");
		return false;
	}
	out->limit = limit;
	out->interval = count * unit;
	return true;
}

void
pyr_rate_format(const pyr_rate *rate, char *buf, size_t buflen)
{
	size_t		i;

	for (i = 0; i < NUNITS; i++)
		if (rate->interval % units[i].ms == 0)
			break;
	snprintf(buf, buflen, "%lld/%lld%s", (long long) rate->limit,
			 (long long) (rate->interval / units[i].ms), units[i].unit);
}

int64_t
pyr_duration(const char *name)
{
	static const struct
	{
		const char *name;
		int64_t		ms;
	}			names[] = {
		{"SECOND", PYR_SECOND},
		{"MINUTE", PYR_MINUTE},
		{"HOUR", PYR_HOUR},
		{"DAY", PYR_DAY},
		{"WEEK", PYR_WEEK},
	};
	size_t		i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i].name) == 0)
			return names[i].ms;
	return -1;
}

void
pyr_duration_readable(int64_t ms, char *buf, size_t buflen)
{
	size_t		i;

	for (i = 0; i + 1 < NUNITS; i++)
		if (ms >= units[i].ms)
		{
			snprintf(buf, buflen, "%.1f%s", (double) ms / (double) units[i].ms,
					 units[i].unit);
			return;
		}
	snprintf(buf, buflen, "%lldms", (long long) ms);
}

/* Density of b greater than density of a: b.limit/b.interval > a.limit/a.interval. */
static bool
denser(const pyr_rate *a, const pyr_rate *b)
{
	return (__int128) b->limit * a->interval > (__int128) a->limit * b->interval;
}

pyr_rates_check
pyr_rates_validate(pyr_rate *rates, int n, char *err, size_t errlen)
{
	char		a[64];
	char		b[64];
	int			i;

	if (n < 1)
	{
		snprintf(err, errlen, "a bucket needs at least one rate");
		return PYR_RATES_EMPTY;
	}
	if (n > PYR_MAX_RATES)
	{
		snprintf(err, errlen, "a bucket takes at most %d rates, not %d", PYR_MAX_RATES, n);
		return PYR_RATES_TOO_MANY;
	}
	for (i = 0; i < n; i++)
	{
		if (rates[i].limit < 1 || rates[i].limit > PYR_MAX_LIMIT)
		{
			snprintf(err, errlen, "limit %lld is out of range: it must be from 1 to %lld",
					 (long long) rates[i].limit, (long long) PYR_MAX_LIMIT);
			return PYR_RATES_BAD_LIMIT;
		}
		if (rates[i].interval < 1 || rates[i].interval > PYR_MAX_INTERVAL)
		{
			snprintf(err, errlen, "interval %lld ms is out of range: it must be from 1 ms to 100 years",
					 (long long) rates[i].interval);
			return PYR_RATES_BAD_INTERVAL;
		}
	}
	/* insertion sort: stable, and n is small */
	for (i = 1; i < n; i++)
	{
		pyr_rate	r = rates[i];
		int			j = i - 1;

		while (j >= 0 && rates[j].interval > r.interval)
		{
			rates[j + 1] = rates[j];
			j--;
		}
		rates[j + 1] = r;
	}
	for (i = 1; i < n; i++)
	{
		const pyr_rate *prev = &rates[i - 1];
		const pyr_rate *cur = &rates[i];

		pyr_rate_format(prev, a, sizeof(a));
		pyr_rate_format(cur, b, sizeof(b));
		if (cur->interval <= prev->interval)
		{
			snprintf(err, errlen, "intervals must strictly increase, but %s and %s share an interval", a, b);
			return PYR_RATES_INTERVALS;
		}
		if (cur->limit <= prev->limit)
		{
			snprintf(err, errlen, "limits must strictly increase with the interval, but %s is followed by %s", a, b);
			return PYR_RATES_LIMITS;
		}
		if (denser(prev, cur))
		{
			snprintf(err, errlen, "limit/interval must not increase with the interval, but %s is followed by the denser %s", a, b);
			return PYR_RATES_DENSITY;
		}
	}
	return PYR_RATES_OK;
}
