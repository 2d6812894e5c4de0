/*
 * pg_fastpath.c — pyrate_acquire as the protocol's function call (PQfn),
 * by OID, looked up once per connection: the server neither parses nor
 * plans nor starts an executor, which makes a put cheaper than a prepared
 * statement, with nothing prepared.  Arguments and the decision travel in
 * binary.  The OID names the function for as long as it exists; the
 * extension dropped and created again answers "no such function" once, and
 * the call looks the OID up again.  PQfn waits inside libpq without a
 * bound, so a watch (watchdog.c) shuts its socket down at the deadline.
 */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const Oid text_type[1] = {PG_TEXTOID};

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

/* find pyrate_acquire(text, int4, int8) on this connection */
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
	if (!PQsendQueryParams(p->conn, fn_query, 1, text_type, values, NULL, NULL, 0))
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	if ((rc = pyr_pg_collect(p, deadline, &res, err)) != PYRATE_OK)
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
unsigned char *
pyr_pg_fn_buffer_new(size_t *len)
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

void
pyr_pg_fn_buffer_free(unsigned char *buf, size_t len)
{
	if (buf)
		munmap(buf, 2 * len);
}

int
pyr_pg_fast_acquire(pg_bucket *p, const char *name, int64_t weight, int64_t at, pyrate_decision *d,
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

		if ((rc = pyr_pg_ready(p, now, deadline, err)) != PYRATE_OK)
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
			return pyr_pg_timed_out(p, err, "waiting for the server");
		}
		if (!res)
			return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "function call");
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
			rc = pyr_pg_result_fail(p, res, err);
			PQclear(res);
			return rc;
		}
		PQclear(res);
		p->last_ok = now;
		if (len < 0 || (size_t) len > p->fn_result_len)
			return pyr_pg_conn_fail(p, err, PYRATE_ESERVER, "pyrate_acquire answered an unexpected value");
		return parse_binary_decision(p->fn_result, len, at, d, err);
	}
	return rc;
}
