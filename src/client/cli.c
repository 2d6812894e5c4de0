/*
 * cli.c — the pyrate command: the Postgres path of libpyrate for shell
 * scripts and cron jobs.
 *
 *   pyrate acquire NAME [--weight N] [--wait [--timeout S]] [--fail-open] [--dsn DSN]
 *   pyrate define PATTERN RATE... [--storage memory|table] [--dry-run] [--dsn DSN]
 *   pyrate status [NAME] [--dsn DSN]
 *   pyrate leak [NAME] [--dsn DSN]
 *
 * Exit status: 0 done (admitted), 1 rejected, 2 error: on stderr one line,
 * "pyrate: MESSAGE (SQLSTATE xxxxx)", then the server's DETAIL and HINT
 * lines when it sent them.  Without --dsn, libpq's PG* environment
 * variables choose the database.
 */
#include "pyrate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_REJECTED 1
#define EXIT_ERROR 2

static const char *const usage_main =
"usage: pyrate COMMAND [ARGS] [--dsn DSN]\n"
"\n"
"Rate limiting through the pyrate PostgreSQL extension.\n"
"\n"
"commands:\n"
"  acquire NAME     take a permit from bucket NAME (exit 0 admitted, 1 rejected)\n"
"  define PATTERN RATE...  define the rates of the buckets matching PATTERN\n"
"  status [NAME]    list buckets and their counts\n"
"  leak [NAME]      remove items outside every window\n"
"\n"
"Exit status: 0 success, 1 rejected, 2 error.  The database comes from --dsn\n"
"or the PG* environment variables.  'pyrate COMMAND --help' for more.\n";

static const char *const usage_acquire =
"usage: pyrate acquire NAME [--weight N] [--wait [--timeout SECONDS]] [--fail-open] [--dsn DSN]\n"
"\n"
"Take N permits (default 1) from bucket NAME.  Exits 0 when admitted, 1 when\n"
"rejected (printing the retry-after in ms), 2 on an error.  --wait sleeps\n"
"until admitted or until --timeout passes.  --fail-open admits (exit 0, with\n"
"a warning) when the database cannot be reached; by default that is an error.\n";

static const char *const usage_define =
"usage: pyrate define PATTERN RATE... [--storage memory|table] [--dry-run] [--dsn DSN]\n"
"\n"
"Define the rates of every bucket whose name matches PATTERN ('*' matches any\n"
"run of characters), e.g.  pyrate define 'api:*' 5/s 1000/h\n"
"Rates: LIMIT/INTERVAL with INTERVAL like s, 1m, 1500ms, h, 2d, w.\n";

static const char *const usage_status =
"usage: pyrate status [NAME] [--dsn DSN]\n"
"\n"
"List the buckets (all, or NAME) with their definition, storage and count.\n";

static const char *const usage_leak =
"usage: pyrate leak [NAME] [--dsn DSN]\n"
"\n"
"Remove the items outside every window of bucket NAME, or of every bucket,\n"
"and print how many units were removed.\n";

static int
die(const char *fmt, ...)
__attribute__((format(printf, 1, 2)));

static int
die(const char *fmt, ...)
{
	va_list		ap;

	fprintf(stderr, "pyrate: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_ERROR;
}

/* text on stderr as one line: line breaks and tabs become spaces */
static void
put_flat(const char *text)
{
	const char *c;

	for (c = text; *c; c++)
		fputc(*c == '\n' || *c == '\r' || *c == '\t' ? ' ' : *c, stderr);
}

/*
 * An error as psql shows one: the message on the first line (with the
 * server's SQLSTATE), then its DETAIL and HINT.  A database that cannot be
 * reached gets a hint on how to point the command at one.
 */
static int
fail(const pyrate_error *e)
{
	const char *hint = e->hint;

	if (!hint[0] && !e->sqlstate[0] && (e->code == PYRATE_EBACKEND || e->code == PYRATE_ETIMEOUT))
		hint = "Point pyrate at the server with --dsn 'host=... dbname=...', or with the "
			"environment variables PGHOST, PGPORT, PGDATABASE and PGUSER.";
	fputs("pyrate: ", stderr);
	put_flat(e->message);
	if (e->sqlstate[0])
		fprintf(stderr, " (SQLSTATE %s)", e->sqlstate);
	fputc('\n', stderr);
	if (e->detail[0])
	{
		fputs("DETAIL: ", stderr);
		put_flat(e->detail);
		fputc('\n', stderr);
	}
	if (hint[0])
	{
		fputs("HINT: ", stderr);
		put_flat(hint);
		fputc('\n', stderr);
	}
	return EXIT_ERROR;
}

typedef struct args
{
	const char *dsn;
	const char *pos[PYRATE_MAX_RATES + 2];
	int			npos;
	const char *weight;
	const char *timeout;
	const char *storage;
	bool		wait;
	bool		fail_open;
	bool		dry_run;
	bool		help;
} args;

/* options anywhere after the command; false on an unknown option */
static bool
parse_args(int argc, char **argv, args *a, const char **bad)
{
	int			i;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < argc; i++)
	{
		const char **slot = NULL;

		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			a->help = true;
		else if (strcmp(argv[i], "--wait") == 0)
			a->wait = true;
		else if (strcmp(argv[i], "--fail-open") == 0)
			a->fail_open = true;
		else if (strcmp(argv[i], "--dry-run") == 0)
			a->dry_run = true;
		else if (strcmp(argv[i], "--dsn") == 0)
			slot = &a->dsn;
		else if (strcmp(argv[i], "--weight") == 0)
			slot = &a->weight;
		else if (strcmp(argv[i], "--timeout") == 0)
			slot = &a->timeout;
		else if (strcmp(argv[i], "--storage") == 0)
			slot = &a->storage;
		else if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0')
		{
			*bad = argv[i];
			return false;
		}
		else if (a->npos < (int) (sizeof(a->pos) / sizeof(a->pos[0])))
			a->pos[a->npos++] = argv[i];
		else
		{
			*bad = argv[i];
			return false;
		}
		if (slot)
		{
			if (i + 1 == argc)
			{
				*bad = argv[i];
				return false;
			}
			*slot = argv[++i];
		}
	}
	return true;
}

static pyrate_bucket *
open_bucket(const args *a, pyrate_error *e)
{
	pyrate_pg_options o = {a->dsn, NULL, NULL, 0, PYRATE_PG_FASTPATH};
	const char *t = getenv("PYRATE_TIMEOUT_MS");

	if (t)
		o.timeout_ms = atoi(t);
	return pyrate_pg_bucket_new(&o, e);
}

static int
cmd_acquire(const args *a)
{
	pyrate_limiter_options lo = {-1, a->fail_open ? PYRATE_FAIL_OPEN : PYRATE_FAIL_CLOSED};
	pyrate_acquire_info info;
	pyrate_error e = {0};
	pyrate_bucket *b;
	pyrate_limiter *l;
	long long	weight = 1;
	double		timeout = -1;
	bool		acquired = false;
	char		rate[64] = "";
	char	   *end;
	int			rc;

	if (a->help)
		return fputs(usage_acquire, stdout), 0;
	if (a->npos != 1)
		return die("acquire takes one bucket NAME (see pyrate acquire --help)");
	if (a->storage || a->dry_run)
		return die("acquire takes no --storage or --dry-run");
	if (a->weight)
	{
		errno = 0;
		weight = strtoll(a->weight, &end, 10);
		if (errno || end == a->weight || *end || weight < 0)
			return die("--weight must be a whole number >= 0, not \"%s\"%s", a->weight, "");
	}
	if (a->timeout)
	{
		if (!a->wait)
			return die("--timeout needs --wait");
		errno = 0;
		timeout = strtod(a->timeout, &end);
		if (errno || end == a->timeout || *end || timeout < 0)
			return die("--timeout must be a number of seconds >= 0, not \"%s\"%s", a->timeout, "");
	}
	if (!(b = open_bucket(a, &e)))
		return fail(&e);
	if (!(l = pyrate_limiter_new_bucket(b, &lo, &e)))
	{
		pyrate_close(b);
		return fail(&e);
	}
	rc = pyrate_try_acquire(l, a->pos[0], weight, a->wait, timeout, &acquired, &info, &e);
	pyrate_limiter_free(l);
	if (rc != PYRATE_OK)
		return fail(&e);
	if (info.decision.failing_rate.limit > 0)
		pyrate_rate_format(&info.decision.failing_rate, rate, sizeof(rate));
	switch (info.outcome)
	{
		case PYRATE_ACQUIRED:
			return 0;
		case PYRATE_FAILED_OPEN:
			fprintf(stderr, "pyrate: warning: admitted without a check (--fail-open): %s\n",
					info.backend_error.message);
			return 0;
		case PYRATE_FAILED_CLOSED:
			return fail(&info.backend_error);
		case PYRATE_NEVER:
			printf("rejected: weight %lld can never fit rate %s\n", weight, rate);
			return EXIT_REJECTED;
		case PYRATE_TIMED_OUT:
			printf("rejected: timed out; retry after %lld ms (rate %s)\n",
				   (long long) info.decision.retry_after_ms, rate);
			return EXIT_REJECTED;
		case PYRATE_REJECTED:
			break;
	}
	printf("rejected: retry after %lld ms (rate %s)\n", (long long) info.decision.retry_after_ms, rate);
	return EXIT_REJECTED;
}

static int
cmd_define(const args *a)
{
	pyrate_rate rates[PYRATE_MAX_RATES];
	pyrate_error e = {0};
	pyrate_bucket *b;
	int			i;
	int			rc;

	if (a->help)
		return fputs(usage_define, stdout), 0;
	if (a->npos < 2)
		return die("define takes a PATTERN and at least one RATE (see pyrate define --help)");
	if (a->npos - 1 > PYRATE_MAX_RATES)
		return die("at most 32 rates");
	if (a->weight || a->timeout || a->wait || a->fail_open)
		return die("define takes no --weight, --wait, --timeout or --fail-open");
	if (a->storage && strcmp(a->storage, "memory") != 0 && strcmp(a->storage, "table") != 0)
		return die("--storage is memory or table, not \"%s\"%s", a->storage, "");
	for (i = 1; i < a->npos; i++)
		if (pyrate_rate_parse(a->pos[i], &rates[i - 1], &e) != PYRATE_OK)
			return fail(&e);
	if (pyrate_rates_validate(rates, a->npos - 1, &e) != PYRATE_OK)
		return fail(&e);
	if (!(b = open_bucket(a, &e)))
		return fail(&e);
	rc = pyrate_pg_define(b, a->pos[0], rates, a->npos - 1, a->storage, a->dry_run, &e);
	pyrate_close(b);
	return rc == PYRATE_OK ? 0 : fail(&e);
}

static int
cmd_leak(const args *a)
{
	pyrate_error e = {0};
	pyrate_bucket *b;
	int64_t		removed = 0;
	int			rc;

	if (a->help)
		return fputs(usage_leak, stdout), 0;
	if (a->npos > 1)
		return die("leak takes at most one bucket NAME");
	if (!(b = open_bucket(a, &e)))
		return fail(&e);
	rc = pyrate_pg_leak(b, a->npos ? a->pos[0] : NULL, PYRATE_NOW, &removed, &e);
	pyrate_close(b);
	if (rc != PYRATE_OK)
		return fail(&e);
	printf("leaked %lld units\n", (long long) removed);
	return 0;
}

/* one row of pyrate status, tab-separated, after the column names */
static int
print_row(void *user, int ncols, const char *const *names, const char *const *values)
{
	int		   *rows = user;
	int			c;

	if ((*rows)++ == 0)
	{
		for (c = 0; c < ncols; c++)
			printf("%s%s", c ? "\t" : "", names[c]);
		putchar('\n');
	}
	for (c = 0; c < ncols; c++)
		printf("%s%s", c ? "\t" : "", values[c] ? values[c] : "");
	putchar('\n');
	return 0;
}

static int
cmd_status(const args *a)
{
	pyrate_error e = {0};
	pyrate_bucket *b;
	int			rows = 0;
	int			rc;

	if (a->help)
		return fputs(usage_status, stdout), 0;
	if (a->npos > 1)
		return die("status takes at most one bucket NAME");
	if (!(b = open_bucket(a, &e)))
		return fail(&e);
	rc = pyrate_pg_buckets(b, a->npos ? a->pos[0] : NULL, print_row, &rows, &e);
	pyrate_close(b);
	if (rc != PYRATE_OK)
		return fail(&e);
	if (rows == 0 && a->npos)
		printf("no bucket named \"%s\" holds items\n", a->pos[0]);
	else if (rows == 0)
		printf("no bucket holds items\n");
	return 0;
}

int
main(int argc, char **argv)
{
	args		a;
	const char *bad = NULL;
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (!cmd || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0)
	{
		fputs(usage_main, cmd ? stdout : stderr);
		return cmd ? 0 : EXIT_ERROR;
	}
	if (strcmp(cmd, "--version") == 0)
	{
		printf("pyrate %s\n", PYRATE_VERSION);
		return 0;
	}
	if (!parse_args(argc - 2, argv + 2, &a, &bad))
		return die("%s: unknown option or missing value: %s", cmd, bad);
	if (strcmp(cmd, "acquire") == 0)
		return cmd_acquire(&a);
	if (strcmp(cmd, "define") == 0)
		return cmd_define(&a);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(&a);
	if (strcmp(cmd, "leak") == 0)
		return cmd_leak(&a);
	return die("unknown command \"%s\" (pyrate --help lists them)", cmd);
}
