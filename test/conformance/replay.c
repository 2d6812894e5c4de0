/*
 * replay — replay conformance traces through a bucket and compare.
 *
 *   replay --bucket core|sql [--dsn DSN] [--storage table|memory]
 *          [--sqlite PATH] [--redis HOST:PORT] TRACE...
 *
 * Prints every mismatch with its line, and ends with "N passed, N failed"
 * (one check per trace line).  Exit status 0 only when nothing failed.
 */
#include "replay.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpyrate's buckets, in driver_client.c */
extern const replay_driver replay_memory_driver;
extern const replay_driver replay_multiprocess_driver;
extern const replay_driver replay_sqlite_driver;
extern const replay_driver replay_redis_driver;
extern const replay_driver replay_postgres_driver;

static const replay_driver *const drivers[] = {
	&replay_core_driver,
	&replay_sql_driver,
	&replay_memory_driver,
	&replay_multiprocess_driver,
	&replay_sqlite_driver,
	&replay_redis_driver,
	&replay_postgres_driver,
};

static long passed;
static long failed;

static void
mismatch(const char *path, long line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
mismatch(const char *path, long line, const char *fmt, ...)
{
	va_list		ap;

	failed++;
	if (failed > 50)
		return;
	printf("%s:%ld: ", path, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static bool
parse_i64(const char *s, int64_t *out)
{
	char	   *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno == 0 && end != s && *end == '\0';
}

/* "10/10,20/100" (limit/interval_ms) into rates */
static int
parse_rates(char *text, pyr_rate *rates)
{
	int			n = 0;
	char	   *save = NULL;
	char	   *tok;

	for (tok = strtok_r(text, ",", &save); tok && n < PYR_MAX_RATES;
		 tok = strtok_r(NULL, ",", &save))
	{
		char	   *slash = strchr(tok, '/');

		if (!slash)
			return -1;
		*slash = '\0';
		if (!parse_i64(tok, &rates[n].limit) || !parse_i64(slash + 1, &rates[n].interval))
			return -1;
		n++;
	}
	return n;
}

static bool
replay_file(const replay_driver *d, void *ctx, const char *path)
{
	FILE	   *f = fopen(path, "r");
	char		buf[4096];
	char		err[REPLAY_ERR_LEN];
	long		lineno = 0;
	bool		in_scenario = false;
	bool		skip = false;

	if (!f)
	{
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return false;
	}
	while (fgets(buf, sizeof(buf), f))
	{
		char	   *fields[8] = {NULL};
		int			nf = 0;
		char	   *save = NULL;
		char	   *tok;
		int64_t		a = 0,
					b = 0,
					c = 0;

		lineno++;
		buf[strcspn(buf, "\r\n")] = '\0';
		if (buf[0] == '\0' || buf[0] == '#')
			continue;
		for (tok = strtok_r(buf, "\t", &save); tok && nf < 8; tok = strtok_r(NULL, "\t", &save))
			fields[nf++] = tok;
		err[0] = '\0';

		if (strcmp(fields[0], "scenario") == 0 && nf == 3)
		{
			pyr_rate	rates[PYR_MAX_RATES];
			int			n = parse_rates(fields[2], rates);

			in_scenario = n > 0 && d->scenario(ctx, atoi(fields[1]), rates, n, err);
			skip = !in_scenario;
			if (in_scenario)
				passed++;
			else
				mismatch(path, lineno, "scenario %s: %s", fields[1], err);
			continue;
		}
		if (strcmp(fields[0], "invalid") == 0 && nf == 2)
		{
			bool		rejected = false;

			if (!d->invalid(ctx, fields[1], &rejected, err))
				mismatch(path, lineno, "invalid %s: %s", fields[1], err);
			else if (!rejected)
				mismatch(path, lineno, "rate list %s was accepted, expected rejected", fields[1]);
			else
				passed++;
			continue;
		}
		if (skip)
			continue;			/* the scenario itself already failed */
		if (!in_scenario)
		{
			mismatch(path, lineno, "operation outside a scenario");
			continue;
		}
		if (strcmp(fields[0], "put") == 0 && nf == 5 &&
			parse_i64(fields[1], &a) && parse_i64(fields[2], &b))
		{
			bool		admitted;
			pyr_rate	failing = {0, 0};
			char		got[64];

			if (!d->put(ctx, a, b, &admitted, &failing, err))
			{
				mismatch(path, lineno, "put: %s", err);
				continue;
			}
			if (admitted)
				snprintf(got, sizeof(got), "t\t-");
			else
				snprintf(got, sizeof(got), "f\t%" PRId64 "/%" PRId64, failing.limit, failing.interval);
			snprintf(buf, sizeof(buf), "%s\t%s", fields[3], fields[4]);
			if (strcmp(got, buf) == 0)
				passed++;
			else
				mismatch(path, lineno, "put %" PRId64 " %" PRId64 ": got [%s], expected [%s]", a, b, got, buf);
		}
		else if (strcmp(fields[0], "waiting") == 0 && nf == 4 &&
				 parse_i64(fields[1], &a) && parse_i64(fields[2], &b) && parse_i64(fields[3], &c))
		{
			int64_t		ms;

			if (!d->waiting(ctx, a, b, &ms, err))
				mismatch(path, lineno, "waiting: %s", err);
			else if (ms != c)
				mismatch(path, lineno, "waiting %" PRId64 " %" PRId64 ": got %" PRId64 ", expected %" PRId64, a, b, ms, c);
			else
				passed++;
		}
		else if (strcmp(fields[0], "count") == 0 && nf == 2 && parse_i64(fields[1], &a))
		{
			int64_t		units;

			if (!d->count(ctx, &units, err))
				mismatch(path, lineno, "count: %s", err);
			else if (units != a)
				mismatch(path, lineno, "count: got %" PRId64 ", expected %" PRId64, units, a);
			else
				passed++;
		}
		else if (strcmp(fields[0], "peek") == 0 && nf == 4 && parse_i64(fields[1], &a))
		{
			bool		found;
			int64_t		ts,
						w;
			bool		want_null = strcmp(fields[2], "null") == 0;

			if (!want_null && (!parse_i64(fields[2], &b) || !parse_i64(fields[3], &c)))
				mismatch(path, lineno, "malformed peek line");
			else if (!d->peek(ctx, a, &found, &ts, &w, err))
				mismatch(path, lineno, "peek: %s", err);
			else if (want_null ? found : (!found || ts != b || w != c))
			{
				if (found)
					mismatch(path, lineno, "peek %" PRId64 ": got %" PRId64 " %" PRId64 ", expected %s %s",
							 a, ts, w, fields[2], fields[3]);
				else
					mismatch(path, lineno, "peek %" PRId64 ": got null, expected %s %s", a, fields[2], fields[3]);
			}
			else
				passed++;
		}
		else if (strcmp(fields[0], "leak") == 0 && nf == 3 &&
				 parse_i64(fields[1], &a) && parse_i64(fields[2], &b))
		{
			int64_t		removed;

			if (!d->leak(ctx, a, &removed, err))
				mismatch(path, lineno, "leak: %s", err);
			else if (removed != b)
				mismatch(path, lineno, "leak %" PRId64 ": got %" PRId64 ", expected %" PRId64, a, removed, b);
			else
				passed++;
		}
		else if (strcmp(fields[0], "flush") == 0 && nf == 1)
		{
			if (!d->flush(ctx, err))
				mismatch(path, lineno, "flush: %s", err);
			else
				passed++;
		}
		else
			mismatch(path, lineno, "unknown or malformed trace line");
	}
	fclose(f);
	return true;
}

static void
usage(FILE *out)
{
	size_t		i;

	fprintf(out, "usage: replay --bucket KIND [--dsn DSN] [--storage table|memory]\n"
			"              [--sqlite PATH] [--redis HOST:PORT] TRACE...\n"
			"kinds:");
	for (i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		fprintf(out, " %s", drivers[i]->name);
	fputc('\n', out);
}

int
main(int argc, char **argv)
{
	replay_opts opts = {NULL, "table", NULL, NULL};
	const char *kind = NULL;
	const replay_driver *d = NULL;
	void	   *ctx = NULL;
	char		err[REPLAY_ERR_LEN] = "";
	int			i;
	size_t		k;
	int			ntraces = 0;

	for (i = 1; i < argc; i++)
	{
		const char **slot = NULL;

		if (strcmp(argv[i], "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--bucket") == 0)
			slot = &kind;
		else if (strcmp(argv[i], "--dsn") == 0)
			slot = &opts.dsn;
		else if (strcmp(argv[i], "--storage") == 0)
			slot = &opts.storage;
		else if (strcmp(argv[i], "--sqlite") == 0)
			slot = &opts.sqlite;
		else if (strcmp(argv[i], "--redis") == 0)
			slot = &opts.redis;
		if (slot)
		{
			if (++i == argc)
			{
				usage(stderr);
				return 2;
			}
			*slot = argv[i];
		}
		else
			argv[ntraces++ + 1] = argv[i];
	}
	for (k = 0; kind && k < sizeof(drivers) / sizeof(drivers[0]); k++)
		if (strcmp(drivers[k]->name, kind) == 0)
			d = drivers[k];
	if (!d || ntraces == 0)
	{
		usage(stderr);
		return 2;
	}
	if (!d->open(&ctx, &opts, err))
	{
		fprintf(stderr, "replay: %s: %s\n", d->name, err);
		printf("0 passed, 1 failed\n");
		return 1;
	}
	for (i = 1; i <= ntraces; i++)
		if (!replay_file(d, ctx, argv[i]))
			failed++;
	d->close(ctx);
	if (failed > 50)
		printf("... %ld mismatches in all\n", failed);
	printf("%ld passed, %ld failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
