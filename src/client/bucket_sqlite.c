/*
 * bucket_sqlite.c — SQLiteBucket: the log as rows of a table in a file.
 *
 * Rows are (seq, ts, weight, cum), cum being the cumulative units as in the
 * core log, so a window count is one index probe on ts and a peek one probe
 * on cum.  A put is one BEGIN IMMEDIATE transaction (the write lock is taken
 * before the check, so check-and-insert is atomic across processes), run
 * under the bucket's mutex and, with use_file_lock, an flock.  The decision
 * itself is the core module's pyr_decide over a view of the table.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

enum
{
	S_LAST, S_FIRST, S_SINCE, S_PEEK, S_INSERT, S_LEAK, S_FLUSH, S_NOW,
	S_BEGIN, S_COMMIT, S_ROLLBACK, N_STMTS
};

typedef struct sqlite_bucket
{
	pyrate_bucket base;
	pthread_mutex_t mutex;
	sqlite3    *db;
	sqlite3_stmt *stmt[N_STMTS];
	int			lock_fd;		/* flock file, or -1 */
	/* the view's state during one decision */
	int64_t		total;
	int64_t		base_units;
	bool		view_failed;
} sqlite_bucket;

static const char *const clock_sql =
"SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)";

static int
sql_fail(sqlite_bucket *s, pyrate_error *err, const char *what)
{
	int			rc = sqlite3_errcode(s->db);

	return pyr_fail(err, rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? PYRATE_ETIMEOUT : PYRATE_ESERVER,
					"sqlite: %s: %s", what, sqlite3_errmsg(s->db));
}

/* step a statement expecting at most one row; *row tells whether it had one */
static bool
step(sqlite3_stmt *st, bool *row)
{
	int			rc = sqlite3_step(st);

	*row = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

static bool
run(sqlite_bucket *s, int which)
{
	bool		row;
	bool		ok = step(s->stmt[which], &row);

	sqlite3_reset(s->stmt[which]);
	return ok;
}

/* one integer column from a one-row query, with an optional parameter */
static bool
query_int(sqlite_bucket *s, int which, const int64_t *param, int col, bool *found, int64_t *out)
{
	sqlite3_stmt *st = s->stmt[which];
	bool		ok;

	if (param)
		sqlite3_bind_int64(st, 1, *param);
	ok = step(st, found);
	if (ok && *found)
		*out = sqlite3_column_int64(st, col);
	sqlite3_reset(st);
	return ok;
}

/* total and base of the log, as in pyr_log */
static bool
load_totals(sqlite_bucket *s, int64_t *newest_ts)
{
	sqlite3_stmt *st = s->stmt[S_LAST];
	bool		found;
	bool		ok;

	ok = step(st, &found);
	s->total = 0;
	s->base_units = 0;
	if (newest_ts)
		*newest_ts = INT64_MIN;
	if (ok && found)
	{
		if (newest_ts)
			*newest_ts = sqlite3_column_int64(st, 0);
		s->total = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (ok && found)
		ok = query_int(s, S_FIRST, NULL, 0, &found, &s->base_units);
	return ok;
}

static int64_t
view_since(void *ctx, int64_t since)
{
	sqlite_bucket *s = ctx;
	bool		found;
	int64_t		before = 0;

	if (!query_int(s, S_SINCE, &since, 0, &found, &before))
		s->view_failed = true;
	return found ? s->total - before : 0;
}

static bool
view_peek(void *ctx, int64_t index, int64_t *ts, int64_t *weight)
{
	sqlite_bucket *s = ctx;
	sqlite3_stmt *st = s->stmt[S_PEEK];
	bool		found;

	if (index < 0 || index >= s->total - s->base_units)
		return false;
	sqlite3_bind_int64(st, 1, s->total - index);
	if (!step(st, &found))
		s->view_failed = true;
	if (found)
	{
		*ts = sqlite3_column_int64(st, 0);
		*weight = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return found;
}

/* take the bucket's locks and open a write transaction */
static int
begin(sqlite_bucket *s, pyrate_error *err)
{
	pthread_mutex_lock(&s->mutex);
	if (s->lock_fd >= 0 && flock(s->lock_fd, LOCK_EX) != 0)
	{
		pthread_mutex_unlock(&s->mutex);
		return pyr_fail(err, PYRATE_ESYSTEM, "sqlite: cannot lock the lock file: %s", strerror(errno));
	}
	if (!run(s, S_BEGIN))
	{
		int			rc = sql_fail(s, err, "begin");

		if (s->lock_fd >= 0)
			flock(s->lock_fd, LOCK_UN);
		pthread_mutex_unlock(&s->mutex);
		return rc;
	}
	return PYRATE_OK;
}

/* commit (or roll back after a failure) and release the locks */
static int
end(sqlite_bucket *s, int rc, pyrate_error *err)
{
	if (rc == PYRATE_OK && !run(s, S_COMMIT))
		rc = sql_fail(s, err, "commit");
	if (rc != PYRATE_OK)
		run(s, S_ROLLBACK);
	if (s->lock_fd >= 0)
		flock(s->lock_fd, LOCK_UN);
	pthread_mutex_unlock(&s->mutex);
	return rc;
}

static int
item_ts(sqlite_bucket *s, int64_t ts, int64_t *out, pyrate_error *err)
{
	bool		found;

	if (ts != PYRATE_NOW)
	{
		*out = ts;
		return PYRATE_OK;
	}
	if (!query_int(s, S_NOW, NULL, 0, &found, out) || !found)
		return sql_fail(s, err, "reading the clock");
	return PYRATE_OK;
}

/*
 * In the transaction begin() opened: the item's time, the newest stored
 * timestamp (when newest is not NULL) and the decision over what is stored.
 */
static int
sq_decide(sqlite_bucket *s, const pyrate_item *item, int64_t *ts, int64_t *newest,
		  pyr_decision *dec, pyrate_error *err)
{
	pyr_view	v = {s, view_since, view_peek, NULL};
	int			rc = item_ts(s, item->timestamp, ts, err);

	if (rc != PYRATE_OK)
		return rc;
	if (!load_totals(s, newest))
		return sql_fail(s, err, "reading the bucket");
	s->view_failed = false;
	pyr_decide(&v, CORE_RATES(&s->base), s->base.nrates, *ts, item->weight, dec);
	if (s->view_failed)
		return sql_fail(s, err, "reading the bucket");
	return PYRATE_OK;
}

static int
sq_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	pyr_decision dec;
	int64_t		ts = 0;
	int64_t		newest = 0;
	int			rc = begin(s, err);

	if (rc != PYRATE_OK)
		return rc;
	rc = sq_decide(s, item, &ts, &newest, &dec, err);
	if (rc == PYRATE_OK && dec.admitted && item->weight > 0)
	{
		sqlite3_stmt *st = s->stmt[S_INSERT];

		/* a clock stepping back never breaks the order, as in the core log */
		sqlite3_bind_int64(st, 1, ts < newest ? newest : ts);
		sqlite3_bind_int64(st, 2, item->weight);
		sqlite3_bind_int64(st, 3, s->total + item->weight);
		if (!run(s, S_INSERT))
			rc = sql_fail(s, err, "inserting the item");
	}
	rc = end(s, rc, err);
	if (rc == PYRATE_OK)
		pyr_fill_decision(b, &dec, ts, d);
	return rc;
}

static int
sq_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	pyr_decision dec;
	int64_t		ts = 0;
	int			rc = begin(s, err);

	if (rc != PYRATE_OK)
		return rc;
	rc = sq_decide(s, item, &ts, NULL, &dec, err);
	if (rc == PYRATE_OK)
		*ms = dec.waiting;
	return end(s, rc, err);
}

static int
sq_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int64_t		ts = 0;
	int64_t		before;
	int64_t		kept_before = 0;
	bool		found = false;
	int			rc = begin(s, err);

	if (rc != PYRATE_OK)
		return rc;
	rc = item_ts(s, now, &ts, err);
	before = ts - b->rates[b->nrates - 1].interval;
	if (rc == PYRATE_OK && (!load_totals(s, NULL) ||
							!query_int(s, S_SINCE, &before, 0, &found, &kept_before)))
		rc = sql_fail(s, err, "reading the bucket");
	if (rc == PYRATE_OK)
	{
		/* units before the first item kept, minus those before the oldest */
		*removed = (found ? kept_before : s->total) - s->base_units;
		sqlite3_bind_int64(s->stmt[S_LEAK], 1, before);
		if (!run(s, S_LEAK))
			rc = sql_fail(s, err, "leaking");
	}
	return end(s, rc, err);
}

static int
sq_flush(pyrate_bucket *b, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int			rc = begin(s, err);

	if (rc == PYRATE_OK && !run(s, S_FLUSH))
		rc = sql_fail(s, err, "flushing");
	return end(s, rc, err);
}

static int
sq_count(pyrate_bucket *b, int64_t *units, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int			rc;

	pthread_mutex_lock(&s->mutex);
	rc = load_totals(s, NULL) ? PYRATE_OK : sql_fail(s, err, "counting");
	*units = s->total - s->base_units;
	pthread_mutex_unlock(&s->mutex);
	return rc;
}

static int
sq_peek(pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int			rc = PYRATE_OK;

	pthread_mutex_lock(&s->mutex);
	s->view_failed = false;
	if (!load_totals(s, NULL))
		rc = sql_fail(s, err, "peeking");
	else
	{
		*found = view_peek(s, index, ts, weight);
		if (s->view_failed)
			rc = sql_fail(s, err, "peeking");
	}
	pthread_mutex_unlock(&s->mutex);
	return rc;
}

static int
sq_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int			rc;

	pthread_mutex_lock(&s->mutex);
	rc = item_ts(s, PYRATE_NOW, ms, err);
	pthread_mutex_unlock(&s->mutex);
	return rc;
}

static void
sq_close(pyrate_bucket *b)
{
	sqlite_bucket *s = (sqlite_bucket *) b;
	int			i;

	for (i = 0; i < N_STMTS; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	pthread_mutex_destroy(&s->mutex);
	free(s);
}

static const pyrate_bucket_ops sqlite_ops = {
	"sqlite", sq_put, sq_waiting, sq_leak, sq_flush, sq_count, sq_peek,
	sq_now, NULL, NULL, sq_close
};

/* table name as an SQL identifier: double quotes, inner quotes doubled */
static bool
quote_ident(const char *name, char *buf, size_t buflen)
{
	size_t		o = 0;

	if (buflen < 3)
		return false;
	buf[o++] = '"';
	for (; *name; name++)
	{
		if (o + 3 >= buflen)
			return false;
		if (*name == '"')
			buf[o++] = '"';
		buf[o++] = *name;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return true;
}

static int
open_db(const char *path, int busy_ms, sqlite3 **db, pyrate_error *err)
{
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
						NULL) != SQLITE_OK)
	{
		int			rc = pyr_fail(err, PYRATE_EBACKEND, "sqlite: cannot open \"%s\": %s", path,
								  *db ? sqlite3_errmsg(*db) : "out of memory");

		sqlite3_close(*db);
		*db = NULL;
		return rc;
	}
	sqlite3_busy_timeout(*db, busy_ms);
	return PYRATE_OK;
}

/*
 * Run the setup script (WAL, the table and its indexes), again while
 * another process holds the file: processes opening one file at once can
 * find it locked in ways the busy handler does not wait out (switching the
 * journal to WAL, or a reader that must become the writer), so the whole
 * script is retried until busy_ms have passed.  Each statement is
 * idempotent.
 */
static int
setup_db(sqlite3 *db, const char *sql, int busy_ms, char **errmsg)
{
	int64_t		deadline = pyr_monotonic_ms() + busy_ms;
	int			rc;

	while ((rc = sqlite3_exec(db, sql, NULL, NULL, errmsg)) != SQLITE_OK &&
		   ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) && pyr_monotonic_ms() < deadline)
	{
		sqlite3_free(*errmsg);
		*errmsg = NULL;
		pyr_sleep_ms(5);
	}
	return rc;
}

pyrate_bucket *
pyrate_sqlite_bucket_new(const pyrate_rate *rates, int n, const pyrate_sqlite_options *opts,
						 pyrate_error *err)
{
	sqlite_bucket *s;
	char		table[256];
	char		sql[1024];
	char	   *errmsg = NULL;
	const char *q[N_STMTS];
	int			i;

	if (!opts || !opts->path)
	{
		pyr_fail(err, PYRATE_EINVAL, "sqlite: a file path is required");
		return NULL;
	}
	if (n < 1)
	{
		pyr_fail(err, PYRATE_EINVAL, "a SQLite bucket needs at least one rate");
		return NULL;
	}
	if (!quote_ident(opts->table ? opts->table : "rate_bucket", table, sizeof(table) - 8))
	{
		pyr_fail(err, PYRATE_EINVAL, "sqlite: table name too long");
		return NULL;
	}
	if (!(s = calloc(1, sizeof(sqlite_bucket))))
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	s->lock_fd = -1;
	if (pyrate_bucket_init(&s->base, &sqlite_ops, rates, n, err) != PYRATE_OK)
	{
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->mutex, NULL);
	if (open_db(opts->path, opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000, &s->db, err) != PYRATE_OK)
	{
		sq_close(&s->base);
		return NULL;
	}
	if (opts->use_file_lock)
	{
		char		lockpath[4096];

		snprintf(lockpath, sizeof(lockpath), "%s.lock", opts->path);
		if ((s->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		{
			pyr_fail(err, PYRATE_ESYSTEM, "sqlite: cannot open lock file \"%s\": %s", lockpath, strerror(errno));
			sq_close(&s->base);
			return NULL;
		}
	}
	/* the index names derive from the table name: strip its closing quote */
	table[strlen(table) - 1] = '\0';
	if (!opts->require_table)
		snprintf(sql, sizeof(sql),
				 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
				 "CREATE TABLE IF NOT EXISTS %s\" (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
				 "weight INTEGER NOT NULL, cum INTEGER NOT NULL);"
				 "CREATE INDEX IF NOT EXISTS %s_ts\" ON %s\" (ts);"
				 "CREATE INDEX IF NOT EXISTS %s_cum\" ON %s\" (cum);",
				 table, table, table, table, table);
	else
	{
		sqlite3_stmt *st = NULL;
		bool		found = false;

		if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
							   -1, &st, NULL) == SQLITE_OK)
		{
			sqlite3_bind_text(st, 1, opts->table ? opts->table : "rate_bucket", -1, SQLITE_STATIC);
			step(st, &found);
		}
		sqlite3_finalize(st);
		if (!found)
		{
			pyr_fail(err, PYRATE_ENOTFOUND, "sqlite: table %s\" does not exist (require_table is set)", table);
			sq_close(&s->base);
			return NULL;
		}
		snprintf(sql, sizeof(sql), "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
	}
	if (setup_db(s->db, sql, opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 5000, &errmsg) != SQLITE_OK)
	{
		pyr_fail(err, PYRATE_ESERVER, "sqlite: cannot set up \"%s\": %s", opts->path, errmsg);
		sqlite3_free(errmsg);
		sq_close(&s->base);
		return NULL;
	}
	q[S_LAST] = "SELECT ts, cum FROM %s\" ORDER BY seq DESC LIMIT 1";
	q[S_FIRST] = "SELECT cum - weight FROM %s\" ORDER BY seq LIMIT 1";
	q[S_SINCE] = "SELECT cum - weight FROM %s\" WHERE ts >= ?1 ORDER BY ts, seq LIMIT 1";
	q[S_PEEK] = "SELECT ts, weight FROM %s\" WHERE cum >= ?1 ORDER BY cum LIMIT 1";
	q[S_INSERT] = "INSERT INTO %s\" (ts, weight, cum) VALUES (?1, ?2, ?3)";
	q[S_LEAK] = "DELETE FROM %s\" WHERE ts < ?1";
	q[S_FLUSH] = "DELETE FROM %s\"";
	q[S_NOW] = clock_sql;
	q[S_BEGIN] = "BEGIN IMMEDIATE";
	q[S_COMMIT] = "COMMIT";
	q[S_ROLLBACK] = "ROLLBACK";
	for (i = 0; i < N_STMTS; i++)
	{
		snprintf(sql, sizeof(sql), q[i], table);
		if (sqlite3_prepare_v2(s->db, sql, -1, &s->stmt[i], NULL) != SQLITE_OK)
		{
			sql_fail(s, err, "preparing a statement");
			sq_close(&s->base);
			return NULL;
		}
	}
	return &s->base;
}

/* ---- SQLiteClock ------------------------------------------------------- */

typedef struct sqlite_clock
{
	pyrate_clock base;
	pthread_mutex_t mutex;
	sqlite3    *db;
	sqlite3_stmt *now;
} sqlite_clock;

static int
sqlite_clock_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err)
{
	sqlite_clock *c = (sqlite_clock *) clock;
	bool		found = false;
	int			rc = PYRATE_OK;

	pthread_mutex_lock(&c->mutex);
	if (!step(c->now, &found) || !found)
		rc = pyr_fail(err, PYRATE_ESERVER, "sqlite clock: %s", sqlite3_errmsg(c->db));
	else
		*ms = sqlite3_column_int64(c->now, 0);
	sqlite3_reset(c->now);
	pthread_mutex_unlock(&c->mutex);
	return rc;
}

static void
sqlite_clock_free(pyrate_clock *clock)
{
	sqlite_clock *c = (sqlite_clock *) clock;

	sqlite3_finalize(c->now);
	sqlite3_close(c->db);
	pthread_mutex_destroy(&c->mutex);
	free(c);
}

pyrate_clock *
pyrate_sqlite_clock_new(const char *path, pyrate_error *err)
{
	sqlite_clock *c = calloc(1, sizeof(sqlite_clock));

	if (!c)
	{
		pyr_fail(err, PYRATE_ENOMEM, "out of memory");
		return NULL;
	}
	c->base.now = sqlite_clock_now;
	c->base.free = sqlite_clock_free;
	pthread_mutex_init(&c->mutex, NULL);
	if (open_db(path ? path : ":memory:", 5000, &c->db, err) != PYRATE_OK)
	{
		pthread_mutex_destroy(&c->mutex);
		free(c);
		return NULL;
	}
	if (sqlite3_prepare_v2(c->db, clock_sql, -1, &c->now, NULL) != SQLITE_OK)
	{
		pyr_fail(err, PYRATE_ESERVER, "sqlite clock: %s", sqlite3_errmsg(c->db));
		sqlite_clock_free(&c->base);
		return NULL;
	}
	return &c->base;
}
