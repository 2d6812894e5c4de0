/*
 * cli.c — the pyrate command: the Postgres path of libpyrate for shell
 * scripts and cron jobs.
 *
 *   pyrate acquire NAME [--weight N] [--wait [--timeout S]] [--fail-open] [--dsn DSN]
 *   pyrate define PATTERN RATE... [--storage memory|table] [--dry-run] [--slots N]
 *                [--max-buckets N] [--volatile] [--dsn DSN]
 *   pyrate status [NAME] [--dsn DSN]
 *   pyrate leak [NAME] [--dsn DSN]
 *   pyrate shard NAME --shards 'DSN;DSN;...'
 *
 * Exit status: 0 done (admitted), 1 rejected, 2 error: on stderr one line,
 * "pyrate: MESSAGE (SQLSTATE xxxxx)", then the server's DETAIL and HINT
 * lines when it sent them.  Without --dsn, libpq's PG* environment
 * variables choose the database.  --shards in place of --dsn names several
 * primaries, each name living on its shard (pyrate_shard_of): acquire,
 * status NAME and leak NAME go to the name's shard, define, status and leak
 * to every shard.
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
"usage: pyrate COMMAND [ARGS] [--dsn DSN | --shards 'DSN;DSN;...']\n"
"\n"
"Rate limiting through the pyrate PostgreSQL extension.\n"
"\n"
"commands:\n"
"  acquire NAME     take a permit from bucket NAME (exit 0 admitted, 1 rejected)\n"
"  define PATTERN RATE...  define the rates of the buckets matching PATTERN\n"
"  status [NAME]    list buckets and their counts\n"
"  leak [NAME]      remove items outside every window\n"
"  shard NAME       print the shard NAME lives on (with --shards)\n"
"\n"
"Exit status: 0 success, 1 rejected, 2 error.  The database comes from --dsn\n"
"or the PG* environment variables; --shards names several primaries, each\n"
"bucket name living on one of them.  'pyrate COMMAND --help' for more.\n";

static const char *const usage_acquire =
"usage: pyrate acquire NAME [--weight N] [--wait [--timeout SECONDS]] [--fail-open] [--dsn DSN | --shards LIST]\n"
"\n"
"Take N permits (default 1) from bucket NAME.  Exits 0 when admitted, 1 when\n"
"rejected (printing the retry-after in ms), 2 on an error.  --wait sleeps\n"
"until admitted or until --timeout passes.  --fail-open admits (exit 0, with\n"
"a warning) when the database cannot be reached; by default that is an error.\n"
"With --shards 'DSN;DSN;...' the permit comes from NAME's shard.\n";

static const char *const usage_define =
"usage: pyrate define PATTERN RATE... [--storage memory|table] [--dry-run] [--slots N]\n"
"                     [--max-buckets N] [--volatile] [--dsn DSN | --shards LIST]\n"
"\n"
"Define the rates of every bucket whose name matches PATTERN ('*' matches any\n"
"run of characters), e.g.  pyrate define 'api:*' 5/s 1000/h\n"
"Rates: LIMIT/INTERVAL with INTERVAL like s, 1m, 1500ms, h, 2d, w.\n"
"  --storage memory|table  where the buckets live (default: pyrate.default_storage)\n"
"  --dry-run               count what would be rejected, admit everything\n"
"  --slots N               bounded storage: about N entries per larger rate (1-1000)\n"
"  --max-buckets N         memory storage: at most N buckets of the definition\n"
"  --volatile              memory storage: keep the buckets out of the WAL (lost in\n"
"                          a crash or a failover; needs extension 1.4)\n"
"With --shards 'DSN;DSN;...' every shard gets the definition, in order.\n";

static const char *const usage_status =
"usage: pyrate status [NAME] [--dsn DSN | --shards LIST]\n"
"\n"
"List the buckets (all, or NAME) with their definition, storage and count.\n"
"With --shards 'DSN;DSN;...': NAME on its shard, or every shard in turn.\n";

static const char *const usage_leak =
"usage: pyrate leak [NAME] [--dsn DSN | --shards LIST]\n"
"\n"
"Remove the items outside every window of bucket NAME, or of every bucket,\n"
"and print how many units were removed.  With --shards 'DSN;DSN;...': NAME\n"
"on its shard, or every bucket of every shard.\n";

static const char *const usage_shard =
"usage: pyrate shard NAME --shards 'DSN;DSN;...'\n"
"\n"
"Print the shard bucket NAME lives on: its number (from 0, in the order of\n"
"the list), a tab and its DSN.  The shard is the 64-bit FNV-1a hash of NAME\n"
"(of its {hash tag} alone when it has one) modulo the number of shards.\n"
"Connects to nothing.\n";

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
 * reached gets a hint on how to point the command at one.  An error of one
 * of several shards names it (shard -1: a single database).
 */
static int
fail_on(int shard, const pyrate_error *e)
{
	const char *hint = e->hint;

	if (!hint[0] && !e->sqlstate[0] && (e->code == PYRATE_EBACKEND || e->code == PYRATE_ETIMEOUT))
		hint = shard >= 0 ?
			"The shard is the one of that number in --shards 'DSN;DSN;...', counted from 0; "
			"names on the other shards are not affected." :
			"Point pyrate at the server with --dsn 'host=... dbname=...', or with the "
			"environment variables PGHOST, PGPORT, PGDATABASE and PGUSER.";
	fputs("pyrate: ", stderr);
	if (shard >= 0)
		fprintf(stderr, "shard %d: ", shard);
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

static int
fail(const pyrate_error *e)
{
	return fail_on(-1, e);
}

typedef struct args
{
	const char *dsn;
	const char *shards;
	const char *pos[PYRATE_MAX_RATES + 2];
	int			npos;
	const char *weight;
	const char *timeout;
	const char *storage;
	const char *slots;
	const char *max_buckets;
	bool		wait;
	bool		fail_open;
	bool		dry_run;
	bool		volatile_buckets;
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
		else if (strcmp(argv[i], "--volatile") == 0)
			a->volatile_buckets = true;
		else if (strcmp(argv[i], "--dsn") == 0)
			slot = &a->dsn;
		else if (strcmp(argv[i], "--shards") == 0)
			slot = &a->shards;
		else if (strcmp(argv[i], "--weight") == 0)
			slot = &a->weight;
		else if (strcmp(argv[i], "--timeout") == 0)
			slot = &a->timeout;
		else if (strcmp(argv[i], "--storage") == 0)
			slot = &a->storage;
		else if (strcmp(argv[i], "--slots") == 0)
			slot = &a->slots;
		else if (strcmp(argv[i], "--max-buckets") == 0)
			slot = &a->max_buckets;
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

/*
 * The databases a command talks to: the one of --dsn (NULL: the PG*
 * variables), or the shards of --shards, the list split at ';' with the
 * blanks around each DSN trimmed.
 */
typedef struct dbs
{
	char	   *buf;			/* --shards, split in place */
	const char **dsn;
	const char *one[1];
	int			n;
	bool		sharded;
} dbs;

static void
dbs_free(dbs *d)
{
	free(d->buf);
	if (d->dsn != d->one)
		free(d->dsn);
}

static char *
trim(char *s)
{
	size_t		len;

	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n'))
		s[--len] = '\0';
	return s;
}

/* 0, or the exit status of the error printed */
static int
dbs_init(const args *a, dbs *d)
{
	char	   *c;
	char	   *next;
	int			n = 1;

	memset(d, 0, sizeof(*d));
	d->dsn = d->one;
	d->n = 1;
	if (!a->shards)
	{
		d->one[0] = a->dsn;
		return 0;
	}
	if (a->dsn)
		return die("give --dsn or --shards, not both");
	for (c = (char *) a->shards; *c; c++)
		n += *c == ';';
	if (!(d->buf = strdup(a->shards)) || !(d->dsn = calloc(n, sizeof(char *))))
	{
		free(d->buf);
		d->buf = NULL;
		d->dsn = d->one;
		return die("out of memory");
	}
	d->sharded = true;
	for (d->n = 0, c = d->buf; c; c = next, d->n++)
	{
		if ((next = strchr(c, ';')))
			*next++ = '\0';
		if (!*(d->dsn[d->n] = trim(c)))
		{
			dbs_free(d);
			return die("--shards: DSN %d of the list is empty (the list is 'DSN;DSN;...')", d->n + 1);
		}
	}
	return 0;
}

/* the shard of name, or -1 for a single database */
static int
shard_of(const dbs *d, const char *name)
{
	return d->sharded ? pyrate_shard_of(name, d->n) : -1;
}

/* what each call may take (PYRATE_TIMEOUT_MS; 0: the library's default) */
static int
timeout_ms(void)
{
	const char *t = getenv("PYRATE_TIMEOUT_MS");

	return t ? atoi(t) : 0;
}

static pyrate_bucket *
open_bucket(const char *dsn, pyrate_error *e)
{
	pyrate_pg_options o = {dsn, NULL, NULL, timeout_ms(), PYRATE_PG_FASTPATH};

	return pyrate_pg_bucket_new(&o, e);
}

/* a limiter over the one database's bucket, or over the shards' */
static pyrate_limiter *
open_limiter(const dbs *d, const pyrate_limiter_options *lo, pyrate_error *e)
{
	pyrate_pg_options o = {NULL, NULL, NULL, timeout_ms(), PYRATE_PG_FASTPATH};
	pyrate_factory *f;
	pyrate_bucket *b;
	pyrate_limiter *l;

	if (d->sharded)
	{
		if (!(f = pyrate_pg_sharded_factory_new(d->dsn, d->n, &o, e)))
			return NULL;
		if (!(l = pyrate_limiter_new(f, lo, e)))
			pyrate_factory_free(f);
		return l;
	}
	if (!(b = open_bucket(d->dsn[0], e)))
		return NULL;
	if (!(l = pyrate_limiter_new_bucket(b, lo, e)))
		pyrate_close(b);
	return l;
}

static int
cmd_acquire(const args *a)
{
	pyrate_limiter_options lo = {-1, a->fail_open ? PYRATE_FAIL_OPEN : PYRATE_FAIL_CLOSED};
	pyrate_acquire_info info;
	pyrate_error e = {0};
	pyrate_limiter *l;
	dbs			d;
	long long	weight = 1;
	double		timeout = -1;
	bool		acquired = false;
	char		rate[64] = "";
	char	   *end;
	int			shard;
	int			rc;

	if (a->help)
		return fputs(usage_acquire, stdout), 0;
	if (a->npos != 1)
		return die("acquire takes one bucket NAME (see pyrate acquire --help)");
	if (a->storage || a->dry_run || a->slots || a->max_buckets || a->volatile_buckets)
		return die("acquire takes no --storage, --dry-run, --slots, --max-buckets or --volatile");
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
	if ((rc = dbs_init(a, &d)) != 0)
		return rc;
	l = open_limiter(&d, &lo, &e);
	shard = shard_of(&d, a->pos[0]);
	dbs_free(&d);
	if (!l)
		return fail(&e);
	rc = pyrate_try_acquire(l, a->pos[0], weight, a->wait, timeout, &acquired, &info, &e);
	pyrate_limiter_free(l);
	if (rc != PYRATE_OK)
		return fail_on(shard, &e);
	if (info.decision.failing_rate.limit > 0)
		pyrate_rate_format(&info.decision.failing_rate, rate, sizeof(rate));
	switch (info.outcome)
	{
		case PYRATE_ACQUIRED:
			return 0;
		case PYRATE_FAILED_OPEN:
			if (shard >= 0)
				fprintf(stderr, "pyrate: warning: admitted without a check (--fail-open): shard %d: %s\n",
						shard, info.backend_error.message);
			else
				fprintf(stderr, "pyrate: warning: admitted without a check (--fail-open): %s\n",
						info.backend_error.message);
			return 0;
		case PYRATE_FAILED_CLOSED:
			return fail_on(shard, &info.backend_error);
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

/* what define, status and leak do on one database */
typedef int (*shard_fn) (pyrate_bucket *b, const char *name, void *user, pyrate_error *e);

/*
 * fn on the database of name (its shard), or, without a name, on each in
 * turn, stopping at the first that fails (*failed: its shard, or -1)
 */
static int
each_shard(const dbs *d, const char *name, shard_fn fn, void *user, int *failed, pyrate_error *e)
{
	int			i = name && d->sharded ? shard_of(d, name) : 0;
	int			last = name && d->sharded ? i : d->n - 1;
	int			rc = PYRATE_OK;

	for (; i <= last && rc == PYRATE_OK; i++)
	{
		pyrate_bucket *b = open_bucket(d->dsn[i], e);

		if (!b)
			rc = e->code;
		else
		{
			rc = fn(b, name, user, e);
			pyrate_close(b);
		}
		if (rc != PYRATE_OK && d->sharded)
			*failed = i;
	}
	return rc;
}

/* a definition, made on each database */
typedef struct definition
{
	const args *a;
	const pyrate_rate *rates;
	pyrate_pg_define_options opts;
} definition;

static int
define_one(pyrate_bucket *b, const char *name, void *user, pyrate_error *e)
{
	const definition *def = user;

	(void) name;
	return pyrate_pg_define_with(b, def->a->pos[0], def->rates, def->a->npos - 1, &def->opts, e);
}

/* a whole number from min to max, or -1 */
static long long
whole(const char *s, long long min, long long max)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	return errno || end == s || *end || v < min || v > max ? -1 : v;
}

static int
cmd_define(const args *a)
{
	pyrate_rate rates[PYRATE_MAX_RATES];
	definition	def = {a, rates, {a->storage, a->dry_run, 0, 0, a->volatile_buckets}};
	pyrate_error e = {0};
	dbs			d;
	int			shard = -1;
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
	if (a->slots && (def.opts.slots = (int) whole(a->slots, 1, PYRATE_MAX_SLOTS)) < 0)
		return die("--slots must be a whole number from 1 to %d, not \"%s\"", PYRATE_MAX_SLOTS, a->slots);
	if (a->max_buckets && (def.opts.max_buckets = whole(a->max_buckets, 1, INT64_MAX)) < 0)
		return die("--max-buckets must be a whole number >= 1, not \"%s\"%s", a->max_buckets, "");
	/* the library refuses it too, but in terms of its field, not of the option */
	if (a->volatile_buckets && a->storage && strcmp(a->storage, "table") == 0)
		return die("--volatile is for --storage memory: table buckets are always durable");
	for (i = 1; i < a->npos; i++)
		if (pyrate_rate_parse(a->pos[i], &rates[i - 1], &e) != PYRATE_OK)
			return fail(&e);
	if (pyrate_rates_validate(rates, a->npos - 1, &e) != PYRATE_OK)
		return fail(&e);
	if ((rc = dbs_init(a, &d)) != 0)
		return rc;
	rc = each_shard(&d, NULL, define_one, &def, &shard, &e);
	dbs_free(&d);
	return rc == PYRATE_OK ? 0 : fail_on(shard, &e);
}

/* leak name (NULL: every bucket), adding up the units removed */
static int
leak_one(pyrate_bucket *b, const char *name, void *user, pyrate_error *e)
{
	int64_t		removed = 0;
	int			rc = pyrate_pg_leak(b, name, PYRATE_NOW, &removed, e);

	*(int64_t *) user += removed;
	return rc;
}

static int
cmd_leak(const args *a)
{
	pyrate_error e = {0};
	int64_t		removed = 0;
	dbs			d;
	int			shard = -1;
	int			rc;

	if (a->help)
		return fputs(usage_leak, stdout), 0;
	if (a->npos > 1)
		return die("leak takes at most one bucket NAME");
	if ((rc = dbs_init(a, &d)) != 0)
		return rc;
	rc = each_shard(&d, a->npos ? a->pos[0] : NULL, leak_one, &removed, &shard, &e);
	dbs_free(&d);
	if (rc != PYRATE_OK)
		return fail_on(shard, &e);
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

/* the rows of one database: the column names before the first row of all */
static int
status_one(pyrate_bucket *b, const char *name, void *user, pyrate_error *e)
{
	return pyrate_pg_buckets(b, name, print_row, user, e);
}

static int
cmd_status(const args *a)
{
	pyrate_error e = {0};
	int			rows = 0;
	dbs			d;
	int			shard = -1;
	int			rc;

	if (a->help)
		return fputs(usage_status, stdout), 0;
	if (a->npos > 1)
		return die("status takes at most one bucket NAME");
	if ((rc = dbs_init(a, &d)) != 0)
		return rc;
	rc = each_shard(&d, a->npos ? a->pos[0] : NULL, status_one, &rows, &shard, &e);
	dbs_free(&d);
	if (rc != PYRATE_OK)
		return fail_on(shard, &e);
	if (rows == 0 && a->npos)
		printf("no bucket named \"%s\" holds items\n", a->pos[0]);
	else if (rows == 0)
		printf("no bucket holds items\n");
	return 0;
}

static int
cmd_shard(const args *a)
{
	dbs			d;
	int			rc;
	int			i;

	if (a->help)
		return fputs(usage_shard, stdout), 0;
	if (a->npos != 1)
		return die("shard takes one bucket NAME (see pyrate shard --help)");
	if (!a->shards)
		return die("shard needs the list of shards: --shards 'DSN;DSN;...'");
	if ((rc = dbs_init(a, &d)) != 0)
		return rc;
	i = shard_of(&d, a->pos[0]);
	printf("%d\t%s\n", i, d.dsn[i]);
	dbs_free(&d);
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
	if (strcmp(cmd, "shard") == 0)
		return cmd_shard(&a);
	return die("unknown command \"%s\" (pyrate --help lists them)", cmd);
}
