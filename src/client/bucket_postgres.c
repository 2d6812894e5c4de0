/*
 * bucket_postgres.c — PostgresBucket and PostgresClock over libpq.
 *
 * Every operation is one call of the pyrate extension, sent without
 * session state so that a pooler in transaction mode can hand each call to
 * any server connection (pyrate.h lists the protocols):
 *
 *   - By default a put is the protocol's function call (PQfn) of
 *     pyrate_acquire by OID, looked up once per connection (and only if it
 *     is the extension's own C function, else the statement is used): the
 *     server neither parses nor plans nor starts an executor, which makes
 *     it cheaper than a prepared statement, with nothing prepared.  Arguments
 *     and the decision travel in binary.  The OID names the function for
 *     as long as it exists; the extension dropped and created again
 *     answers "no such function" once, and the call looks the OID up
 *     again.
 *   - Other ops, and every op with PYRATE_PG_UNNAMED, are unnamed
 *     statements with parameters.  With PYRATE_PG_PREPARED the statements
 *     are prepared once per connection and prepared again when the server
 *     says it does not know them.
 *
 * The connection is nonblocking and every statement's wait is a poll()
 * bounded by the call's deadline, so a server that never answers costs
 * timeout_ms and no more.  PQfn waits inside libpq without a bound, so a
 * watch (watchdog.c) shuts its socket down at the deadline.  A connection
 * that failed or timed out is dropped and the next call opens a new one.
 * The statement machinery also drives the async acquire.
 */
#include "internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum
{
	Q_ACQUIRE, Q_WAITING, Q_COUNT, Q_PEEK, Q_LEAK, Q_LEAK_ALL, Q_FLUSH,
	Q_DISPOSE, Q_NOW, Q_DEFINE, Q_BUCKETS, N_QUERIES
};

/*
 * Parameters carry their types in the Parse message (query_types) rather than
 * as casts in the text: the same resolution, and less for the server to lex,
 * parse and analyze on every unnamed statement.  pyrate_define keeps its
 * casts (its array type belongs to the extension, its OID is not fixed).
 */
static const char *const query_templates[N_QUERIES] = {
	"SELECT %s.pyrate_acquire($1, $2, $3)",
	"SELECT %s.pyrate_waiting($1, $2, $3)",
	"SELECT %s.pyrate_count($1)",
	"SELECT p.ts, p.weight FROM %s.pyrate_peek($1, $2) p",
	"SELECT %s.pyrate_leak($1, $2)",
	"SELECT %s.pyrate_leak()",
	"SELECT %s.pyrate_flush($1)",
	"SELECT %s.pyrate_dispose($1)",
	"SELECT %s.pyrate_now()",
	"SELECT %1$s.pyrate_define($1::pg_catalog.text, $2::%1$s.pyrate_rate[], "
	"COALESCE($3::pg_catalog.text, pg_catalog.current_setting('pyrate.default_storage', true), 'table'), "
	"$4::pg_catalog.bool)",
	"SELECT b.* FROM %s.pyrate_buckets() b WHERE $1 IS NULL OR b.name = $1 ORDER BY b.name"
};

/* built-in type OIDs (pg_type.dat): text, int4, int8 */
#define TEXTOID 25
#define INT4OID 23
#define INT8OID 20

static const Oid acquire_types[3] = {TEXTOID, INT4OID, INT8OID};
static const Oid text_types[1] = {TEXTOID};
static const Oid peek_types[2] = {TEXTOID, INT4OID};
static const Oid leak_types[2] = {TEXTOID, INT8OID};

static const Oid *const query_types[N_QUERIES] = {
	acquire_types, acquire_types, text_types, peek_types, leak_types, NULL, text_types,
	text_types, NULL, NULL, text_types
};

static const char *const schema_query =
"SELECT n.nspname FROM pg_catalog.pg_extension e "
"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pyrate'";

typedef enum async_state
{
	A_IDLE, A_CONNECTING, A_LOOKUP, A_ACQUIRE, A_DONE
} async_state;

typedef struct pg_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;		/* guards everything below */
	PGconn	   *conn;			/* NULL until (re)connected */
	char	   *conninfo;
	char	   *name;			/* bound bucket name, or NULL */
	char	   *schema;			/* given or looked up; NULL until known */
	char	   *sql[N_QUERIES];	/* built once the schema is known */
	char	   *qschema;		/* the schema as a quoted identifier, likewise */
	int			timeout_ms;
	int64_t		last_ok;		/* monotonic ms at the start of the last statement that succeeded */
	pyrate_pg_protocol protocol;
	uint32_t	prepared;		/* bit per query prepared on conn */
	Oid			fn_acquire;		/* pyrate_acquire's OID on conn; 0: not looked up */
	bool		fn_missing;		/* looked up on conn and not found: use the statement */
	unsigned char *fn_result;	/* PQfn's result buffer (fn_buffer_new); fast path only */
	size_t		fn_result_len;
	pyr_watch	watch;			/* the deadline of a fast-path call */
	bool		doomed;			/* the server said FATAL while we were idle */
	char		sqlstate[6];	/* of the last failed statement */
	/* the async acquire */
	async_state astate;
	char	   *aname;
	char		aweight[24];
	PGresult   *ares;
	pyrate_error aerr;
} pg_bucket;

static void
drop_conn(pg_bucket *p)
{
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
	p->prepared = 0;
	p->fn_acquire = 0;
	p->fn_missing = false;
	p->doomed = false;
}

/*
 * Messages outside a query: libpq would print them; we never print.  A
 * FATAL one (the server terminating us) means the connection is done.
 */
static void
notice_receiver(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
		((pg_bucket *) arg)->doomed = true;
}

/* a connection that is still good as far as what it received while idle says */
static bool
conn_alive(pg_bucket *p)
{
	return p->conn && PQconsumeInput(p->conn) != 0 && !PQisBusy(p->conn) && !p->doomed &&
		PQstatus(p->conn) == CONNECTION_OK;
}

/* s made one line, in place: line breaks and tabs become spaces, none left at the ends */
static char *
one_line(char *s)
{
	char	   *c;
	size_t		len;

	for (c = s; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
	while (*s == ' ')
		s++;
	len = strlen(s);
	while (len > 0 && s[len - 1] == ' ')
		s[--len] = '\0';
	return s;
}

static int
conn_fail(pg_bucket *p, pyrate_error *err, int code, const char *what)
{
	char		text[2 * PYRATE_MSG_LEN];
	char	   *rest = NULL;
	char	   *nl;

	/* libpq's first line is the message; the lines after it (advice, other hosts) the detail */
	snprintf(text, sizeof(text), "%s", p->conn ? PQerrorMessage(p->conn) : "");
	if ((nl = strchr(text, '\n')))
	{
		*nl = '\0';
		rest = one_line(nl + 1);
	}
	drop_conn(p);
	pyr_fail(err, code, "postgres: %s: %s", what, text[0] ? one_line(text) : "connection lost");
	if (err && rest)
		pyr_set_text(err->detail, sizeof(err->detail), rest);
	return code;
}

/* the call's deadline passed while what: the connection is dropped */
static int
timed_out(pg_bucket *p, pyrate_error *err, const char *what)
{
	drop_conn(p);
	return pyr_fail(err, PYRATE_ETIMEOUT, "postgres: timed out %s (timeout %d ms)", what, p->timeout_ms);
}

/* wait for the socket; false on timeout or a poll error */
static bool
wait_socket(PGconn *conn, bool for_write, int64_t deadline)
{
	struct pollfd pfd;
	int			rc;

	pfd.fd = PQsocket(conn);
	pfd.events = for_write ? POLLOUT | POLLIN : POLLIN;
	do
	{
		int64_t		left = deadline - pyr_monotonic_ms();

		if (left <= 0)
			return false;
		rc = poll(&pfd, 1, (int) (left > 60000 ? 60000 : left));
	} while ((rc < 0 && errno == EINTR) || rc == 0);
	return rc > 0;
}

/* build the statements once the schema is known */
static int
build_sql(pg_bucket *p, PGconn *conn, const char *schema, pyrate_error *err)
{
	char	   *q = PQescapeIdentifier(conn, schema, strlen(schema));
	int			i;

	if (!q)
		return pyr_fail(err, PYRATE_ENOMEM, "postgres: cannot quote the schema name");
	for (i = 0; i < N_QUERIES; i++)
	{
		size_t		len = strlen(query_templates[i]) + 3 * strlen(q) + 1;

		free(p->sql[i]);
		if (!(p->sql[i] = malloc(len)))
		{
			PQfreemem(q);
			return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		}
		snprintf(p->sql[i], len, query_templates[i], q);
	}
	free(p->qschema);
	p->qschema = strdup(q);
	PQfreemem(q);
	if (!p->qschema)
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	if (p->schema != schema)
	{
		free(p->schema);
		if (!(p->schema = strdup(schema)))
			return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	}
	return PYRATE_OK;
}

/*
 * map a failed result to a code, a message and the server's SQLSTATE, DETAIL
 * and HINT; drops a broken connection
 */
static int
result_fail(pg_bucket *p, PGresult *res, pyrate_error *err)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char		text[PYRATE_MSG_LEN];
	int			code = PYRATE_ESERVER;
	int			rc;

	if (!state)
		state = "";
	snprintf(p->sqlstate, sizeof(p->sqlstate), "%s", state);
	if (strcmp(state, "42704") == 0)
		code = PYRATE_ENOTFOUND;
	else if (strncmp(state, "22", 2) == 0 || strcmp(state, "54000") == 0)
		code = PYRATE_EINVAL;	/* bad data: a value, a name too long, bad encoding */
	else if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 || state[0] == '\0')
		code = PYRATE_EBACKEND;
	snprintf(text, sizeof(text), "%s", primary ? primary : PQresultErrorMessage(res));
	if (code == PYRATE_EBACKEND || PQstatus(p->conn) != CONNECTION_OK)
		rc = conn_fail(p, err, PYRATE_EBACKEND, primary ? one_line(text) : "query failed");
	else
		rc = pyr_fail(err, code, "postgres: %s", one_line(text));
	/* an error the server sent (libpq's own have no SQLSTATE) */
	if (err && state[0])
	{
		pyr_set_text(err->sqlstate, sizeof(err->sqlstate), state);
		pyr_set_text(err->detail, sizeof(err->detail), PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL));
		pyr_set_text(err->hint, sizeof(err->hint), PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
	}
	return rc;
}

/* wait for and return the one result of the statement sent last */
static int
collect(pg_bucket *p, int64_t deadline, PGresult **out, pyrate_error *err)
{
	PGresult   *res;
	PGresult   *first = NULL;
	int			f;

	p->sqlstate[0] = '\0';
	while ((f = PQflush(p->conn)) == 1)
	{
		if (!wait_socket(p->conn, true, deadline))
			return timed_out(p, err, "sending");
		if (PQconsumeInput(p->conn) == 0)
			return conn_fail(p, err, PYRATE_EBACKEND, "sending");
	}
	if (f < 0)
		return conn_fail(p, err, PYRATE_EBACKEND, "sending");
	for (;;)
	{
		while (PQisBusy(p->conn))
		{
			if (!wait_socket(p->conn, false, deadline))
			{
				PQclear(first);
				return timed_out(p, err, "waiting for the server");
			}
			if (PQconsumeInput(p->conn) == 0)
			{
				PQclear(first);
				return conn_fail(p, err, PYRATE_EBACKEND, "reading");
			}
		}
		if (!(res = PQgetResult(p->conn)))
			break;
		if (first)
			PQclear(res);
		else
			first = res;
	}
	if (!first)
		return conn_fail(p, err, PYRATE_EBACKEND, "no result");
	if (PQresultStatus(first) != PGRES_TUPLES_OK && PQresultStatus(first) != PGRES_COMMAND_OK)
	{
		int			rc = result_fail(p, first, err);

		PQclear(first);
		return rc;
	}
	*out = first;
	return PYRATE_OK;
}

static int
start_connect(pg_bucket *p, pyrate_error *err)
{
	drop_conn(p);
	p->conn = PQconnectStart(p->conninfo);
	if (!p->conn)
		return pyr_fail(err, PYRATE_ENOMEM, "postgres: out of memory");
	PQsetNoticeReceiver(p->conn, notice_receiver, p);
	if (PQstatus(p->conn) == CONNECTION_BAD)
		return conn_fail(p, err, PYRATE_EBACKEND, "cannot connect");
	return PYRATE_OK;
}

/*
 * How long after a statement succeeded the connection is taken as alive
 * without reading the socket first.  Busy callers spare a system call per
 * statement; a server going away in that moment fails the call that finds
 * out (which drops the connection) instead of the one after.
 */
#define FRESH_MS 5

/* a connection that is up: reuse it, or connect (and find the schema) by deadline */
static int
ensure_conn(pg_bucket *p, int64_t now, int64_t deadline, pyrate_error *err)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int			rc;

	if (p->conn && now - p->last_ok <= FRESH_MS && !p->doomed && PQstatus(p->conn) == CONNECTION_OK &&
		!PQisBusy(p->conn))
		return PYRATE_OK;
	/* read what arrived while idle: a server that went away shows up here */
	if (conn_alive(p))
		return PYRATE_OK;
	if ((rc = start_connect(p, err)) != PYRATE_OK)
		return rc;
	while (st != PGRES_POLLING_OK)
	{
		if (st == PGRES_POLLING_FAILED)
			return conn_fail(p, err, PYRATE_EBACKEND, "cannot connect");
		if (!wait_socket(p->conn, st == PGRES_POLLING_WRITING, deadline))
			return timed_out(p, err, "connecting");
		st = PQconnectPoll(p->conn);
	}
	if (PQsetnonblocking(p->conn, 1) != 0)
		return conn_fail(p, err, PYRATE_EBACKEND, "cannot make the connection nonblocking");
	if (!p->sql[0])
	{
		PGresult   *res = NULL;

		if (p->schema)
			return build_sql(p, p->conn, p->schema, err);
		if (!PQsendQueryParams(p->conn, schema_query, 0, NULL, NULL, NULL, NULL, 0))
			return conn_fail(p, err, PYRATE_EBACKEND, "sending");
		if ((rc = collect(p, deadline, &res, err)) != PYRATE_OK)
			return rc;
		if (PQntuples(res) != 1)
			rc = pyr_fail(err, PYRATE_ENOTFOUND,
						  "postgres: extension \"pyrate\" is not installed in this database (CREATE EXTENSION pyrate)");
		else
			rc = build_sql(p, p->conn, PQgetvalue(res, 0, 0), err);
		PQclear(res);
	}
	return rc;
}

static const char *
stmt_name(int which)
{
	static const char *const names[N_QUERIES] = {
		"pyrate_acquire_1", "pyrate_waiting_1", "pyrate_count_1", "pyrate_peek_1",
		"pyrate_leak_1", "pyrate_leak_all_1", "pyrate_flush_1", "pyrate_dispose_1",
		"pyrate_now_1", "pyrate_define_1", "pyrate_buckets_1"
	};

	return names[which];
}

/* prepare statement which on this connection unless it is known there */
static int
prepare(pg_bucket *p, int which, int nparams, int64_t deadline, pyrate_error *err)
{
	PGresult   *res = NULL;
	int			rc;

	if (p->prepared & (1u << which))
		return PYRATE_OK;
	if (!PQsendPrepare(p->conn, stmt_name(which), p->sql[which], nparams, query_types[which]))
		return conn_fail(p, err, PYRATE_EBACKEND, "sending");
	rc = collect(p, deadline, &res, err);
	PQclear(res);
	/* another client of a pooled server connection may have prepared it already */
	if (rc == PYRATE_OK || (p->conn && strcmp(p->sqlstate, "42P05") == 0))
	{
		p->prepared |= 1u << which;
		return PYRATE_OK;
	}
	return rc;
}

/*
 * Run statement which with text parameters; the caller holds the mutex and
 * clears *out.
 */
static int
run_query(pg_bucket *p, int which, int nparams, const char *const *values, PGresult **out,
		  pyrate_error *err)
{
	int64_t		now = pyr_monotonic_ms();
	int64_t		deadline = now + p->timeout_ms;
	int			attempt;
	int			rc;

	if (p->astate != A_IDLE)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: an async acquire is in flight on this bucket");
	for (attempt = 0; attempt < 2; attempt++)
	{
		if ((rc = ensure_conn(p, now, deadline, err)) != PYRATE_OK)
			return rc;
		if (p->protocol != PYRATE_PG_PREPARED)
		{
			/* bucket names are data: always parameters, never spliced into SQL */
			if (!PQsendQueryParams(p->conn, p->sql[which], nparams, query_types[which], values,
								   NULL, NULL, 0))
				return conn_fail(p, err, PYRATE_EBACKEND, "sending");
			if ((rc = collect(p, deadline, out, err)) == PYRATE_OK)
				p->last_ok = now;
			return rc;
		}
		if ((rc = prepare(p, which, nparams, deadline, err)) != PYRATE_OK)
			return rc;
		if (!PQsendQueryPrepared(p->conn, stmt_name(which), nparams, values, NULL, NULL, 0))
			return conn_fail(p, err, PYRATE_EBACKEND, "sending");
		if ((rc = collect(p, deadline, out, err)) == PYRATE_OK)
			p->last_ok = now;
		/* the server forgot the statement (a pooler switched connections): prepare again */
		if (p->conn && strcmp(p->sqlstate, "26000") == 0)
		{
			p->prepared &= ~(1u << which);
			continue;
		}
		return rc;
	}
	return rc;
}

/* run a query and parse one int8 from row 0, column 0 (NULL is an error) */
static int
query_int(pg_bucket *p, int which, int nparams, const char *const *values, int64_t *out,
		  pyrate_error *err)
{
	PGresult   *res = NULL;
	int			rc;

	pthread_mutex_lock(&p->mutex);
	rc = run_query(p, which, nparams, values, &res, err);
	pthread_mutex_unlock(&p->mutex);
	if (rc != PYRATE_OK)
		return rc;
	if (PQntuples(res) != 1 || PQnfields(res) < 1)
		rc = pyr_fail(err, PYRATE_ESERVER, "postgres: unexpected result shape");
	else if (out && !PQgetisnull(res, 0, 0))
	{
		const char *v = PQgetvalue(res, 0, 0);

		*out = v[0] == 't' ? 1 : v[0] == 'f' ? 0 : strtoll(v, NULL, 10);
	}
	else if (out)
		*out = 0;
	PQclear(res);
	return rc;
}

static const char *
bucket_name(pg_bucket *p, const char *name)
{
	return name ? name : p->name;
}

#define NEED_NAME(p, name, err) \
	do { \
		if (!bucket_name(p, name)) \
			return pyr_fail(err, PYRATE_EINVAL, "postgres: a bucket name is required (the bucket is not bound to one)"); \
	} while (0)

/*
 * The decision as one composite column, "(t,,0,4)" or "(f,5/1s,250,0)":
 * calling the function in the select list spares the executor a function
 * scan.  Fields are acquired, failing_rate (empty: NULL), retry_after_ms,
 * remaining; none of them ever needs quoting.
 */
static int
parse_decision(PGresult *res, int64_t at, pyrate_decision *d, pyrate_error *err)
{
	char		buf[128];
	char	   *f[4];
	char	   *p;
	int			n = 0;
	size_t		len;

	if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0) ||
		(len = (size_t) PQgetlength(res, 0, 0)) >= sizeof(buf) || len < 2)
		return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
	memcpy(buf, PQgetvalue(res, 0, 0), len + 1);
	if (buf[0] != '(' || buf[len - 1] != ')' || strchr(buf, '"'))
		return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
	buf[len - 1] = '\0';
	for (p = buf + 1; n < 4; p++)
	{
		f[n++] = p;
		if (!(p = strchr(p, ',')))
			break;
		*p = '\0';
	}
	if (n != 4 || (f[0][0] != 't' && f[0][0] != 'f'))
		return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
	d->acquired = f[0][0] == 't';
	d->failing_rate = (pyrate_rate) {0, 0};
	if (f[1][0] && pyrate_rate_parse(f[1], &d->failing_rate, err) != PYRATE_OK)
		return PYRATE_ESERVER;
	d->retry_after_ms = f[2][0] ? strtoll(f[2], NULL, 10) : 0;
	d->remaining = f[3][0] ? strtoll(f[3], NULL, 10) : -1;
	d->timestamp = at;
	return PYRATE_OK;
}

/* ---- the fast path: pyrate_acquire as a function call --------------- */

/*
 * The function is called only if it is the extension's own C function: a
 * function of the same name and arguments that a user put in that schema
 * could answer a value of any length, which PQfn would copy unbounded.
 * Anything else falls back to the statement, which reports what it finds.
 */
static const char *const fn_query =
"SELECT p.oid FROM pg_catalog.pg_proc p "
"JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
"JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
"AND d.objid = p.oid AND d.deptype = 'e' "
"JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'pyrate' "
"WHERE p.oid = pg_catalog.to_regprocedure($1) AND l.lanname = 'c' AND p.prosrc = 'pyrate_acquire'";

/* find pyrate_acquire(text, int4, int8) on this connection; caller holds the mutex */
static int
lookup_fn(pg_bucket *p, int64_t deadline, pyrate_error *err)
{
	static const char signature[] = ".pyrate_acquire(pg_catalog.text,pg_catalog.int4,pg_catalog.int8)";
	char		sig[256 + sizeof(signature)];	/* a quoted name is 130 bytes at most */
	const char *values[1] = {sig};
	PGresult   *res = NULL;
	int			rc;

	/* the quoted schema is data here: to_regprocedure parses it, no SQL is built */
	snprintf(sig, sizeof(sig), "%s%s", p->qschema, signature);
	if (!PQsendQueryParams(p->conn, fn_query, 1, text_types, values, NULL, NULL, 0))
		return conn_fail(p, err, PYRATE_EBACKEND, "sending");
	if ((rc = collect(p, deadline, &res, err)) != PYRATE_OK)
		return rc;
	if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		p->fn_acquire = (Oid) strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	p->fn_missing = p->fn_acquire == 0;
	PQclear(res);
	return PYRATE_OK;
}

static int64_t
get_be64(const unsigned char *b)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return (int64_t) v;
}

static int32_t
get_be32(const unsigned char *b)
{
	return (int32_t) ((uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3]);
}

/*
 * pyrate_decision in the binary form of a composite: the column count, then
 * per column its type OID, its length (-1: NULL) and its bytes.  Columns:
 * acquired bool, failing_rate pyrate_rate (two int8: limit, interval),
 * retry_after_ms int8, remaining int8; NULLs read as in parse_decision.
 */
static int
parse_binary_decision(const unsigned char *buf, int len, int64_t at, pyrate_decision *d,
					  pyrate_error *err)
{
	static const int32_t sizes[4] = {1, 16, 8, 8};
	const unsigned char *col[4];
	int			pos = 4;
	int			i;

	if (len < 4 || get_be32(buf) != 4)
		return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
	for (i = 0; i < 4; i++)
	{
		int32_t		n;

		if (pos + 8 > len)
			return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
		n = get_be32(buf + pos + 4);
		pos += 8;
		if (n == -1 && i > 0)
		{
			col[i] = NULL;
			continue;
		}
		if (n != sizes[i] || pos + n > len)
			return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
		col[i] = buf + pos;
		pos += n;
	}
	if (pos != len)
		return pyr_fail(err, PYRATE_ESERVER, "postgres: pyrate_acquire answered an unexpected row");
	d->acquired = col[0][0] != 0;
	d->failing_rate = col[1] ? (pyrate_rate) {get_be64(col[1]), get_be64(col[1] + 8)} : (pyrate_rate) {0, 0};
	d->retry_after_ms = col[2] ? get_be64(col[2]) : 0;
	d->remaining = col[3] ? get_be64(col[3]) : -1;
	d->timestamp = at;
	return PYRATE_OK;
}

/*
 * The buffer PQfn copies pyrate_acquire's value into.  The value is 53 to
 * 69 bytes, but PQfn copies whatever length the server states and libpq
 * offers no bound.  lookup_fn only calls the extension's own function; should
 * the server still answer more than a page, the inaccessible page after the
 * buffer stops the process at the boundary rather than let the copy run over
 * other memory.
 */
static unsigned char *
fn_buffer_new(size_t *len)
{
	long		page = sysconf(_SC_PAGESIZE);
	unsigned char *m;

	if (page < 4096)
		page = 4096;
	m = mmap(NULL, 2 * (size_t) page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	if (mprotect(m + page, (size_t) page, PROT_NONE) != 0)
	{
		munmap(m, 2 * (size_t) page);
		return NULL;
	}
	*len = (size_t) page;
	return m;
}

/*
 * pyrate_acquire by function call; the caller holds the mutex.  Returns
 * PYRATE_ENOTFOUND with *fallback set when the function is not there under
 * that signature (the statement then reports what is wrong).
 */
static int
fast_acquire(pg_bucket *p, const char *name, int64_t weight, int64_t at, pyrate_decision *d,
			 bool *fallback, pyrate_error *err)
{
	int64_t		now = pyr_monotonic_ms();
	int64_t		deadline = now + p->timeout_ms;
	unsigned char at_be[8];
	PQArgBlock	args[3];
	int			attempt;
	int			rc = PYRATE_OK;
	int			i;

	for (i = 0; i < 8; i++)
		at_be[i] = (unsigned char) ((uint64_t) at >> (56 - 8 * i));
	args[0].isint = 0;
	args[0].len = (int) strlen(name);
	args[0].u.ptr = (int *) name;
	args[1].isint = 1;
	args[1].len = 4;
	args[1].u.integer = (int) weight;
	args[2].isint = 0;
	args[2].len = at == PYRATE_NOW ? -1 : 8;
	args[2].u.ptr = (int *) at_be;

	for (attempt = 0; attempt < 2; attempt++)
	{
		PGresult   *res;
		int			len = 0;
		bool		fired;

		if ((rc = ensure_conn(p, now, deadline, err)) != PYRATE_OK)
			return rc;
		if (!p->fn_acquire && !p->fn_missing && (rc = lookup_fn(p, deadline, err)) != PYRATE_OK)
			return rc;
		if (p->fn_missing)
		{
			*fallback = true;
			return PYRATE_ENOTFOUND;
		}
		if ((rc = pyr_watch_arm(&p->watch, PQsocket(p->conn), deadline, err)) != PYRATE_OK)
			return rc;
		res = PQfn(p->conn, (int) p->fn_acquire, (int *) p->fn_result, &len, 0, args, 3);
		fired = pyr_watch_disarm(&p->watch);
		if (fired)
		{
			PQclear(res);
			return timed_out(p, err, "waiting for the server");
		}
		if (!res)
			return conn_fail(p, err, PYRATE_EBACKEND, "function call");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			/* the extension was dropped and created again: a new OID */
			if (state && strcmp(state, "42883") == 0 && attempt == 0 && PQstatus(p->conn) == CONNECTION_OK)
			{
				PQclear(res);
				p->fn_acquire = 0;
				continue;
			}
			rc = result_fail(p, res, err);
			PQclear(res);
			return rc;
		}
		PQclear(res);
		p->last_ok = now;
		if (len < 0 || (size_t) len > p->fn_result_len)
			return conn_fail(p, err, PYRATE_ESERVER, "pyrate_acquire answered an unexpected value");
		return parse_binary_decision(p->fn_result, len, at, d, err);
	}
	return rc;
}

int
pyrate_pg_acquire(pyrate_bucket *b, const char *name, int64_t weight, int64_t at,
				  pyrate_decision *d, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		w[24];
	char		ts[24];
	const char *values[3];
	PGresult   *res = NULL;
	int			rc;

	NEED_NAME(p, name, err);
	if (pyr_check_weight(weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	if (p->protocol == PYRATE_PG_FASTPATH)
	{
		bool		fallback = false;

		pthread_mutex_lock(&p->mutex);
		if (p->astate != A_IDLE)
			rc = pyr_fail(err, PYRATE_EINVAL, "postgres: an async acquire is in flight on this bucket");
		else
			rc = fast_acquire(p, bucket_name(p, name), weight, at, d, &fallback, err);
		pthread_mutex_unlock(&p->mutex);
		if (!fallback)
			return rc;
	}
	snprintf(w, sizeof(w), "%lld", (long long) weight);
	if (at != PYRATE_NOW)
		snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = w;
	values[2] = at == PYRATE_NOW ? NULL : ts;
	pthread_mutex_lock(&p->mutex);
	rc = run_query(p, Q_ACQUIRE, 3, values, &res, err);
	pthread_mutex_unlock(&p->mutex);
	if (rc != PYRATE_OK)
		return rc;
	rc = parse_decision(res, at, d, err);
	PQclear(res);
	return rc;
}

int
pyrate_pg_waiting(pyrate_bucket *b, const char *name, int64_t weight, int64_t at, int64_t *ms,
				  pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		w[24];
	char		ts[24];
	const char *values[3];

	NEED_NAME(p, name, err);
	snprintf(w, sizeof(w), "%lld", (long long) weight);
	snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = w;
	values[2] = at == PYRATE_NOW ? NULL : ts;
	return query_int(p, Q_WAITING, 3, values, ms, err);
}

int
pyrate_pg_count(pyrate_bucket *b, const char *name, int64_t *units, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	return query_int(p, Q_COUNT, 1, values, units, err);
}

int
pyrate_pg_peek(pyrate_bucket *b, const char *name, int64_t index, bool *found,
			   int64_t *ts, int64_t *weight, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		idx[24];
	const char *values[2];
	PGresult   *res = NULL;
	int			rc;

	NEED_NAME(p, name, err);
	if (index < 0 || index > INT32_MAX)
		return pyr_fail(err, PYRATE_EINVAL, "peek index %lld is out of range", (long long) index);
	snprintf(idx, sizeof(idx), "%lld", (long long) index);
	values[0] = bucket_name(p, name);
	values[1] = idx;
	pthread_mutex_lock(&p->mutex);
	rc = run_query(p, Q_PEEK, 2, values, &res, err);
	pthread_mutex_unlock(&p->mutex);
	if (rc != PYRATE_OK)
		return rc;
	*found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	if (*found)
	{
		*ts = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*weight = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	return PYRATE_OK;
}

int
pyrate_pg_leak(pyrate_bucket *b, const char *name, int64_t at, int64_t *removed, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		ts[24];
	const char *values[2];

	if (!bucket_name(p, name))
		return query_int(p, Q_LEAK_ALL, 0, NULL, removed, err);
	snprintf(ts, sizeof(ts), "%lld", (long long) at);
	values[0] = bucket_name(p, name);
	values[1] = at == PYRATE_NOW ? NULL : ts;
	return query_int(p, Q_LEAK, 2, values, removed, err);
}

int
pyrate_pg_flush(pyrate_bucket *b, const char *name, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	return query_int(p, Q_FLUSH, 1, values, NULL, err);
}

int
pyrate_pg_dispose(pyrate_bucket *b, const char *name, bool *existed, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];
	int64_t		v = 0;
	int			rc;

	NEED_NAME(p, name, err);
	values[0] = bucket_name(p, name);
	rc = query_int(p, Q_DISPOSE, 1, values, &v, err);
	if (existed)
		*existed = v != 0;
	return rc;
}

int
pyrate_pg_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	return query_int((pg_bucket *) b, Q_NOW, 0, NULL, ms, err);
}

int
pyrate_pg_define(pyrate_bucket *b, const char *pattern, const pyrate_rate *rates, int n,
				 const char *storage, bool dry_run, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	char		list[PYRATE_MAX_RATES * 48 + 3];
	size_t		len = 0;
	const char *values[4];
	int			i;

	if (!pattern || n < 1 || n > PYRATE_MAX_RATES || !rates)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: a pattern and 1 to %d rates are required",
						PYRATE_MAX_RATES);
	list[len++] = '{';
	for (i = 0; i < n; i++)
	{
		/* limit/interval in ms: the SQL type reads a bare number as milliseconds */
		len += snprintf(list + len, sizeof(list) - len, "%s%lld/%lld", i ? "," : "",
						(long long) rates[i].limit, (long long) rates[i].interval);
	}
	snprintf(list + len, sizeof(list) - len, "}");
	values[0] = pattern;
	values[1] = list;
	values[2] = storage;
	values[3] = dry_run ? "true" : "false";
	return query_int(p, Q_DEFINE, 4, values, NULL, err);
}

int
pyrate_pg_buckets(pyrate_bucket *b, const char *name, pyrate_pg_row_fn fn, void *user,
				  pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	const char *values[1];
	const char **cols;
	PGresult   *res = NULL;
	int			ncols;
	int			r;
	int			c;
	int			rc;

	if (!fn)
		return pyr_fail(err, PYRATE_EINVAL, "a row function is required");
	values[0] = bucket_name(p, name);
	pthread_mutex_lock(&p->mutex);
	rc = run_query(p, Q_BUCKETS, 1, values, &res, err);
	pthread_mutex_unlock(&p->mutex);
	if (rc != PYRATE_OK)
		return rc;
	ncols = PQnfields(res);
	/* the names, then the values of the row at hand */
	if (!(cols = malloc(2 * (ncols + 1) * sizeof(char *))))
	{
		PQclear(res);
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	}
	for (c = 0; c < ncols; c++)
		cols[c] = PQfname(res, c);
	for (r = 0; r < PQntuples(res); r++)
	{
		for (c = 0; c < ncols; c++)
			cols[ncols + 1 + c] = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
		if (fn(user, ncols, cols, cols + ncols + 1) != 0)
			break;
	}
	free(cols);
	PQclear(res);
	return PYRATE_OK;
}

/* ---- the bucket ops -------------------------------------------------- */

/* through the ops a bound name wins; an unbound bucket takes the item's */
static const char *
item_bucket(pyrate_bucket *b, const pyrate_item *item)
{
	pg_bucket  *p = (pg_bucket *) b;

	return p->name ? p->name : item->name;
}

static int
pg_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	return pyrate_pg_acquire(b, item_bucket(b, item), item->weight, item->timestamp, d, err);
}

static int
pg_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	return pyrate_pg_waiting(b, item_bucket(b, item), item->weight, item->timestamp, ms, err);
}

static int
pg_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	return pyrate_pg_leak(b, NULL, now, removed, err);
}

static int
pg_flush(pyrate_bucket *b, pyrate_error *err)
{
	return pyrate_pg_flush(b, NULL, err);
}

static int
pg_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	return pyrate_pg_count(b, NULL, units, err);
}

static int
pg_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	return pyrate_pg_peek(b, NULL, index, found, ts, weight, err);
}

static void
pg_close(pyrate_bucket *b)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			i;

	drop_conn(p);
	PQclear(p->ares);
	for (i = 0; i < N_QUERIES; i++)
		free(p->sql[i]);
	free(p->conninfo);
	free(p->name);
	free(p->schema);
	free(p->qschema);
	free(p->aname);
	if (p->protocol == PYRATE_PG_FASTPATH)
		pyr_watchdog_release();
	if (p->fn_result)
		munmap(p->fn_result, 2 * p->fn_result_len);
	pthread_mutex_destroy(&p->mutex);
	free(p);
}

static const pyrate_bucket_ops pg_ops = {
	"postgres", pg_put, pg_waiting, pg_leak, pg_flush, pg_count, pg_peek,
	pyrate_pg_now, NULL, NULL, pg_close
};

pyrate_bucket *
pyrate_pg_bucket_new(const pyrate_pg_options *opts, pyrate_error *err)
{
	pg_bucket  *p = calloc(1, sizeof(pg_bucket));
	pyrate_pg_options none = {0};

	if (!opts)
		opts = &none;
	if (!p)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (opts->timeout_ms < 0)
	{
		free(p);
		pyr_fail(err, PYRATE_EINVAL, "postgres: timeout_ms must not be negative");
		return NULL;
	}
	if (opts->protocol < PYRATE_PG_FASTPATH || opts->protocol > PYRATE_PG_PREPARED)
	{
		free(p);
		pyr_fail(err, PYRATE_EINVAL, "postgres: protocol %d is not one of PYRATE_PG_FASTPATH, "
				 "PYRATE_PG_UNNAMED, PYRATE_PG_PREPARED", (int) opts->protocol);
		return NULL;
	}
	pyrate_bucket_init(&p->base, &pg_ops, NULL, 0, NULL);
	pthread_mutex_init(&p->mutex, NULL);
	p->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
	p->protocol = opts->protocol;
	if (p->protocol == PYRATE_PG_FASTPATH)
		pyr_watchdog_hold();
	p->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
	p->name = opts->name ? strdup(opts->name) : NULL;
	p->schema = opts->schema ? strdup(opts->schema) : NULL;
	if (p->protocol == PYRATE_PG_FASTPATH)
		p->fn_result = fn_buffer_new(&p->fn_result_len);
	if (!p->conninfo || (opts->name && !p->name) || (opts->schema && !p->schema)
		|| (p->protocol == PYRATE_PG_FASTPATH && !p->fn_result))
	{
		pg_close(&p->base);
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	return &p->base;
}

/* ---- the async acquire --------------------------------------------- */

static int
async_fail(pg_bucket *p, int rc, pyrate_error *err)
{
	if (err)
		p->aerr = *err;
	p->astate = A_DONE;
	return rc;
}

static int
async_send_acquire(pg_bucket *p, pyrate_error *err)
{
	const char *values[3] = {p->aname, p->aweight, NULL};

	/* one unnamed statement, whatever the protocol: PQfn cannot be polled */
	if (!PQsendQueryParams(p->conn, p->sql[Q_ACQUIRE], 3, query_types[Q_ACQUIRE], values,
						   NULL, NULL, 0))
		return conn_fail(p, err, PYRATE_EBACKEND, "sending");
	p->astate = A_ACQUIRE;
	return PYRATE_OK;
}

int
pyrate_pg_acquire_start(pyrate_bucket *b, const char *name, int64_t weight, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc = PYRATE_OK;

	if (b->ops != &pg_ops)
		return pyr_fail(err, PYRATE_EINVAL, "async acquire needs a Postgres bucket");
	NEED_NAME(p, name, err);
	if (pyr_check_weight(weight, err) != PYRATE_OK)
		return PYRATE_EINVAL;
	pthread_mutex_lock(&p->mutex);
	if (p->astate != A_IDLE)
	{
		pthread_mutex_unlock(&p->mutex);
		return pyr_fail(err, PYRATE_EINVAL, "postgres: an async acquire is already in flight");
	}
	free(p->aname);
	p->aname = strdup(bucket_name(p, name));
	snprintf(p->aweight, sizeof(p->aweight), "%lld", (long long) weight);
	memset(&p->aerr, 0, sizeof(p->aerr));
	if (!p->aname)
		rc = pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	else if (conn_alive(p))
	{
		if (!p->sql[0] && p->schema)
			rc = build_sql(p, p->conn, p->schema, err);
		if (rc == PYRATE_OK)
			rc = async_send_acquire(p, err);
	}
	else if ((rc = start_connect(p, err)) == PYRATE_OK)
		p->astate = A_CONNECTING;
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

int
pyrate_pg_socket(pyrate_bucket *b)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			fd;

	pthread_mutex_lock(&p->mutex);
	fd = p->conn ? PQsocket(p->conn) : -1;
	pthread_mutex_unlock(&p->mutex);
	return fd;
}

/* one step of the state machine; caller holds the mutex */
static int
async_step(pg_bucket *p, pyrate_pg_poll *state, pyrate_error *err)
{
	int			rc;

	for (;;)
	{
		switch (p->astate)
		{
			case A_IDLE:
				return pyr_fail(err, PYRATE_EINVAL, "postgres: no async acquire in flight");
			case A_DONE:
				*state = PYRATE_PG_DONE;
				return PYRATE_OK;
			case A_CONNECTING:
				switch (PQconnectPoll(p->conn))
				{
					case PGRES_POLLING_READING:
						*state = PYRATE_PG_WANT_READ;
						return PYRATE_OK;
					case PGRES_POLLING_WRITING:
						*state = PYRATE_PG_WANT_WRITE;
						return PYRATE_OK;
					case PGRES_POLLING_FAILED:
						return async_fail(p, conn_fail(p, err, PYRATE_EBACKEND, "cannot connect"), err);
					default:
						break;
				}
				if (PQsetnonblocking(p->conn, 1) != 0)
					return async_fail(p, conn_fail(p, err, PYRATE_EBACKEND, "nonblocking"), err);
				if (p->sql[0] || (p->schema && build_sql(p, p->conn, p->schema, err) == PYRATE_OK))
					rc = async_send_acquire(p, err);
				else if (p->schema)
					rc = PYRATE_ENOMEM;
				else if (PQsendQueryParams(p->conn, schema_query, 0, NULL, NULL, NULL, NULL, 0))
				{
					p->astate = A_LOOKUP;
					rc = PYRATE_OK;
				}
				else
					rc = conn_fail(p, err, PYRATE_EBACKEND, "sending");
				if (rc != PYRATE_OK)
					return async_fail(p, rc, err);
				continue;
			case A_LOOKUP:
			case A_ACQUIRE:
				{
					int			f = PQflush(p->conn);
					PGresult   *res;
					PGresult   *first = NULL;

					if (f < 0)
						return async_fail(p, conn_fail(p, err, PYRATE_EBACKEND, "sending"), err);
					if (f == 1)
					{
						*state = PYRATE_PG_WANT_WRITE;
						return PYRATE_OK;
					}
					if (PQconsumeInput(p->conn) == 0)
						return async_fail(p, conn_fail(p, err, PYRATE_EBACKEND, "reading"), err);
					if (PQisBusy(p->conn))
					{
						*state = PYRATE_PG_WANT_READ;
						return PYRATE_OK;
					}
					while ((res = PQgetResult(p->conn)))
					{
						if (first)
							PQclear(res);
						else
							first = res;
					}
					if (!first)
						return async_fail(p, conn_fail(p, err, PYRATE_EBACKEND, "no result"), err);
					if (PQresultStatus(first) != PGRES_TUPLES_OK)
					{
						rc = result_fail(p, first, err);
						PQclear(first);
						return async_fail(p, rc, err);
					}
					if (p->astate == A_ACQUIRE)
					{
						p->ares = first;
						p->astate = A_DONE;
						continue;
					}
					if (PQntuples(first) != 1)
						rc = pyr_fail(err, PYRATE_ENOTFOUND,
									  "postgres: extension \"pyrate\" is not installed in this database");
					else
						rc = build_sql(p, p->conn, PQgetvalue(first, 0, 0), err);
					PQclear(first);
					if (rc == PYRATE_OK)
						rc = async_send_acquire(p, err);
					if (rc != PYRATE_OK)
						return async_fail(p, rc, err);
					continue;
				}
		}
	}
}

int
pyrate_pg_acquire_poll(pyrate_bucket *b, pyrate_pg_poll *state, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc;

	if (!state)
		return pyr_fail(err, PYRATE_EINVAL, "state is required");
	pthread_mutex_lock(&p->mutex);
	rc = async_step(p, state, err);
	pthread_mutex_unlock(&p->mutex);
	/* a failure is reported by finish too, so poll loops need one exit only */
	if (rc != PYRATE_OK && p->astate == A_DONE)
	{
		*state = PYRATE_PG_DONE;
		return PYRATE_OK;
	}
	return rc;
}

int
pyrate_pg_acquire_finish(pyrate_bucket *b, pyrate_decision *d, pyrate_error *err)
{
	pg_bucket  *p = (pg_bucket *) b;
	int			rc;

	if (!d)
		return pyr_fail(err, PYRATE_EINVAL, "decision is required");
	pthread_mutex_lock(&p->mutex);
	if (p->astate != A_DONE)
	{
		pthread_mutex_unlock(&p->mutex);
		return pyr_fail(err, PYRATE_EINVAL, "postgres: the async acquire has not finished");
	}
	if (p->ares)
		rc = parse_decision(p->ares, PYRATE_NOW, d, err);
	else
	{
		rc = p->aerr.code ? p->aerr.code : PYRATE_EBACKEND;
		if (err)
		{
			*err = p->aerr;
			err->code = rc;
		}
	}
	PQclear(p->ares);
	p->ares = NULL;
	p->astate = A_IDLE;
	pthread_mutex_unlock(&p->mutex);
	return rc;
}

/* ---- PostgresClock ------------------------------------------------- */

typedef struct pg_clock
{
	pyrate_clock base;
	pyrate_bucket *bucket;
} pg_clock;

static int
pg_clock_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	return pyrate_pg_now(((pg_clock *) clock)->bucket, ms, err);
}

static void
pg_clock_free(pyrate_clock *clock)
{
	pg_close(((pg_clock *) clock)->bucket);
	free(clock);
}

pyrate_clock *
pyrate_pg_clock_new(const pyrate_pg_options *opts, pyrate_error *err)
{
	pg_clock   *c = calloc(1, sizeof(pg_clock));

	if (!c)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	if (!(c->bucket = pyrate_pg_bucket_new(opts, err)))
	{
		free(c);
		return NULL;
	}
	c->base.now = pg_clock_now;
	c->base.free = pg_clock_free;
	return &c->base;
}
