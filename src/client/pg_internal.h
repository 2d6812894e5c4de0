/*
 * pg_internal.h — the Postgres bucket's layers and the struct they share.
 * Each file uses only those above it in this list:
 *
 *   pg_conn.c          the connection: connect and reconnect within a
 *                      deadline, wait for a statement's result, map a failed
 *                      result to an error (the server's SQLSTATE, DETAIL, HINT)
 *   pg_query.c         the statements: built once the schema is known, sent
 *                      unnamed or prepared, their results read
 *   pg_fastpath.c      pyrate_acquire as the protocol's function call, into
 *                      a guarded result buffer
 *   pg_async.c         the acquire driven by the caller's event loop
 *   bucket_postgres.c  the bucket: the SQL surface by name, the ops,
 *                      PostgresClock
 *
 * Below the bucket every function expects the caller to hold the bucket's
 * mutex.
 */
#ifndef PYRATE_PG_INTERNAL_H
#define PYRATE_PG_INTERNAL_H

#include "internal.h"

#include <libpq-fe.h>

/* the statements (pg_query.c) */
enum
{
	Q_ACQUIRE, Q_WAITING, Q_COUNT, Q_PEEK, Q_LEAK, Q_LEAK_ALL, Q_FLUSH,
	Q_DISPOSE, Q_NOW, Q_DEFINE, Q_BUCKETS, Q_DEFINE_WITH, Q_DEFINE_VOLATILE, N_QUERIES
};

/* built-in type OIDs (pg_type.dat) */
#define PG_TEXTOID 25
#define PG_INT4OID 23
#define PG_INT8OID 20

typedef enum async_state
{
	A_IDLE, A_CONNECTING, A_LOOKUP, A_ACQUIRE, A_DONE
} async_state;

typedef struct pg_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;		/* guards everything below */
	char	   *name;			/* bound bucket name, or NULL */
	/* the connection (pg_conn.c) */
	PGconn	   *conn;			/* NULL until (re)connected */
	char	   *conninfo;
	int			timeout_ms;
	int64_t		last_ok;		/* monotonic ms at the start of the last statement that succeeded */
	bool		doomed;			/* the server said FATAL while we were idle */
	char		sqlstate[6];	/* of the last failed statement */
	/* the statements (pg_query.c) */
	pyrate_pg_protocol protocol;
	char	   *schema;			/* given or looked up; NULL until known */
	char	   *sql[N_QUERIES];	/* built once the schema is known */
	char	   *qschema;		/* the schema as a quoted identifier, likewise */
	uint32_t	prepared;		/* bit per query prepared on conn */
	/* the fast path (pg_fastpath.c) */
	Oid			fn_acquire;		/* pyrate_acquire's OID on conn; 0: not looked up */
	bool		fn_missing;		/* looked up on conn and not found: use the statement */
	unsigned char *fn_result;	/* PQfn's result buffer (pyr_pg_fn_buffer_new) */
	size_t		fn_result_len;
	pyr_watch	watch;			/* the deadline of a fast-path call */
	/* the async acquire (pg_async.c) */
	async_state astate;
	char	   *aname;
	char		aweight[24];
	PGresult   *ares;
	pyrate_error aerr;
} pg_bucket;

/* ---- pg_conn.c ---- */

/* close the connection and forget what was known about it (prepared, fn_acquire) */
void		pyr_pg_drop(pg_bucket *p);
/* a connection still good as far as what it received while idle says */
bool		pyr_pg_alive(pg_bucket *p);
/* start connecting (nonblocking); PQconnectPoll finishes it */
int			pyr_pg_start_connect(pg_bucket *p, pyrate_error *err);
/* a connection that is up: reuse it, or connect by deadline (monotonic ms) */
int			pyr_pg_connect(pg_bucket *p, int64_t now, int64_t deadline, pyrate_error *err);
/* libpq's message about the connection as err (code, what failed); drops it */
int			pyr_pg_conn_fail(pg_bucket *p, pyrate_error *err, int code, const char *what);
/* the deadline passed while what: ETIMEOUT, and the connection is dropped */
int			pyr_pg_timed_out(pg_bucket *p, pyrate_error *err, const char *what);
/* a failed result as err, with the server's SQLSTATE, DETAIL and HINT */
int			pyr_pg_result_fail(pg_bucket *p, PGresult *res, pyrate_error *err);
/* wait for and return the one result of the statement sent last */
int			pyr_pg_collect(pg_bucket *p, int64_t deadline, PGresult **out, pyrate_error *err);

/* ---- pg_query.c ---- */

/* build the statements for schema */
int			pyr_pg_build_sql(pg_bucket *p, const char *schema, pyrate_error *err);
/* send the lookup of the extension's schema; its result goes to pyr_pg_schema_found */
int			pyr_pg_send_schema_lookup(pg_bucket *p, pyrate_error *err);
int			pyr_pg_schema_found(pg_bucket *p, PGresult *res, pyrate_error *err);
/* connected, with the statements built: pyr_pg_connect, then the schema when unknown */
int			pyr_pg_ready(pg_bucket *p, int64_t now, int64_t deadline, pyrate_error *err);
/* send statement which as an unnamed statement with text parameters */
int			pyr_pg_send(pg_bucket *p, int which, int nparams, const char *const *values,
						pyrate_error *err);
/* run statement which by the bucket's protocol; the caller clears *out */
int			pyr_pg_run(pg_bucket *p, int which, int nparams, const char *const *values,
					   PGresult **out, pyrate_error *err);
/* one int8 (or boolean) from row 0, column 0 of res; NULL reads as 0 */
int			pyr_pg_int_result(PGresult *res, int64_t *out, pyrate_error *err);
/* pyrate_acquire's decision, as the text of its composite */
int			pyr_pg_parse_decision(PGresult *res, int64_t at, pyrate_decision *d, pyrate_error *err);

/* ---- pg_fastpath.c ---- */

unsigned char *pyr_pg_fn_buffer_new(size_t *len);
void		pyr_pg_fn_buffer_free(unsigned char *buf, size_t len);
/*
 * pyrate_acquire by function call.  PYRATE_ENOTFOUND with *fallback set when
 * the extension's own function is not there: the statement then reports
 * what is wrong.
 */
int			pyr_pg_fast_acquire(pg_bucket *p, const char *name, int64_t weight, int64_t at,
								pyrate_decision *d, bool *fallback, pyrate_error *err);

/* ---- pg_async.c ---- */

int			pyr_pg_async_start(pg_bucket *p, const char *name, int64_t weight, pyrate_error *err);
int			pyr_pg_async_poll(pg_bucket *p, pyrate_pg_poll *state, pyrate_error *err);
int			pyr_pg_async_finish(pg_bucket *p, pyrate_decision *d, pyrate_error *err);

#endif							/* PYRATE_PG_INTERNAL_H */
