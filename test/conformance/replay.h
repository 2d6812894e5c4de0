/*
 * replay.h — replaying the shared conformance traces through any bucket.
 *
 * A driver answers the trace's operations; replay.c reads the trace, calls
 * the driver and compares.  One driver per bucket kind.
 */
#ifndef PYRATE_REPLAY_H
#define PYRATE_REPLAY_H

#include "pyrate_core.h"

#define REPLAY_ERR_LEN 512

/* command-line options a driver may use */
typedef struct replay_opts
{
	const char *dsn;			/* libpq connection string (sql, postgres) */
	const char *storage;		/* table | memory (sql) */
	const char *sqlite;			/* SQLite file (sqlite) */
	const char *redis;			/* host:port (redis) */
} replay_opts;

typedef struct replay_driver
{
	const char *name;
	bool		(*open) (void **ctx, const struct replay_opts *opts, char *err);
	/* start a scenario with rates in definition order */
	bool		(*scenario) (void *ctx, int id, const pyr_rate *rates, int n, char *err);
	/* put: admitted, and the failing rate (limit/interval) when rejected */
	bool		(*put) (void *ctx, int64_t ts, int64_t weight, bool *admitted,
						pyr_rate *failing, char *err);
	bool		(*waiting) (void *ctx, int64_t ts, int64_t weight, int64_t *ms, char *err);
	bool		(*count) (void *ctx, int64_t *units, char *err);
	bool		(*peek) (void *ctx, int64_t index, bool *found, int64_t *ts,
						 int64_t *weight, char *err);
	bool		(*leak) (void *ctx, int64_t ts, int64_t *removed, char *err);
	bool		(*flush) (void *ctx, char *err);
	/* a rate list the trace says must be rejected: set *rejected */
	bool		(*invalid) (void *ctx, const char *rates_text, bool *rejected, char *err);
	void		(*close) (void *ctx);
} replay_driver;

extern const replay_driver replay_core_driver;
extern const replay_driver replay_sql_driver;

#endif							/* PYRATE_REPLAY_H */
