/*
 * pg_async.c — the Postgres bucket's acquire driven by the caller's event
 * loop: start sends without blocking (connecting first when needed), poll
 * steps a state machine as the socket becomes ready, finish hands over the
 * decision.  One unnamed statement, whatever the protocol: a function call
 * (PQfn) cannot be polled.
 */
#include "pg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the acquire is over, failed: finish reports p->aerr */
static int
async_fail(pg_bucket *p, int rc)
{
	p->astate = A_DONE;
	return rc;
}

static int
send_acquire(pg_bucket *p, pyrate_error *err)
{
	const char *values[3] = {p->aname, p->aweight, NULL};
	int			rc;

	if ((rc = pyr_pg_send(p, Q_ACQUIRE, 3, values, err)) == PYRATE_OK)
		p->astate = A_ACQUIRE;
	return rc;
}

/* connected: send the acquire, or first the lookup of a schema not yet known */
static int
connected(pg_bucket *p, pyrate_error *err)
{
	int			rc;

	if (!p->sql[0] && p->schema && (rc = pyr_pg_build_sql(p, p->schema, err)) != PYRATE_OK)
		return rc;
	if (p->sql[0])
		return send_acquire(p, err);
	if ((rc = pyr_pg_send_schema_lookup(p, err)) == PYRATE_OK)
		p->astate = A_LOOKUP;
	return rc;
}

int
pyr_pg_async_start(pg_bucket *p, const char *name, int64_t weight, pyrate_error *err)
{
	int			rc;

	if (p->astate != A_IDLE)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: an async acquire is already in flight");
	free(p->aname);
	if (!(p->aname = strdup(name)))
		return pyr_fail(err, PYRATE_ENOMEM, "out of memory");
	snprintf(p->aweight, sizeof(p->aweight), "%lld", (long long) weight);
	pyr_clear_error(&p->aerr);
	if (pyr_pg_alive(p))
		return connected(p, err);
	if ((rc = pyr_pg_start_connect(p, err)) == PYRATE_OK)
		p->astate = A_CONNECTING;
	return rc;
}

/* one step of the state machine; a failure ends the acquire (err is p->aerr) */
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
						return async_fail(p, pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "cannot connect"));
					default:
						break;
				}
				if (PQsetnonblocking(p->conn, 1) != 0)
					return async_fail(p, pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "nonblocking"));
				if ((rc = connected(p, err)) != PYRATE_OK)
					return async_fail(p, rc);
				continue;
			case A_LOOKUP:
			case A_ACQUIRE:
				{
					int			f = PQflush(p->conn);
					PGresult   *res;
					PGresult   *first = NULL;

					if (f < 0)
						return async_fail(p, pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "sending"));
					if (f == 1)
					{
						*state = PYRATE_PG_WANT_WRITE;
						return PYRATE_OK;
					}
					if (PQconsumeInput(p->conn) == 0)
						return async_fail(p, pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "reading"));
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
						return async_fail(p, pyr_pg_conn_fail(p, err, PYRATE_EBACKEND, "no result"));
					if (PQresultStatus(first) != PGRES_TUPLES_OK)
					{
						rc = pyr_pg_result_fail(p, first, err);
						PQclear(first);
						return async_fail(p, rc);
					}
					if (p->astate == A_ACQUIRE)
					{
						p->ares = first;
						p->astate = A_DONE;
						continue;
					}
					rc = pyr_pg_schema_found(p, first, err);
					PQclear(first);
					if (rc == PYRATE_OK)
						rc = send_acquire(p, err);
					if (rc != PYRATE_OK)
						return async_fail(p, rc);
					continue;
				}
		}
	}
}

int
pyr_pg_async_poll(pg_bucket *p, pyrate_pg_poll *state, pyrate_error *err)
{
	int			rc = async_step(p, state, &p->aerr);

	/* a failure is reported by finish too, so poll loops need one exit only */
	if (rc != PYRATE_OK && p->astate == A_DONE)
	{
		*state = PYRATE_PG_DONE;
		return PYRATE_OK;
	}
	return rc == PYRATE_OK ? rc : pyr_forward(err, &p->aerr, rc);
}

int
pyr_pg_async_finish(pg_bucket *p, pyrate_decision *d, pyrate_error *err)
{
	int			rc;

	if (p->astate != A_DONE)
		return pyr_fail(err, PYRATE_EINVAL, "postgres: the async acquire has not finished");
	if (p->ares)
		rc = pyr_pg_parse_decision(p->ares, PYRATE_NOW, d, err);
	else
		rc = pyr_forward(err, &p->aerr, p->aerr.code ? p->aerr.code : PYRATE_EBACKEND);
	PQclear(p->ares);
	p->ares = NULL;
	p->astate = A_IDLE;
	return rc;
}
