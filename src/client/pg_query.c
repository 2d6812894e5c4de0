/*
 * pg_query.c — the Postgres bucket's statements: one per operation of the
 * extension, built once the extension's schema is known (given, or looked
 * up on the first connection) and sent without session state, so that a
 * pooler in transaction mode can hand each to any server connection: unnamed
 * statements with parameters, or with PYRATE_PG_PREPARED statements
 * prepared once per connection and again when the server does not know
 * them.  Bucket names are data: always parameters, never spliced into SQL.
 */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Parameters carry their types in the Parse message (query_types) rather than
 * as casts in the text: the same resolution, and less for the server to lex,
 * parse and analyze on every unnamed statement.  pyrate_define keeps its
 * casts (its array type belongs to the extension, its OID is not fixed).
 */
/* pyrate_define's first four arguments, as every version takes them */
#define DEFINE_ARGS \
	"SELECT %1$s.pyrate_define($1::pg_catalog.text, $2::%1$s.pyrate_rate[], " \
	"COALESCE($3::pg_catalog.text, pg_catalog.current_setting('pyrate.default_storage', true), 'table'), " \
	"$4::pg_catalog.bool"
/* 1.3: slots and max_buckets (NULL: exact, no cap) */
#define DEFINE_ARGS_1_3 \
	DEFINE_ARGS ", slots => $5::pg_catalog.int4, max_buckets => $6::pg_catalog.int8"

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
	DEFINE_ARGS ")",
	"SELECT b.* FROM %s.pyrate_buckets() b WHERE $1 IS NULL OR b.name = $1 ORDER BY b.name",
	DEFINE_ARGS_1_3 ")",
	/*
	 * 1.4: durable too, sent only for volatile buckets ($7 false): older
	 * servers know no such argument, and without it 1.4 makes durable ones
	 */
	DEFINE_ARGS_1_3 ", durable => $7::pg_catalog.bool)"
};

static const Oid acquire_types[3] = {PG_TEXTOID, PG_INT4OID, PG_INT8OID};
static const Oid text_types[1] = {PG_TEXTOID};
static const Oid peek_types[2] = {PG_TEXTOID, PG_INT4OID};
static const Oid leak_types[2] = {PG_TEXTOID, PG_INT8OID};

static const Oid *const query_types[N_QUERIES] = {
	acquire_types, acquire_types, text_types, peek_types, leak_types, NULL, text_types,
	text_types, NULL, NULL, text_types, NULL, NULL
};

static const char *const schema_query =
"SELECT n.nspname FROM pg_catalog.pg_extension e "
"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pyrate'";

int
pyr_pg_build_sql(pg_bucket *p, const char *schema, pyrate_error *err)
{
	char	   *q = PQescapeIdentifier(p->conn, schema, strlen(schema));
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

int
pyr_pg_send_schema_lookup(pg_bucket *p, pyrate_error *err)
{
	if (!PQsendQueryParams(p->conn, schema_query, 0, NULL, NULL, NULL, NULL, 0))
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	return PYRATE_OK;
}

int
pyr_pg_schema_found(pg_bucket *p, PGresult *res, pyrate_error *err)
{
	if (PQntuples(res) != 1)
		return pyr_fail(err, PYRATE_ENOTFOUND,
						"postgres: extension \"pyrate\" is not installed in this database (CREATE EXTENSION pyrate)");
	return pyr_pg_build_sql(p, PQgetvalue(res, 0, 0), err);
}

int
pyr_pg_ready(pg_bucket *p, int64_t now, int64_t deadline, pyrate_error *err)
{
	PGresult   *res = NULL;
	int			rc;

	if ((rc = pyr_pg_connect(p, now, deadline, err)) != PYRATE_OK || p->sql[0])
		return rc;
	if (p->schema)
		return pyr_pg_build_sql(p, p->schema, err);
	if ((rc = pyr_pg_send_schema_lookup(p, err)) != PYRATE_OK ||
		(rc = pyr_pg_collect(p, deadline, &res, err)) != PYRATE_OK)
		return rc;
	rc = pyr_pg_schema_found(p, res, err);
	PQclear(res);
	return rc;
}

int
pyr_pg_send(pg_bucket *p, int which, int nparams, const char *const *values, pyrate_error *err)
{
	if (!PQsendQueryParams(p->conn, p->sql[which], nparams, query_types[which], values,
						   NULL, NULL, 0))
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	return PYRATE_OK;
}

static const char *
stmt_name(int which)
{
	static const char *const names[N_QUERIES] = {
		"pyrate_acquire_1", "pyrate_waiting_1", "pyrate_count_1", "pyrate_peek_1",
		"pyrate_leak_1", "pyrate_leak_all_1", "pyrate_flush_1", "pyrate_dispose_1",
		"pyrate_now_1", "pyrate_define_1", "pyrate_buckets_1", "pyrate_define_2",
		"pyrate_define_3"
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
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	rc = pyr_pg_collect(p, deadline, &res, err);
	PQclear(res);
	/* another client of a pooled server connection may have prepared it already */
	if (rc == PYRATE_OK || (p->conn && strcmp(p->sqlstate, "42P05") == 0))
	{
		p->prepared |= 1u << which;
		return PYRATE_OK;
	}
	return rc;
}

int
pyr_pg_run(pg_bucket *p, int which, int nparams, const char *const *values, PGresult **out,
		   pyrate_error *err)
{
	int64_t		now = pyr_monotonic_ms();
	int64_t		deadline = now + p->timeout_ms;
	int			attempt;
	int			rc;

	for (attempt = 0; attempt < 2; attempt++)
	{
		if ((rc = pyr_pg_ready(p, now, deadline, err)) != PYRATE_OK)
			return rc;
		if (p->protocol != PYRATE_PG_PREPARED)
		{
			if ((rc = pyr_pg_send(p, which, nparams, values, err)) == PYRATE_OK &&
				(rc = pyr_pg_collect(p, deadline, out, err)) == PYRATE_OK)
				p->last_ok = now;
			return rc;
		}
		if ((rc = prepare(p, which, nparams, deadline, err)) != PYRATE_OK)
			return rc;
		if (!PQsendQueryPrepared(p->conn, stmt_name(which), nparams, values, NULL, NULL, 0))
			return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
		if ((rc = pyr_pg_collect(p, deadline, out, err)) == PYRATE_OK)
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

int
pyr_pg_int_result(PGresult *res, int64_t *out, pyrate_error *err)
{
	if (PQntuples(res) != 1 || PQnfields(res) < 1)
		return pyr_fail(err, PYRATE_ESERVER, "postgres: unexpected result shape");
	if (out && !PQgetisnull(res, 0, 0))
	{
		const char *v = PQgetvalue(res, 0, 0);

		*out = v[0] == 't' ? 1 : v[0] == 'f' ? 0 : strtoll(v, NULL, 10);
	}
	else if (out)
		*out = 0;
	return PYRATE_OK;
}

/*
 * The decision as one composite column, "(t,,0,4)" or "(f,5/1s,250,0)":
 * calling the function in the select list spares the executor a function
 * scan.  Fields are acquired, failing_rate (empty: NULL), retry_after_ms,
 * remaining; none of them ever needs quoting.
 */
int
pyr_pg_parse_decision(PGresult *res, int64_t at, pyrate_decision *d, pyrate_error *err)
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
