/*
 * test_pg.c — the Postgres bucket against a real PostgreSQL with the pyrate
 * extension installed.
 *
 *   test_pg DSN [RESTART-COMMAND [POOLER-DSN]]
 *
 * RESTART-COMMAND (run with system()) restarts the server; POOLER-DSN
 * reaches the same database through pgbouncer in transaction mode.
 */
#include "shared.h"
#include "silent.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/un.h>

static const char *dsn;

static const char *const protocol_names[3] = {"fast path", "unnamed statements", "prepared statements"};

static pyrate_bucket *
open_pg(const char *conninfo, const char *name, pyrate_pg_protocol protocol, int timeout_ms)
{
	pyrate_pg_options o = {conninfo, name, NULL, timeout_ms, protocol};

	return pyrate_pg_bucket_new(&o, NULL);
}

static pyrate_bucket *
open_busy(void *arg)
{
	return open_pg(dsn, arg, PYRATE_PG_FASTPATH, 0);
}

/* threads of this process */
static int
thread_count(void)
{
	DIR		   *d = opendir("/proc/self/task");
	struct dirent *de;
	int			n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
test_surface(pyrate_bucket *admin)
{
	pyrate_error e = {0};
	pyrate_bucket *b;
	pyrate_decision d;
	bool		existed;
	int64_t		n;
	int64_t		now;
	pyrate_clock *clock;
	pyrate_pg_options co = {dsn, NULL, NULL, 0, PYRATE_PG_FASTPATH};
	int			protocol;

	CHECK_OK(pyrate_pg_define(admin, "test:semantics", rates_3s, 2, "table", false, &e), "define test:semantics");
	for (protocol = PYRATE_PG_FASTPATH; protocol <= PYRATE_PG_PREPARED; protocol++)
	{
		char		kind[64];

		snprintf(kind, sizeof(kind), "postgres (%s)", protocol_names[protocol]);
		b = open_pg(dsn, "test:semantics", protocol, 0);
		test_bucket_semantics(kind, b);
		pyrate_close(b);
	}
	co.protocol = 3;
	CHECK(pyrate_pg_bucket_new(&co, &e) == NULL && e.code == PYRATE_EINVAL,
		  "an unknown protocol: EINVAL (%s)", e.message);
	co.protocol = PYRATE_PG_FASTPATH;

	CHECK_OK(pyrate_pg_define(admin, "test:api:*", (pyrate_rate[]) {{2, 60000}}, 1, NULL, false, &e),
			 "define a pattern");
	pyrate_pg_dispose(admin, "test:api:1", NULL, NULL);
	pyrate_pg_dispose(admin, "test:api:2", NULL, NULL);
	CHECK_OK(pyrate_pg_acquire(admin, "test:api:1", 1, PYRATE_NOW, &d, &e), "acquire by name");
	CHECK(d.acquired && d.remaining == 1 && d.retry_after_ms == 0, "admitted, 1 remaining");
	pyrate_pg_acquire(admin, "test:api:1", 1, PYRATE_NOW, &d, &e);
	CHECK_OK(pyrate_pg_acquire(admin, "test:api:1", 1, PYRATE_NOW, &d, &e), "third acquire");
	CHECK(!d.acquired && d.failing_rate.limit == 2 && d.failing_rate.interval == 60000 &&
		  d.retry_after_ms > 59000 && d.retry_after_ms <= 60001,
		  "rejected by 2/1m, retry after %" PRId64 " ms", d.retry_after_ms);
	CHECK_OK(pyrate_pg_acquire(admin, "test:api:2", 1, PYRATE_NOW, &d, &e), "another key");
	CHECK(d.acquired, "each key of a pattern has its own window");
	{
		/* names are parameters, never spliced into SQL: any text comes through intact */
		const char *odd = "test:api:o'k\\'); DROP TABLE x; --\xc3\xa9";

		pyrate_pg_dispose(admin, odd, NULL, NULL);
		CHECK_OK(pyrate_pg_acquire(admin, odd, 1, PYRATE_NOW, &d, &e),
				 "a name with quotes, a backslash, a semicolon, a comment and UTF-8");
		CHECK(d.acquired && d.remaining == 1, "it is a bucket of its own (1 remaining of 2)");
		CHECK(pyrate_pg_count(admin, odd, &n, &e) == PYRATE_OK && n == 1, "holding its one unit");
		CHECK(pyrate_pg_acquire(admin, "test:api:\xff", 1, PYRATE_NOW, &d, &e) == PYRATE_EINVAL,
			  "a name that is not valid UTF-8: EINVAL (%s)", e.message);
		pyrate_pg_dispose(admin, odd, NULL, NULL);
	}
	CHECK(pyrate_pg_acquire(admin, "nobody:defined:this", 1, PYRATE_NOW, &d, &e) == PYRATE_ENOTFOUND,
		  "unknown bucket: ENOTFOUND (%s)", e.message);
	CHECK(pyrate_pg_define(admin, "test:bad", (pyrate_rate[]) {{5, 1000}, {5, 60000}}, 2, NULL, false, &e)
		  == PYRATE_EINVAL, "invalid rate list: EINVAL (%s)", e.message);
	CHECK(pyrate_pg_acquire(admin, "test:api:1", -1, PYRATE_NOW, &d, &e) == PYRATE_EINVAL, "negative weight");
	CHECK(pyrate_count(admin, &n, &e) == PYRATE_EINVAL, "an unbound bucket needs a name: %s", e.message);
	CHECK_OK(pyrate_pg_count(admin, "test:api:1", &n, &e), "count by name");
	CHECK(n == 2, "two units stored");
	CHECK_OK(pyrate_pg_leak(admin, NULL, PYRATE_NOW, &n, &e), "leak every bucket");
	CHECK_OK(pyrate_pg_dispose(admin, "test:api:1", &existed, &e), "dispose");
	CHECK(existed, "dispose says the bucket existed");
	CHECK_OK(pyrate_pg_count(admin, "test:api:1", &n, &e), "count after dispose");
	CHECK(n == 0, "disposed bucket is empty");

	clock = pyrate_pg_clock_new(&co, &e);
	CHECK(clock && pyrate_clock_now(clock, &now, &e) == PYRATE_OK, "PostgresClock");
	CHECK(llabs(now - (int64_t) time(NULL) * 1000) < 5000, "PostgresClock is epoch ms");
	pyrate_clock_free(clock);
}

/* the async acquire driven by poll(), as an event loop would */
static int
async_acquire(pyrate_bucket *b, const char *name, pyrate_decision *d, pyrate_error *e, int *polls)
{
	pyrate_pg_poll state = PYRATE_PG_WANT_WRITE;
	int			rc = pyrate_pg_acquire_start(b, name, 1, e);

	*polls = 0;
	if (rc != PYRATE_OK)
		return rc;
	for (;;)
	{
		struct pollfd p = {pyrate_pg_socket(b), 0, 0};

		if ((rc = pyrate_pg_acquire_poll(b, &state, e)) != PYRATE_OK)
			return rc;
		if (state == PYRATE_PG_DONE)
			break;
		p.events = state == PYRATE_PG_WANT_READ ? POLLIN : POLLOUT;
		(*polls)++;
		if (poll(&p, 1, 5000) != 1)
			return PYRATE_ETIMEOUT;
	}
	return pyrate_pg_acquire_finish(b, d, e);
}

static void
test_async(void)
{
	pyrate_error e = {0};
	pyrate_bucket *b = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	pyrate_decision d;
	int			polls = 0;
	int			i;
	int			got = 0;

	pyrate_pg_dispose(b, "test:api:async", NULL, NULL);
	pyrate_pg_dispose(b, "test:api:async2", NULL, NULL);
	CHECK_OK(async_acquire(b, "test:api:async", &d, &e, &polls), "async acquire, connecting first");
	CHECK(d.acquired, "admitted (%d waits on the socket)", polls);
	CHECK(pyrate_pg_acquire_start(b, "test:api:async", 1, &e) == PYRATE_OK &&
		  pyrate_pg_acquire_start(b, "test:api:async", 1, &e) == PYRATE_EINVAL,
		  "one async acquire in flight at a time");
	CHECK(pyrate_pg_count(b, "test:api:async", NULL, &e) == PYRATE_EINVAL,
		  "blocking calls refuse while one is in flight");
	{
		pyrate_pg_poll st;

		do
		{
			struct pollfd p = {pyrate_pg_socket(b), POLLIN, 0};

			pyrate_pg_acquire_poll(b, &st, &e);
			if (st != PYRATE_PG_DONE)
				poll(&p, 1, 1000);
		} while (st != PYRATE_PG_DONE);
		pyrate_pg_acquire_finish(b, &d, &e);
	}
	CHECK(d.acquired && d.remaining == 0, "second async acquire admitted, 0 remaining");
	async_acquire(b, "test:api:async", &d, &e, &polls);
	CHECK(!d.acquired && d.failing_rate.limit == 2, "third async acquire rejected by 2/1m");
	for (i = 0; i < 3; i++)
		if (async_acquire(b, "test:api:async2", &d, &e, &polls) == PYRATE_OK && d.acquired)
			got++;
	CHECK(got == 2, "async on a warm connection: 2 of 3 admitted");
	CHECK(async_acquire(b, "nobody:defined:this", &d, &e, &polls) == PYRATE_ENOTFOUND,
		  "async error reported by finish: %s", e.message);
	pyrate_close(b);
}

/* s ends on a whole UTF-8 character (a cut text must not split one) */
static bool
utf8_whole(const char *s)
{
	size_t		len = strlen(s);
	size_t		lead = len;

	while (lead > 0 && ((unsigned char) s[lead - 1] & 0xC0) == 0x80)
		lead--;
	if (lead == 0 || (unsigned char) s[lead - 1] < 0xC0)
		return lead == len;
	return len - (lead - 1) == ((unsigned char) s[lead - 1] >= 0xF0 ? 4 :
								(unsigned char) s[lead - 1] >= 0xE0 ? 3 : 2);
}

/*
 * pyrate_definitions' durable for pattern, read on a connection of its own:
 * "t", "f", "none" when no such definition, or the error
 */
static const char *
definition_durable(const char *pattern, char *buf, size_t len)
{
	PGconn	   *c = PQconnectdb(dsn);
	PGresult   *res = PQexecParams(c, "SELECT durable FROM pyrate_definitions WHERE pattern = $1",
								   1, NULL, &pattern, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		snprintf(buf, len, "error: %s", PQerrorMessage(c));
	else
		snprintf(buf, len, "%s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "none");
	PQclear(res);
	PQfinish(c);
	return buf;
}

typedef struct bucket_rows
{
	int			rows;
	int			stop_after;		/* rows to take before stopping */
	char		name[64];
	char		count[24];
} bucket_rows;

static int
bucket_row(void *user, int ncols, const char *const *names, const char *const *values)
{
	bucket_rows *r = user;
	int			c;

	for (c = 0; c < ncols; c++)
	{
		if (strcmp(names[c], "name") == 0)
			snprintf(r->name, sizeof(r->name), "%s", values[c] ? values[c] : "(null)");
		if (strcmp(names[c], "count") == 0)
			snprintf(r->count, sizeof(r->count), "%s", values[c] ? values[c] : "(null)");
	}
	return ++r->rows >= r->stop_after;
}

/* the server's SQLSTATE, DETAIL and HINT travel with its errors, on every path */
static void
test_errors(pyrate_bucket *admin)
{
	pyrate_error e = {0};
	pyrate_decision d;
	pyrate_bucket *b;
	char		name[1100];
	char		wide[320];
	bucket_rows rows = {0};
	int			protocol;
	int			polls;
	int			i;

	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	for (protocol = PYRATE_PG_FASTPATH; protocol <= PYRATE_PG_PREPARED; protocol++)
	{
		const char *kind = protocol_names[protocol];

		b = open_pg(dsn, NULL, protocol, 0);
		CHECK(pyrate_pg_acquire(b, "nobody:defined:this", 1, PYRATE_NOW, &d, &e) == PYRATE_ENOTFOUND &&
			  strcmp(e.sqlstate, "42704") == 0 && e.detail[0] == '\0' &&
			  strstr(e.hint, "pyrate_define('nobody:defined:this'"),
			  "%s: an undefined bucket: SQLSTATE %s, HINT %s", kind, e.sqlstate, e.hint);
		CHECK(pyrate_pg_acquire(b, name, 1, PYRATE_NOW, &d, &e) == PYRATE_EINVAL &&
			  strcmp(e.sqlstate, "54000") == 0 && strstr(e.detail, "1099 bytes") &&
			  strstr(e.hint, "Hash long keys"),
			  "%s: a name too long: SQLSTATE %s, DETAIL %s, HINT %s", kind, e.sqlstate, e.detail, e.hint);
		CHECK(pyrate_pg_count(b, "nobody:defined:this", &(int64_t) {0}, &e) == PYRATE_ENOTFOUND &&
			  strcmp(e.sqlstate, "42704") == 0 && strstr(e.hint, "pyrate_define("),
			  "%s: a statement's error too (SQLSTATE %s)", kind, e.sqlstate);
		CHECK(pyrate_pg_acquire(b, "nobody:defined:this", -1, PYRATE_NOW, &d, &e) == PYRATE_EINVAL &&
			  e.sqlstate[0] == '\0' && e.detail[0] == '\0' && e.hint[0] == '\0',
			  "%s: a client-side error after it keeps none of the server's fields", kind);
		pyrate_close(b);
	}
	b = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	CHECK(async_acquire(b, "nobody:defined:this", &d, &e, &polls) == PYRATE_ENOTFOUND &&
		  strcmp(e.sqlstate, "42704") == 0 && strstr(e.hint, "pyrate_define("),
		  "async: SQLSTATE %s and the HINT from finish", e.sqlstate);
	pyrate_close(b);
	CHECK(pyrate_pg_define(admin, "test:disk", rates_3s, 2, "disk", false, &e) == PYRATE_EINVAL &&
		  strcmp(e.sqlstate, "22023") == 0 && strstr(e.hint, "Use 'table'"),
		  "define with an unknown storage: SQLSTATE %s, HINT %s", e.sqlstate, e.hint);

	/* every option of pyrate_define: slots and max_buckets (extension 1.3) */
	{
		pyrate_pg_define_options o = {"memory", false, 10, 2, false};
		int64_t		units = 0;

		CHECK_OK(pyrate_pg_define_with(admin, "test:with:*", rates_3s, 2, &o, &e),
				 "define with slots 10 and max_buckets 2");
		CHECK(pyrate_pg_acquire(admin, "test:with:a", 1, PYRATE_NOW, &d, &e) == PYRATE_OK &&
			  pyrate_pg_acquire(admin, "test:with:b", 1, PYRATE_NOW, &d, &e) == PYRATE_OK &&
			  pyrate_pg_acquire(admin, "test:with:c", 1, PYRATE_NOW, &d, &e) != PYRATE_OK &&
			  strcmp(e.sqlstate, "53400") == 0 && strstr(e.hint, "max_buckets"),
			  "a third bucket past max_buckets 2: SQLSTATE %s", e.sqlstate);
		CHECK(pyrate_pg_count(admin, "test:with:a", &units, &e) == PYRATE_OK && units == 1,
			  "... the two before it took their units");
		o.slots = PYRATE_MAX_SLOTS + 1;
		CHECK(pyrate_pg_define_with(admin, "test:with:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL &&
			  e.sqlstate[0] == '\0' && strstr(e.message, "slots must be"),
			  "slots past %d: refused before the server (%s)", PYRATE_MAX_SLOTS, e.message);
		o.slots = 0;
		o.max_buckets = -1;
		CHECK(pyrate_pg_define_with(admin, "test:with:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL &&
			  strstr(e.message, "max_buckets must be"), "a negative max_buckets: refused (%s)", e.message);
		CHECK(pyrate_pg_dispose(admin, "test:with:a", NULL, &e) == PYRATE_OK &&
			  pyrate_pg_dispose(admin, "test:with:b", NULL, &e) == PYRATE_OK, "disposed of");
		o.max_buckets = 0;
		o.storage = "table";
		o.slots = 3;
		CHECK_OK(pyrate_pg_define_with(admin, "test:with:*", rates_3s, 2, &o, &e),
				 "redefined on table storage with slots 3, no cap");
		o.max_buckets = 5;
		CHECK(pyrate_pg_define_with(admin, "test:with:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL &&
			  strcmp(e.sqlstate, "22023") == 0, "max_buckets on table storage: SQLSTATE %s", e.sqlstate);
	}

	/* volatile_buckets: durable => false (extension 1.4), memory storage only */
	{
		pyrate_pg_define_options o = {"memory", false, 0, 0, true};
		char		durable[PYRATE_MSG_LEN];

		/* a statement of its own: prepared under its own name too */
		for (protocol = PYRATE_PG_FASTPATH; protocol <= PYRATE_PG_PREPARED; protocol++)
		{
			b = open_pg(dsn, NULL, protocol, 0);
			CHECK_OKF(pyrate_pg_define_with(b, "test:volatile:*", rates_3s, 2, &o, &e),
					  "%s: define volatile memory buckets", protocol_names[protocol]);
			pyrate_close(b);
		}
		CHECK(strcmp(definition_durable("test:volatile:*", durable, sizeof(durable)), "f") == 0,
			  "... pyrate_definitions says durable %s", durable);
		CHECK_OK(pyrate_pg_acquire(admin, "test:volatile:a", 1, PYRATE_NOW, &d, &e),
				 "acquire on a volatile bucket");
		CHECK(d.acquired, "... admitted");
		pyrate_pg_dispose(admin, "test:volatile:a", NULL, NULL);
		o.volatile_buckets = false;
		CHECK_OK(pyrate_pg_define_with(admin, "test:durable:*", rates_3s, 2, &o, &e),
				 "define memory buckets without volatile_buckets");
		CHECK(strcmp(definition_durable("test:durable:*", durable, sizeof(durable)), "t") == 0,
			  "... durable by default: pyrate_definitions says durable %s", durable);
		o.volatile_buckets = true;
		o.storage = "table";
		CHECK(pyrate_pg_define_with(admin, "test:volatile:table:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL &&
			  e.sqlstate[0] == '\0' && strstr(e.message, "volatile_buckets needs memory storage"),
			  "volatile_buckets on table storage: refused before the server (%s)", e.message);
		CHECK(strcmp(definition_durable("test:volatile:table:*", durable, sizeof(durable)), "none") == 0,
			  "... and not defined (%s)", durable);
		b = open_pg("host=/nonexistent/pyrate port=1 user=postgres dbname=postgres", NULL, PYRATE_PG_FASTPATH, 0);
		CHECK(pyrate_pg_define_with(b, "test:volatile:table:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL,
			  "... refused with no server to reach (%s)", e.message);
		pyrate_close(b);
		/* the server's default storage, table here, is the server's to refuse */
		o.storage = NULL;
		CHECK(pyrate_pg_define_with(admin, "test:volatile:table:*", rates_3s, 2, &o, &e) == PYRATE_EINVAL &&
			  strcmp(e.sqlstate, "22023") == 0 && strstr(e.message, "only memory buckets can be volatile"),
			  "volatile_buckets on the default storage (table): SQLSTATE %s, %s", e.sqlstate, e.message);
	}

	/* a text longer than its field is cut between characters */
	snprintf(wide, sizeof(wide), "nobody:");
	for (i = 0; i < 150; i++)
		strcat(wide, "\xc3\xa9");
	CHECK(pyrate_pg_acquire(admin, wide, 1, PYRATE_NOW, &d, &e) == PYRATE_ENOTFOUND &&
		  strlen(e.message) >= PYRATE_MSG_LEN - 4 && utf8_whole(e.message) &&
		  strlen(e.hint) >= PYRATE_MSG_LEN - 4 && utf8_whole(e.hint),
		  "a long message and hint are cut at a character (%zu and %zu bytes)", strlen(e.message),
		  strlen(e.hint));

	b = open_pg("host=/nonexistent/pyrate port=1 user=postgres dbname=postgres", NULL, PYRATE_PG_FASTPATH, 0);
	CHECK(pyrate_pg_acquire(b, "x", 1, PYRATE_NOW, &d, &e) == PYRATE_EBACKEND && e.sqlstate[0] == '\0' &&
		  strncmp(e.message, "postgres: cannot connect: ", 26) == 0 && !strchr(e.message, '\n') &&
		  strstr(e.detail, "Is the server running"),
		  "cannot connect: libpq's first line is the message (%s), the rest the detail (%s)",
		  e.message, e.detail);
	pyrate_close(b);

	/* get_buckets */
	CHECK_OK(pyrate_pg_define(admin, "test:list:*", rates_3s, 2, "table", false, &e), "define test:list:*");
	pyrate_pg_dispose(admin, "test:list:a", NULL, NULL);
	pyrate_pg_dispose(admin, "test:list:b", NULL, NULL);
	pyrate_pg_acquire(admin, "test:list:a", 2, PYRATE_NOW, &d, &e);
	pyrate_pg_acquire(admin, "test:list:b", 1, PYRATE_NOW, &d, &e);
	rows.stop_after = 1000;
	CHECK_OK(pyrate_pg_buckets(admin, "test:list:a", bucket_row, &rows, &e), "pyrate_pg_buckets by name");
	CHECK(rows.rows == 1 && strcmp(rows.name, "test:list:a") == 0 && strcmp(rows.count, "2") == 0,
		  "one row: its name and count (%d rows, %s, %s)", rows.rows, rows.name, rows.count);
	rows = (bucket_rows) {0, 1, "", ""};
	CHECK_OK(pyrate_pg_buckets(admin, NULL, bucket_row, &rows, &e), "pyrate_pg_buckets, all");
	CHECK(rows.rows == 1, "the row function stops the listing by returning non-zero");
	rows = (bucket_rows) {0, 1000, "", ""};
	CHECK_OK(pyrate_pg_buckets(admin, "test:list:none", bucket_row, &rows, &e), "a bucket holding nothing");
	CHECK(rows.rows == 0, "no rows");
	CHECK(pyrate_pg_buckets(admin, NULL, NULL, NULL, &e) == PYRATE_EINVAL, "a row function is required");
	pyrate_pg_dispose(admin, "test:list:a", NULL, NULL);
	pyrate_pg_dispose(admin, "test:list:b", NULL, NULL);
}

static void
test_reconnect(const char *restart)
{
	pyrate_error e = {0};
	pyrate_bucket *b = NULL;
	pyrate_limiter *l;
	pyrate_acquire_info info;
	bool		ok;
	int64_t		start;
	int			i;
	int			protocol;

	for (protocol = PYRATE_PG_PREPARED; protocol >= PYRATE_PG_FASTPATH; protocol--)
	{
		PGconn	   *other = PQconnectdb(dsn);
		PGresult   *res;

		if (b)
			pyrate_close(b);
		b = open_pg(dsn, NULL, protocol, 0);
		pyrate_pg_define(b, "test:re", (pyrate_rate[]) {{100000, 1000}}, 1, NULL, false, NULL);
		CHECK_OKF(pyrate_pg_acquire(b, "test:re", 1, PYRATE_NOW, &(pyrate_decision) {0}, &e),
				  "acquire (%s)", protocol_names[protocol]);
		res = PQexec(other, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
					 "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND datname = current_database()");
		PQclear(res);
		PQfinish(other);
		usleep(100000);
		CHECK_OKF(pyrate_pg_acquire(b, "test:re", 1, PYRATE_NOW, &(pyrate_decision) {0}, &e),
				  "%s: the next call after the backend was terminated reconnects", protocol_names[protocol]);
	}

	/* the default protocol through a restart */
	l = pyrate_limiter_new_bucket(b, NULL, &e);
	if (!restart)
	{
		pyrate_limiter_free(l);
		return;
	}
	CHECK(system(restart) == 0, "postgres restarted");
	start = tap_ms();
	for (i = 0, ok = false; !ok && tap_ms() - start < 20000; i++)
	{
		if (pyrate_try_acquire(l, "test:re", 1, false, -1, &ok, &info, &e) != PYRATE_OK)
		{
			CHECK(false, "try_acquire failed: %s", e.message);
			break;
		}
		if (!ok)
		{
			CHECK(info.outcome == PYRATE_FAILED_CLOSED, "while down: fail-closed, reported (%s)",
				  info.backend_error.message);
			usleep(200000);
		}
	}
	CHECK(ok && info.outcome == PYRATE_ACQUIRED, "the limiter recovered after the restart (%d tries)", i);
	pyrate_limiter_free(l);
}

static void
test_silent(void)
{
	pyrate_error e = {0};
	char		conninfo[256];
	int			port = 0;
	int			fd = silent_listen(&port);
	pyrate_bucket *b;
	pyrate_limiter *l;
	pyrate_acquire_info info;
	int64_t		start;
	bool		ok;

	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres", port);
	b = open_pg(conninfo, NULL, PYRATE_PG_FASTPATH, 300);
	start = tap_ms();
	CHECK(pyrate_pg_acquire(b, "x", 1, PYRATE_NOW, &(pyrate_decision) {0}, &e) == PYRATE_ETIMEOUT,
		  "silent server: ETIMEOUT (%s)", e.message);
	CHECK(tap_ms() - start >= 250 && tap_ms() - start < 1500, "after the 300 ms timeout (%" PRId64 " ms)",
		  tap_ms() - start);
	l = pyrate_limiter_new_bucket(b, &(pyrate_limiter_options) {-1, PYRATE_FAIL_OPEN}, &e);
	CHECK_OK(pyrate_try_acquire(l, "x", 1, true, 5, &ok, &info, &e), "fail-open acquire");
	CHECK(ok && info.outcome == PYRATE_FAILED_OPEN, "fail open: admitted, and says so");
	pyrate_limiter_free(l);
	b = open_pg(conninfo, NULL, PYRATE_PG_FASTPATH, 300);
	l = pyrate_limiter_new_bucket(b, NULL, &e);
	CHECK_OK(pyrate_try_acquire(l, "x", 1, false, -1, &ok, &info, &e), "fail-closed acquire");
	CHECK(!ok && info.outcome == PYRATE_FAILED_CLOSED && info.backend_error.code == PYRATE_ETIMEOUT,
		  "fail closed: rejected, and says so");
	pyrate_limiter_free(l);
	close(fd);
}

/*
 * A proxy between a loopback port and the server that can freeze: while
 * frozen it passes nothing either way, as a server that stopped answering
 * mid-call would.  With inflate set when a connection arrives (which must
 * then use sslmode=disable gssencmode=disable), it reads that connection's
 * server side message by message and stretches every function call result
 * ('V') to inflate bytes of value, as a server that lies would.  One thread,
 * a few connections at a time.
 */
typedef struct proxy_pair
{
	int			fd[2];			/* client, server */
	bool		parse;			/* inflate this connection's 'V' messages */
	size_t		held;			/* bytes of an incomplete server message in acc */
	unsigned char acc[16384];
} proxy_pair;

typedef struct proxy
{
	int			listen_fd;
	int			port;
	char		host[256];		/* the server: a socket directory or a host */
	int			server_port;
	volatile bool frozen;
	volatile int inflate;
	volatile bool stop;
	pthread_t	thread;
	proxy_pair	pairs[8];
} proxy;

static int
proxy_dial(proxy *px)
{
	struct sockaddr_un a;
	int			fd;

	if (px->host[0] != '/' || strlen(px->host) > 80)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	snprintf(a.sun_path, sizeof(a.sun_path), "%.80s/.s.PGSQL.%d", px->host, px->server_port);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0)
	{
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool
write_all(int fd, const unsigned char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = write(fd, buf, len);

		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t) n;
	}
	return true;
}

static void
put_be32(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char) (v >> 24);
	b[1] = (unsigned char) (v >> 16);
	b[2] = (unsigned char) (v >> 8);
	b[3] = (unsigned char) v;
}

/* server bytes for a parsed pair: whole messages on, 'V' stretched */
static bool
pass_parsed(proxy_pair *pp, const unsigned char *buf, size_t got, int inflate)
{
	size_t		used = 0;

	if (pp->held + got > sizeof(pp->acc))
		return false;
	memcpy(pp->acc + pp->held, buf, got);
	pp->held += got;
	while (pp->held - used >= 5)
	{
		unsigned char *m = pp->acc + used;
		size_t		len = 1 + ((size_t) m[1] << 24 | (size_t) m[2] << 16 | (size_t) m[3] << 8 | m[4]);

		if (len > sizeof(pp->acc))
			return false;
		if (pp->held - used < len)
			break;
		if (m[0] == 'V')
		{
			size_t		n = 9 + (size_t) inflate;
			unsigned char *v = malloc(n);
			bool		ok;

			if (!v)
				return false;
			v[0] = 'V';
			put_be32(v + 1, (uint32_t) (n - 1));
			put_be32(v + 5, (uint32_t) inflate);
			memset(v + 9, 'x', (size_t) inflate);
			ok = write_all(pp->fd[0], v, n);
			free(v);
			if (!ok)
				return false;
		}
		else if (!write_all(pp->fd[0], m, len))
			return false;
		used += len;
	}
	memmove(pp->acc, pp->acc + used, pp->held - used);
	pp->held -= used;
	return true;
}

static void *
proxy_main(void *arg)
{
	proxy	   *px = arg;
	int			npairs = 0;

	while (!px->stop)
	{
		struct pollfd pf[1 + 16];
		int			n = 1;
		int			i;

		pf[0] = (struct pollfd) {px->listen_fd, POLLIN, 0};
		if (!px->frozen)
			for (i = 0; i < npairs; i++)
			{
				pf[n++] = (struct pollfd) {px->pairs[i].fd[0], POLLIN, 0};
				pf[n++] = (struct pollfd) {px->pairs[i].fd[1], POLLIN, 0};
			}
		if (poll(pf, n, 20) <= 0)
			continue;
		if (pf[0].revents & POLLIN)
		{
			int			c = accept(px->listen_fd, NULL, NULL);
			int			s = c >= 0 ? proxy_dial(px) : -1;

			if (c >= 0 && s >= 0 && npairs < 8)
			{
				proxy_pair *pp = &px->pairs[npairs++];

				pp->fd[0] = c;
				pp->fd[1] = s;
				pp->parse = px->inflate > 0;
				pp->held = 0;
			}
			else
			{
				if (c >= 0)
					close(c);
				if (s >= 0)
					close(s);
			}
		}
		for (i = 1; i < n; i++)
		{
			proxy_pair *pp = &px->pairs[(i - 1) / 2];
			bool		from_server = (i - 1) % 2 == 1;
			unsigned char buf[8192];
			ssize_t		got;
			bool		ok;

			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)) || pp->fd[0] < 0)
				continue;
			got = read(pf[i].fd, buf, sizeof(buf));
			if (got <= 0)
				ok = false;
			else if (from_server && pp->parse)
				ok = pass_parsed(pp, buf, (size_t) got, px->inflate);
			else
				ok = write_all(pp->fd[from_server ? 0 : 1], buf, (size_t) got);
			if (!ok)
			{
				close(pp->fd[0]);
				close(pp->fd[1]);
				pp->fd[0] = pp->fd[1] = -1;
			}
		}
		/* forget closed pairs */
		for (i = 0; i < npairs;)
			if (px->pairs[i].fd[0] < 0)
				px->pairs[i] = px->pairs[--npairs];
			else
				i++;
	}
	while (npairs-- > 0)
	{
		close(px->pairs[npairs].fd[0]);
		close(px->pairs[npairs].fd[1]);
	}
	return NULL;
}

static bool
proxy_start(proxy *px)
{
	PGconn	   *c = PQconnectdb(dsn);
	bool		ok = PQstatus(c) == CONNECTION_OK && PQhost(c) && PQhost(c)[0] == '/';

	memset(px, 0, sizeof(*px));
	if (ok)
	{
		snprintf(px->host, sizeof(px->host), "%s", PQhost(c));
		px->server_port = atoi(PQport(c));
	}
	PQfinish(c);
	if (!ok || (px->listen_fd = silent_listen(&px->port)) < 0)
		return false;
	return pthread_create(&px->thread, NULL, proxy_main, px) == 0;
}

static void
proxy_stop(proxy *px)
{
	px->stop = true;
	pthread_join(px->thread, NULL);
	close(px->listen_fd);
}

/* a server that stops answering in the middle of a call, for each protocol */
static void
test_frozen(void)
{
	pyrate_error e = {0};
	pyrate_decision d;
	char		conninfo[256];
	proxy		px;
	int			protocol;

	if (!proxy_start(&px))
	{
		CHECK(false, "the freezing proxy needs the server's unix socket (DSN host=/dir)");
		return;
	}
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres", px.port);
	for (protocol = PYRATE_PG_FASTPATH; protocol <= PYRATE_PG_PREPARED; protocol++)
	{
		pyrate_bucket *b = open_pg(conninfo, NULL, protocol, 300);
		int64_t		start;
		int64_t		took;

		pyrate_pg_define(b, "test:frozen", (pyrate_rate[]) {{100000, 1000}}, 1, NULL, false, NULL);
		CHECK_OKF(pyrate_pg_acquire(b, "test:frozen", 1, PYRATE_NOW, &d, &e),
				  "%s: acquire through the proxy", protocol_names[protocol]);
		px.frozen = true;
		usleep(50000);			/* the proxy thread sees it */
		start = tap_ms();
		CHECK(pyrate_pg_acquire(b, "test:frozen", 1, PYRATE_NOW, &d, &e) == PYRATE_ETIMEOUT,
			  "%s: a server silent mid-call: ETIMEOUT (%s)", protocol_names[protocol], e.message);
		took = tap_ms() - start;
		CHECK(took >= 250 && took < 1500, "%s: after the 300 ms timeout (%" PRId64 " ms)",
			  protocol_names[protocol], took);
		px.frozen = false;
		CHECK_OKF(pyrate_pg_acquire(b, "test:frozen", 1, PYRATE_NOW, &d, &e),
				  "%s: answering again: the next call reconnects", protocol_names[protocol]);
		CHECK(d.acquired, "%s: and is admitted", protocol_names[protocol]);
		pyrate_close(b);
	}
	proxy_stop(&px);
}

/*
 * A function with pyrate_acquire's name and arguments that is not the
 * extension's: the fast path must not call it (PQfn would copy its 100 kB
 * value unbounded); the statement runs it and reports what it answered.
 */
static void
test_impostor(void)
{
	pyrate_error e = {0};
	PGconn	   *c = PQconnectdb(dsn);
	PGresult   *res = PQexec(c, "CREATE SCHEMA impostor; "
							 "CREATE FUNCTION impostor.pyrate_acquire(text, int, bigint) RETURNS text "
							 "LANGUAGE sql AS $$ SELECT repeat('x', 100000) $$");
	pyrate_pg_options o = {dsn, NULL, "impostor", 0, PYRATE_PG_FASTPATH};
	pyrate_bucket *b;
	pyrate_decision d;
	int			rc;

	CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "an impostor pyrate_acquire(text, int, bigint) (%s)",
		  PQresultErrorMessage(res));
	PQclear(res);
	b = pyrate_pg_bucket_new(&o, &e);
	rc = pyrate_pg_acquire(b, "test:impostor", 1, PYRATE_NOW, &d, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "unexpected"),
		  "the fast path leaves a function that is not the extension's alone: %s (%s)",
		  pyrate_code_name(rc), e.message);
	rc = pyrate_pg_acquire(b, "test:impostor", 1, PYRATE_NOW, &d, &e);
	CHECK(rc == PYRATE_ESERVER && strstr(e.message, "unexpected"), "and the same on the next call (%s)", e.message);
	pyrate_close(b);
	res = PQexec(c, "DROP FUNCTION impostor.pyrate_acquire(text, int, bigint); DROP SCHEMA impostor");
	PQclear(res);
	PQfinish(c);
}

static void
segv_exit(int sig, siginfo_t *info, void *ctx)
{
	(void) sig;
	(void) ctx;
	_exit(info->si_code == SEGV_ACCERR ? 41 : 42);
}

/*
 * A server that answers the function call with more than any decision (5
 * pages): libpq copies it unbounded, and the page after the bucket's result
 * buffer must stop the copy there, with a fault on a page that is mapped but
 * closed (SEGV_ACCERR), instead of letting it run over other memory.
 */
static void
test_lying_server(void)
{
	proxy		px;
	char		conninfo[256];
	pid_t		pid;
	int			status = 0;

	if (!proxy_start(&px))
	{
		CHECK(false, "the lying proxy needs the server's unix socket (DSN host=/dir)");
		return;
	}
	snprintf(conninfo, sizeof(conninfo),
			 "host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable gssencmode=disable", px.port);
	px.inflate = 5 * 4096;
	fflush(stdout);
	pid = fork();
	if (pid == 0)
	{
		struct sigaction sa;
		pyrate_bucket *b = open_pg(conninfo, NULL, PYRATE_PG_FASTPATH, 2000);
		pyrate_decision d;
		pyrate_error e = {0};
		int			rc;

		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = segv_exit;
		sa.sa_flags = SA_SIGINFO;
		sigaction(SIGSEGV, &sa, NULL);
		pyrate_pg_define(b, "test:liar", (pyrate_rate[]) {{100000, 1000}}, 1, NULL, false, NULL);
		rc = pyrate_pg_acquire(b, "test:liar", 1, PYRATE_NOW, &d, &e);
		fprintf(stderr, "# the lying server's answer came back: %s (%s)\n", pyrate_code_name(rc), e.message);
		_exit(rc == PYRATE_OK ? 43 : 44);
	}
	waitpid(pid, &status, 0);
	proxy_stop(&px);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 41,
		  "a server answering 5 pages to the function call: the copy stops at the closed page after the buffer "
		  "(exit %d, signal %d; 41: a fault on the closed page)",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* the fast path's timeout thread exists while a bucket that may use it is open */
static void
test_watchdog_thread(void)
{
	pyrate_error e = {0};
	int			before = thread_count();
	pyrate_bucket *b1 = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	pyrate_bucket *b2 = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	int			opened = thread_count();
	int			during;

	pyrate_pg_define(b1, "test:wd", (pyrate_rate[]) {{100000, 1000}}, 1, NULL, false, NULL);
	CHECK_OK(pyrate_pg_acquire(b1, "test:wd", 1, PYRATE_NOW, &(pyrate_decision) {0}, &e), "acquire on b1");
	CHECK_OK(pyrate_pg_acquire(b2, "test:wd", 1, PYRATE_NOW, &(pyrate_decision) {0}, &e), "acquire on b2");
	during = thread_count();
	pyrate_close(b1);
	CHECK(opened == before && during == before + 1 && thread_count() == before + 1,
		  "one timeout thread, started by the first call, kept while a bucket is open (%d, %d, %d, %d)",
		  before, opened, during, thread_count());
	pyrate_close(b2);
	CHECK(thread_count() == before, "and stopped when the last one closes (%d threads)", thread_count());
}

/* DROP and CREATE EXTENSION under a live bucket: a new OID for pyrate_acquire */
static void
test_recreate(void)
{
	pyrate_error e = {0};
	pyrate_bucket *b = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	PGconn	   *other = PQconnectdb(dsn);
	PGresult   *res;
	pyrate_decision d;

	pyrate_pg_define(b, "test:rc", (pyrate_rate[]) {{5, 60000}}, 1, NULL, false, NULL);
	CHECK_OK(pyrate_pg_acquire(b, "test:rc", 1, PYRATE_NOW, &d, &e), "acquire before the extension is recreated");
	res = PQexec(other, "DROP EXTENSION pyrate; CREATE EXTENSION pyrate");
	CHECK(PQresultStatus(res) == PGRES_COMMAND_OK, "DROP and CREATE EXTENSION pyrate (%s)",
		  PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(other);
	CHECK(pyrate_pg_acquire(b, "test:rc", 1, PYRATE_NOW, &d, &e) == PYRATE_ENOTFOUND,
		  "the same connection finds the new function, and the definition gone (%s)", e.message);
	CHECK_OK(pyrate_pg_define(b, "test:rc", (pyrate_rate[]) {{5, 60000}}, 1, NULL, false, &e), "define again");
	CHECK_OK(pyrate_pg_acquire(b, "test:rc", 1, PYRATE_NOW, &d, &e), "acquire after");
	CHECK(d.acquired && d.remaining == 4, "admitted, a fresh bucket (4 remaining: %" PRId64 ")", d.remaining);
	pyrate_close(b);
}

static void
test_pooler(const char *pooler)
{
	pyrate_error e = {0};
	int			mode;

	for (mode = PYRATE_PG_FASTPATH; mode <= PYRATE_PG_PREPARED; mode++)
	{
		pyrate_bucket *b[3];
		int			i;
		int			j;
		int			got = 0;
		int			errors = 0;
		int64_t		n = -1;

		for (i = 0; i < 3; i++)
			b[i] = open_pg(pooler, "test:pooled", mode, 0);
		pyrate_pg_define(b[0], "test:pooled", (pyrate_rate[]) {{50, 60000}}, 1, NULL, false, &e);
		pyrate_flush(b[0], &e);
		for (j = 0; j < 30; j++)
			for (i = 0; i < 3; i++)
			{
				pyrate_decision d;

				if (pyrate_put(b[i], &(pyrate_item) {NULL, PYRATE_NOW, 1}, &d, &e) != PYRATE_OK)
					errors++;
				else
					got += d.acquired;
			}
		pyrate_count(b[0], &n, &e);
		CHECK(errors == 0 && got == 50 && n == 50,
			  "through pgbouncer (transaction pooling, %s): 3 clients, 90 puts, 50 admitted (%d, errors %d: %s)",
			  protocol_names[mode], got, errors, errors ? e.message : "");
		for (i = 0; i < 3; i++)
			pyrate_close(b[i]);
	}
}

int
main(int argc, char **argv)
{
	pyrate_error e = {0};
	pyrate_bucket *admin;
	pyrate_bucket *b;
	int			errors = 0;
	int			admitted;

	if (argc < 2)
	{
		fprintf(stderr, "usage: test_pg DSN [RESTART-COMMAND [POOLER-DSN]]\n");
		return 2;
	}
	dsn = argv[1];
	admin = open_pg(dsn, NULL, PYRATE_PG_FASTPATH, 0);
	if (pyrate_pg_now(admin, &(int64_t) {0}, &e) != PYRATE_OK)
	{
		printf("not ok - cannot reach the database: %s\n0 passed, 1 failed\n", e.message);
		pyrate_close(admin);
		return 1;
	}
	test_surface(admin);
	test_async();
	test_errors(admin);

	pyrate_pg_define(admin, "test:busy", busy_rates, 2, "table", false, &e);
	b = open_pg(dsn, "test:busy", PYRATE_PG_FASTPATH, 0);
	pyrate_flush(b, NULL);
	admitted = run_processes(NULL, open_busy, "test:busy", 3, 2, 1300, &errors);
	check_shared("postgres (table), 3 processes x 2 threads", b, admitted, errors);
	pyrate_close(b);
	if (pyrate_pg_define(admin, "test:busymem", busy_rates, 2, "memory", false, &e) == PYRATE_OK)
	{
		errors = 0;
		b = open_pg(dsn, "test:busymem", PYRATE_PG_FASTPATH, 0);
		pyrate_flush(b, NULL);
		admitted = run_processes(NULL, open_busy, "test:busymem", 3, 2, 1300, &errors);
		check_shared("postgres (memory), 3 processes x 2 threads", b, admitted, errors);
		pyrate_close(b);
	}
	else
		printf("# memory storage not available here: %s\n", e.message);
	pyrate_close(admin);

	test_silent();
	test_frozen();
	test_impostor();
	test_lying_server();
	test_watchdog_thread();
	if (argc > 3)
		test_pooler(argv[3]);
	test_reconnect(argc > 2 ? argv[2] : NULL);
	test_recreate();
	return tap_end();
}
