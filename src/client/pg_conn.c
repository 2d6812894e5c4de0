/*
 * pg_conn.c — the Postgres bucket's connection: connect and reconnect, the
 * deadline of every wait, and errors.
 *
 * The connection is nonblocking and every wait is a poll() bounded by the
 * call's deadline, so a server that never answers costs timeout_ms and no
 * more.  A connection that failed or timed out is dropped and the next call
 * opens a new one.  A failed result becomes an error with a code, a
 * one-line message and the server's SQLSTATE, DETAIL and HINT.
 */
#include "pg_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
pyr_pg_drop(pg_bucket *p)
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

bool
pyr_pg_alive(pg_bucket *p)
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

int
pyr_pg_conn_fail(pg_bucket *p, pyrate_error *err, int code, const char *what)
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
	pyr_pg_drop(p);
	pyr_fail(err, code, "postgres: %s: %s", what, text[0] ? one_line(text) : "connection lost");
	if (err && rest)
		pyr_set_text(err->detail, sizeof(err->detail), rest);
	return code;
}

int
pyr_pg_timed_out(pg_bucket *p, pyrate_error *err, const char *what)
{
	pyr_pg_drop(p);
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

/* the code by the SQLSTATE: bad data, not found, the connection (dropped) or other */
int
pyr_pg_result_fail(pg_bucket *p, PGresult *res, pyrate_error *err)
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
		rc = pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, primary ? one_line(text) : "query failed");
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

int
pyr_pg_collect(pg_bucket *p, int64_t deadline, PGresult **out, pyrate_error *err)
{
	PGresult   *res;
	PGresult   *first = NULL;
	int			f;

	p->sqlstate[0] = '\0';
	while ((f = PQflush(p->conn)) == 1)
	{
		if (!wait_socket(p->conn, true, deadline))
			return pyr_pg_timed_out(p, err, "sending");
		if (PQconsumeInput(p->conn) == 0)
			return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	}
	if (f < 0)
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending");
	for (;;)
	{
		while (PQisBusy(p->conn))
		{
			if (!wait_socket(p->conn, false, deadline))
			{
				PQclear(first);
				return pyr_pg_timed_out(p, err, "waiting for the server");
			}
			if (PQconsumeInput(p->conn) == 0)
			{
				PQclear(first);
				return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "reading");
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
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "no result");
	if (PQresultStatus(first) != PGRES_TUPLES_OK && PQresultStatus(first) != PGRES_COMMAND_OK)
	{
		int			rc = pyr_pg_result_fail(p, first, err);

		PQclear(first);
		return rc;
	}
	*out = first;
	return PYRATE_OK;
}

int
pyr_pg_start_connect(pg_bucket *p, pyrate_error *err)
{
	pyr_pg_drop(p);
	p->conn = PQconnectStart(p->conninfo);
	if (!p->conn)
		return pyr_fail(err, PYRATE_ENOMEM, "postgres: out of memory");
	PQsetNoticeReceiver(p->conn, notice_receiver, p);
	if (PQstatus(p->conn) == CONNECTION_BAD)
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "cannot connect");
	return PYRATE_OK;
}

/*
 * How long after a statement succeeded the connection is taken as alive
 * without reading the socket first.  Busy callers spare a system call per
 * statement; a server going away in that moment fails the call that finds
 * out (which drops the connection) instead of the one after.
 */
#define FRESH_MS 5

int
pyr_pg_connect(pg_bucket *p, int64_t now, int64_t deadline, pyrate_error *err)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int			rc;

	if (p->conn && now - p->last_ok <= FRESH_MS && !p->doomed && PQstatus(p->conn) == CONNECTION_OK &&
		!PQisBusy(p->conn))
		return PYRATE_OK;
	/* read what arrived while idle: a server that went away shows up here */
	if (pyr_pg_alive(p))
		return PYRATE_OK;
	if ((rc = pyr_pg_start_connect(p, err)) != PYRATE_OK)
		return rc;
	while (st != PGRES_POLLING_OK)
	{
		if (st == PGRES_POLLING_FAILED)
			return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "cannot connect");
		if (!wait_socket(p->conn, st == PGRES_POLLING_WRITING, deadline))
			return pyr_pg_timed_out(p, err, "connecting");
		st = PQconnectPoll(p->conn);
	}
	if (PQsetnonblocking(p->conn, 1) != 0)
		return pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "cannot make the connection nonblocking");
	return PYRATE_OK;
}
