/*
 * pyrate.h — libpyrate, the pyrate-limiter API in C.
 *
 * A sliding-window-log rate limiter with several rates per bucket, mirroring
 * pyrate-limiter class by class:
 *
 *   Rate, Duration, validate_rate_list   pyrate_rate, PYRATE_SECOND..., pyrate_rates_validate
 *   RateItem                             pyrate_item
 *   AbstractBucket                       pyrate_bucket + pyrate_bucket_ops (implement your own)
 *   InMemoryBucket                       pyrate_memory_bucket_new
 *   MultiprocessBucket                   pyrate_multiprocess_bucket_new / _open
 *   SQLiteBucket, SQLiteClock            pyrate_sqlite_bucket_new, pyrate_sqlite_clock_new
 *   RedisBucket                          pyrate_redis_bucket_new
 *   PostgresBucket, PostgresClock        pyrate_pg_bucket_new, pyrate_pg_clock_new
 *   (names over several primaries)       pyrate_pg_sharded_factory_new, pyrate_shard_of
 *   BucketFactory, SingleBucketFactory   pyrate_factory_new, pyrate_single_bucket_factory_new
 *   Leaker                               the factory's leak thread
 *   Limiter                              pyrate_limiter_new, pyrate_try_acquire
 *   as_decorator                         pyrate_call
 *   try_acquire_async                    pyrate_pg_acquire_start / _poll / _finish
 *   MonotonicClock, TimeClock            pyrate_clock_monotonic, pyrate_clock_time
 *   limiter_factory helpers              pyrate_limiter_new_memory, ..._sqlite, ..._redis, ..._postgres,
 *                                        ..._postgres_sharded
 *
 * Conventions: functions returning int return a pyrate_code (0 = success)
 * and, on failure, fill *err when err is not NULL.  Nothing prints, nothing
 * aborts.  Timestamps are milliseconds, from 0 to the end of the year 9999
 * (the bucket methods clamp others into that range, as the core log does);
 * PYRATE_NOW as a timestamp means "the bucket's own clock stamps it" (the
 * Postgres, SQLite or Redis server clock for those buckets).  Built-in
 * buckets, factories and limiters are safe to use from several threads at
 * once.
 */
#ifndef PYRATE_H
#define PYRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

#define PYRATE_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------- */

typedef enum pyrate_code
{
	PYRATE_OK = 0,
	PYRATE_EINVAL,				/* invalid argument (bad rate list, weight < 0, ...) */
	PYRATE_ENOMEM,				/* out of memory */
	PYRATE_EBACKEND,			/* backend unreachable or connection lost */
	PYRATE_ETIMEOUT,			/* backend did not answer in time */
	PYRATE_ENOTFOUND,			/* no bucket definition matches the name */
	PYRATE_ESERVER,				/* the backend reported an error */
	PYRATE_EFULL,				/* a fixed-size bucket has no room left */
	PYRATE_EUNSUPPORTED,		/* the bucket does not implement this operation */
	PYRATE_ESYSTEM				/* an operating-system call failed */
} pyrate_code;

#define PYRATE_MSG_LEN 256

/*
 * An error: its code, a one-line message and, for an error the server
 * reported, the server's SQLSTATE, DETAIL and HINT ("" when there is none).
 * Plain arrays, nothing to free: an error is copied and kept by value.
 * Text longer than a field is cut at a character boundary.
 */
typedef struct pyrate_error
{
	int			code;
	char		message[PYRATE_MSG_LEN];
	char		sqlstate[6];	/* "42704", or "" */
	char		detail[PYRATE_MSG_LEN];
	char		hint[PYRATE_MSG_LEN];
} pyrate_error;

/* "PYRATE_EINVAL" and so on. */
const char *pyrate_code_name(int code);

/* ---- rates and durations -------------------------------------------- */

#define PYRATE_SECOND	INT64_C(1000)
#define PYRATE_MINUTE	INT64_C(60000)
#define PYRATE_HOUR		INT64_C(3600000)
#define PYRATE_DAY		INT64_C(86400000)
#define PYRATE_WEEK		INT64_C(604800000)
#define PYRATE_MAX_RATES 32
/* pyrate_define's slots => n, at most (extension 1.3) */
#define PYRATE_MAX_SLOTS 1000

/* Rate: limit units per interval milliseconds. */
typedef struct pyrate_rate
{
	int64_t		limit;
	int64_t		interval;
} pyrate_rate;

/* "5/s", "100/1m", "10/1500ms", "1000/h"; a bare number is milliseconds. */
int			pyrate_rate_parse(const char *text, pyrate_rate *out, pyrate_error *err);
/* Canonical text ("5/1s") into buf. */
void		pyrate_rate_format(const pyrate_rate *rate, char *buf, size_t buflen);
/* Duration by name (SECOND ... WEEK, any case), or -1. */
int64_t		pyrate_duration(const char *name);
/* Duration.readable: "1.5s". */
void		pyrate_duration_readable(int64_t ms, char *buf, size_t buflen);

/*
 * validate_rate_list: sorts rates by interval and checks that intervals and
 * limits strictly increase and density never increases.  PYRATE_EINVAL with
 * the rule and the offending rates otherwise.
 */
int			pyrate_rates_validate(pyrate_rate *rates, int n, pyrate_error *err);

/* ---- items and clocks ------------------------------------------------- */

/* As a timestamp: let the bucket's own clock stamp the item. */
#define PYRATE_NOW INT64_MIN

/* RateItem.  name is borrowed, never copied into a bucket. */
typedef struct pyrate_item
{
	const char *name;
	int64_t		timestamp;
	int64_t		weight;
} pyrate_item;

typedef struct pyrate_clock pyrate_clock;

/* AbstractClock, for clocks of your own. */
struct pyrate_clock
{
	int			(*now) (pyrate_clock *clock, int64_t *ms, pyrate_error *err);
	void		(*free) (pyrate_clock *clock);	/* NULL for static clocks */
};

/* MonotonicClock (CLOCK_MONOTONIC, one clock for every process of a host). */
pyrate_clock *pyrate_clock_monotonic(void);
/* TimeClock (CLOCK_REALTIME, ms since the Unix epoch). */
pyrate_clock *pyrate_clock_time(void);
int			pyrate_clock_now(pyrate_clock *clock, int64_t *ms, pyrate_error *err);
/* Frees clocks that own resources; static clocks are left alone. */
void		pyrate_clock_free(pyrate_clock *clock);

/* ---- buckets ----------------------------------------------------------- */

typedef struct pyrate_bucket pyrate_bucket;

/* The outcome of one put: what HTTP servers need for 429 and Retry-After. */
typedef struct pyrate_decision
{
	bool		acquired;
	pyrate_rate failing_rate;	/* first rejecting rate; {0, 0} when acquired */
	int64_t		retry_after_ms; /* 0 when acquired; -1 never fits; else ms */
	int64_t		remaining;		/* units left in the tightest window, or -1 unknown */
	int64_t		timestamp;		/* the timestamp the item was judged at */
} pyrate_decision;

/*
 * AbstractBucket.  Implement these for a backend of your own: embed a
 * pyrate_bucket as the first member of your struct, fill it with
 * pyrate_bucket_init and hand it to a factory or limiter.
 *
 * put stores the item when every rate admits it; it fills at least
 * d->acquired and d->failing_rate (the wrapper pre-fills retry_after_ms and
 * remaining with -1 and asks waiting when retry_after_ms is left at -1 on a
 * rejection).  A timestamp of PYRATE_NOW means the bucket's clock (now).
 * peek fills ts and weight of the item holding unit index (0 = newest).
 * lock/unlock (limiter_lock) are optional: when set, the limiter holds the
 * lock around each put, never while sleeping.  Every other op is required
 * but may return PYRATE_EUNSUPPORTED.
 */
typedef struct pyrate_bucket_ops
{
	const char *kind;			/* "memory", "sqlite", ... */
	int			(*put) (pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err);
	int			(*waiting) (pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err);
	int			(*leak) (pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err);
	int			(*flush) (pyrate_bucket *b, pyrate_error *err);
	int			(*count) (pyrate_bucket *b, int64_t *units, pyrate_error *err);
	int			(*peek) (pyrate_bucket *b, int64_t index, bool *found, int64_t *ts, int64_t *weight, pyrate_error *err);
	int			(*now) (pyrate_bucket *b, int64_t *ms, pyrate_error *err);
	int			(*lock) (pyrate_bucket *b, pyrate_error *err);
	void		(*unlock) (pyrate_bucket *b);
	void		(*close) (pyrate_bucket *b);	/* releases everything, b included */
} pyrate_bucket_ops;

struct pyrate_bucket
{
	const pyrate_bucket_ops *ops;
	pyrate_rate rates[PYRATE_MAX_RATES];	/* sorted by interval */
	int			nrates;			/* 0 when the backend owns the rates (Postgres) */
	pyrate_rate failing_rate;	/* the last rejecting rate ({0, 0} after flush) */
};

/* Validate and copy rates into b and set its ops. */
int			pyrate_bucket_init(pyrate_bucket *b, const pyrate_bucket_ops *ops,
							   const pyrate_rate *rates, int nrates, pyrate_error *err);

/* The AbstractBucket methods, on any bucket. */
int			pyrate_put(pyrate_bucket *b, const pyrate_item *item, pyrate_decision *d, pyrate_error *err);
int			pyrate_waiting(pyrate_bucket *b, const pyrate_item *item, int64_t *ms, pyrate_error *err);
/* Removes items older than now minus the largest interval; now may be PYRATE_NOW. */
int			pyrate_leak(pyrate_bucket *b, int64_t now, int64_t *removed, pyrate_error *err);
int			pyrate_flush(pyrate_bucket *b, pyrate_error *err);
int			pyrate_count(pyrate_bucket *b, int64_t *units, pyrate_error *err);
int			pyrate_peek(pyrate_bucket *b, int64_t index, bool *found, pyrate_item *item, pyrate_error *err);
int			pyrate_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err);
void		pyrate_close(pyrate_bucket *b);

/* InMemoryBucket: thread-safe, grows as needed; its clock is monotonic. */
pyrate_bucket *pyrate_memory_bucket_new(const pyrate_rate *rates, int n, pyrate_error *err);

/*
 * MultiprocessBucket: the log lives in a fixed shared mapping guarded by a
 * robust process-shared mutex.  _new maps anonymous shared memory (shared
 * with children forked afterwards); _open creates or attaches the POSIX
 * shared memory object name ("/pyrate-api"), so unrelated processes share
 * it.  capacity is the number of items kept (0 = 65536); when full, items
 * outside every window are dropped first, and only then PYRATE_EFULL.
 * _unlink removes a named object (the mappings of open buckets survive).
 */
pyrate_bucket *pyrate_multiprocess_bucket_new(const pyrate_rate *rates, int n,
											  uint32_t capacity, pyrate_error *err);
pyrate_bucket *pyrate_multiprocess_bucket_open(const char *name, const pyrate_rate *rates, int n,
											   uint32_t capacity, pyrate_error *err);
int			pyrate_multiprocess_unlink(const char *name, pyrate_error *err);

/*
 * SQLiteBucket.init_from_file: the items of one bucket in table (default
 * "rate_bucket") of the file at path, in WAL mode.  Every put is one
 * BEGIN IMMEDIATE transaction, so check-and-insert is atomic across threads
 * and processes; use_file_lock also holds an flock on "path.lock" across
 * it (SQLiteBucket's use_file_lock).  Timestamps come from SQLite's clock.
 */
typedef struct pyrate_sqlite_options
{
	const char *path;
	const char *table;			/* NULL: "rate_bucket" */
	bool		require_table;	/* fail when the table is missing instead of creating it */
	bool		use_file_lock;
	int			busy_timeout_ms;	/* 0: 5000 */
} pyrate_sqlite_options;

pyrate_bucket *pyrate_sqlite_bucket_new(const pyrate_rate *rates, int n,
										const pyrate_sqlite_options *opts, pyrate_error *err);
/* SQLiteClock: julianday('now') of the file's connection. */
pyrate_clock *pyrate_sqlite_clock_new(const char *path, pyrate_error *err);

/*
 * RedisBucket: one sorted set per bucket key, its members encoding
 * (cumulative units, timestamp) and scored by timestamp, so a weight of 1000
 * is one member.  Each put is one EVALSHA (one round trip) of the bucket's
 * Lua script, its rates baked in (called by its SHA-1, and sent to a server
 * that says NOSCRIPT: at first use, after a restart or SCRIPT FLUSH).  An
 * idle key expires by itself, never before its newest item
 * is older than the largest interval and by expire_ms after its last put
 * (server-stamped puts refresh the expiry once per expire_ms - largest
 * interval only; puts with the caller's timestamps refresh it every time).
 * With PYRATE_NOW timestamps the item is stamped by the Redis server's
 * clock as the bucket reckons it: TIME read on its connection at most once
 * a second, plus the local monotonic time since (within a millisecond of
 * the server's TIME on a LAN), so app servers share one clock.  A lost
 * connection is reopened by the next call.
 *
 * Redis Cluster is detected, not configured: at first use the bucket sends
 * CLUSTER SLOTS to the address given; a slot map in reply means a cluster,
 * an error a single server (as does a proxy that does not know the
 * command), and a MOVED reply later makes any server a cluster.  On a
 * cluster each call goes to the node serving its key's slot (CRC16 of the
 * key, or of its first non-empty {hash tag}, as Redis computes it), over
 * one connection per node; MOVED updates the map and the call follows it
 * (the next call reloads the whole map), ASK sends ASKING and the call to
 * the node named, leaving the map alone; a node that lost or never had the
 * script is sent it (NOSCRIPT, per node).  The address given must answer
 * at first use; afterwards the map names the nodes.  A call retries until
 * timeout_ms after it began (a round trip waits timeout_ms at most): a node
 * that cannot be reached, CLUSTERDOWN, TRYAGAIN and LOADING are waited out
 * (the map reloaded between tries) until then, and become PYRATE_EBACKEND,
 * so a limiter's fail mode decides, as for a server that cannot be
 * reached.  A call whose reply was lost after sending is never sent again
 * (it may have run).  The item is stamped by the clock of the node that
 * runs the call.
 */
typedef struct pyrate_redis_options
{
	const char *host;			/* NULL: 127.0.0.1 (any node of a cluster) */
	int			port;			/* 0: 6379 */
	const char *unix_path;		/* a unix socket instead of host:port */
	const char *password;		/* AUTH, or NULL (every node of a cluster) */
	const char *key;			/* the bucket key (the factory's: the key prefix) */
	int			timeout_ms;		/* connecting, a round trip, a call's retries; 0: 2000 */
	int64_t		expire_ms;		/* idle key lifetime; 0: largest interval + 1s */
} pyrate_redis_options;

pyrate_bucket *pyrate_redis_bucket_new(const pyrate_rate *rates, int n,
									   const pyrate_redis_options *opts, pyrate_error *err);

/*
 * PostgresBucket: the pyrate extension's buckets over libpq.  Rates live in
 * the database (pyrate_define); a put is one call of pyrate_acquire (one
 * round trip), stamped by the Postgres clock for PYRATE_NOW or at the
 * item's timestamp otherwise.
 *
 * How calls reach the server (pyrate_pg_options.protocol):
 *   PYRATE_PG_FASTPATH  the default.  pyrate_acquire (every put) goes as
 *                       the protocol's function call, by OID: nothing to
 *                       parse or plan, no session state, so it also works
 *                       through pgbouncer's transaction pooling.  Its
 *                       timeout is kept by a watchdog thread (one per
 *                       process while a bucket is open).  Other ops go as
 *                       unnamed statements.
 *   PYRATE_PG_UNNAMED   every op an unnamed statement with parameters: for
 *                       poolers or proxies that do not pass function calls.
 *   PYRATE_PG_PREPARED  named prepared statements per connection, prepared
 *                       again when the server does not know them (not for
 *                       transaction pooling).
 *
 * With name NULL the bucket is unbound: a put acts on the bucket named by
 * the item, and count/peek/flush need the pyrate_pg_* forms.  With a name,
 * every op acts on that name.
 */
typedef enum pyrate_pg_protocol
{
	PYRATE_PG_FASTPATH = 0,
	PYRATE_PG_UNNAMED,
	PYRATE_PG_PREPARED
} pyrate_pg_protocol;

typedef struct pyrate_pg_options
{
	const char *conninfo;		/* libpq string; NULL or "": PG* variables */
	const char *name;			/* bound bucket name, or NULL */
	const char *schema;			/* extension schema; NULL: looked up */
	int			timeout_ms;		/* per call, connecting included; 0: 5000 */
	pyrate_pg_protocol protocol;	/* see above; 0: PYRATE_PG_FASTPATH */
} pyrate_pg_options;

pyrate_bucket *pyrate_pg_bucket_new(const pyrate_pg_options *opts, pyrate_error *err);

/* The SQL surface by name, on a Postgres bucket (bound or not). */
int			pyrate_pg_acquire(pyrate_bucket *b, const char *name, int64_t weight, int64_t at,
							  pyrate_decision *d, pyrate_error *err);
int			pyrate_pg_define(pyrate_bucket *b, const char *pattern, const pyrate_rate *rates, int n,
							 const char *storage, bool dry_run, pyrate_error *err);
/*
 * pyrate_define with every option; slots and max_buckets need extension 1.3,
 * volatile_buckets 1.4.  Those three are sent only when set (not 0/false),
 * so a definition without them works with every version of the extension.
 */
typedef struct pyrate_pg_define_options
{
	const char *storage;		/* "table", "memory"; NULL: pyrate.default_storage */
	bool		dry_run;		/* count and report, never reject */
	int			slots;			/* 1 .. 1000: bounded storage; 0: exact windows */
	int64_t		max_buckets;	/* memory buckets the definition may have; 0: no cap */
	bool		volatile_buckets;	/* memory storage only: keep the buckets out of
									 * the WAL, durable => false; needs extension 1.4 */
} pyrate_pg_define_options;
int			pyrate_pg_define_with(pyrate_bucket *b, const char *pattern, const pyrate_rate *rates,
								  int n, const pyrate_pg_define_options *opts, pyrate_error *err);
int			pyrate_pg_waiting(pyrate_bucket *b, const char *name, int64_t weight, int64_t at,
							  int64_t *ms, pyrate_error *err);
int			pyrate_pg_count(pyrate_bucket *b, const char *name, int64_t *units, pyrate_error *err);
int			pyrate_pg_peek(pyrate_bucket *b, const char *name, int64_t index, bool *found,
						   int64_t *ts, int64_t *weight, pyrate_error *err);
/* name NULL: every bucket (pyrate_leak()). */
int			pyrate_pg_leak(pyrate_bucket *b, const char *name, int64_t at, int64_t *removed,
						   pyrate_error *err);
int			pyrate_pg_flush(pyrate_bucket *b, const char *name, pyrate_error *err);
int			pyrate_pg_dispose(pyrate_bucket *b, const char *name, bool *existed, pyrate_error *err);
int			pyrate_pg_now(pyrate_bucket *b, int64_t *ms, pyrate_error *err);

/*
 * get_buckets on the server: one call of fn per row of pyrate_buckets()
 * (every bucket, or the one named), in name order, with the column names
 * and the row's values as text (NULL for SQL NULL), valid during the call.
 * fn returns 0 to go on, anything else to stop.
 */
typedef int (*pyrate_pg_row_fn) (void *user, int ncols, const char *const *names,
								 const char *const *values);
int			pyrate_pg_buckets(pyrate_bucket *b, const char *name, pyrate_pg_row_fn fn, void *user,
							  pyrate_error *err);

/* PostgresClock: pyrate_now() of the server. */
pyrate_clock *pyrate_pg_clock_new(const pyrate_pg_options *opts, pyrate_error *err);

/*
 * try_acquire_async for event loops: start sends pyrate_acquire without
 * blocking (connecting first if needed), then wait on pyrate_pg_socket for
 * the events poll asks for, call poll until it reports PYRATE_PG_DONE, and
 * collect the decision with finish.  One call in flight per bucket; the
 * blocking ops of the bucket must not be used meanwhile.
 */
typedef enum pyrate_pg_poll
{
	PYRATE_PG_WANT_READ = 1,
	PYRATE_PG_WANT_WRITE = 2,
	PYRATE_PG_DONE = 3
} pyrate_pg_poll;

int			pyrate_pg_acquire_start(pyrate_bucket *b, const char *name, int64_t weight,
									pyrate_error *err);
int			pyrate_pg_socket(pyrate_bucket *b);
int			pyrate_pg_acquire_poll(pyrate_bucket *b, pyrate_pg_poll *state, pyrate_error *err);
int			pyrate_pg_acquire_finish(pyrate_bucket *b, pyrate_decision *d, pyrate_error *err);

/* ---- factories ------------------------------------------------------- */

typedef struct pyrate_factory pyrate_factory;

/*
 * Routing: given an item, return the bucket for it.  Usually looks the
 * bucket up with pyrate_factory_lookup and, when missing, builds one and
 * registers it with pyrate_factory_create.  Called with the factory's
 * (recursive) lock held, so lookup and create are atomic.
 */
typedef int (*pyrate_route_fn) (pyrate_factory *f, const pyrate_item *item, void *user,
								pyrate_bucket **out, pyrate_error *err);
/* wrap_item: stamp an item; NULL uses the factory clock. */
typedef int (*pyrate_wrap_fn) (pyrate_factory *f, const char *name, int64_t weight, void *user,
							   pyrate_item *out, pyrate_error *err);
/* Builds the bucket of a name (pyrate_factory_new_keyed). */
typedef pyrate_bucket *(*pyrate_make_bucket_fn) (const char *name, void *user, pyrate_error *err);

typedef struct pyrate_factory_options
{
	pyrate_route_fn route;		/* required */
	pyrate_wrap_fn wrap;		/* NULL: stamp with clock */
	void	   *user;			/* passed to route and wrap */
	pyrate_clock *clock;		/* NULL: every bucket's own clock (PYRATE_NOW) */
	int64_t		leak_interval_ms;	/* 0: 10000; < 0: no leaker thread */
} pyrate_factory_options;

pyrate_factory *pyrate_factory_new(const pyrate_factory_options *opts, pyrate_error *err);
/* SingleBucketFactory: every item goes to bucket (owned by the factory). */
pyrate_factory *pyrate_single_bucket_factory_new(pyrate_bucket *bucket, bool schedule_leak,
												 pyrate_clock *clock, pyrate_error *err);
/* A factory giving each item name its own bucket, built by make on first use. */
pyrate_factory *pyrate_factory_new_keyed(pyrate_make_bucket_fn make, void *user, pyrate_clock *clock,
										 int64_t leak_interval_ms, pyrate_error *err);

/*
 * A keyed factory of Redis buckets: the bucket of name N is the key
 * opts->key followed by N (opts->key NULL: "pyrate:"; "" is allowed), so
 * names spread over a cluster's nodes.  Every bucket of the factory shares
 * one set of connections (one per node) and one script.  Keys are
 * co-located on one node only where a caller asks, by Redis's own rule: a
 * {hash tag} in the name ("user:{42}:api" and "user:{42}:upload" share a
 * slot), or in the prefix (then every name does).  leak_interval_ms as in
 * pyrate_factory_options (0: 10000; < 0: no leaker; idle keys expire by
 * themselves either way).
 */
pyrate_factory *pyrate_redis_factory_new(const pyrate_rate *rates, int n, const pyrate_redis_options *opts,
										 int64_t leak_interval_ms, pyrate_error *err);

int			pyrate_factory_wrap_item(pyrate_factory *f, const char *name, int64_t weight,
									 pyrate_item *out, pyrate_error *err);
int			pyrate_factory_get(pyrate_factory *f, const pyrate_item *item, pyrate_bucket **out,
							   pyrate_error *err);
/* The bucket registered under key, or NULL. */
pyrate_bucket *pyrate_factory_lookup(pyrate_factory *f, const char *key);
/* Register bucket under key (the factory owns it from now on) and schedule its leak. */
int			pyrate_factory_create(pyrate_factory *f, const char *key, pyrate_bucket *bucket,
								  pyrate_error *err);
/* Have the leaker leak a registered bucket (create does this). */
int			pyrate_factory_schedule_leak(pyrate_factory *f, pyrate_bucket *bucket, pyrate_error *err);
/* Unregister and close a bucket; false when it was not registered. */
bool		pyrate_factory_dispose(pyrate_factory *f, pyrate_bucket *bucket);
/* Up to max registered buckets into out; returns how many are registered. */
size_t		pyrate_factory_buckets(pyrate_factory *f, pyrate_bucket **out, size_t max);
int64_t		pyrate_factory_leak_interval(pyrate_factory *f);
/* Stops the leaker (waits for it), closes every bucket, frees f. */
void		pyrate_factory_free(pyrate_factory *f);

/* ---- several primaries ---------------------------------------------- */

/*
 * Bucket names partitioned across several PostgreSQL primaries by the
 * client.  The shard of a name among n is pyrate_shard_hash(name) mod n,
 * both unsigned 64-bit, the shards numbered from 0 in the order given.
 *
 * pyrate_shard_hash is 64-bit FNV-1a: h = 0xcbf29ce484222325, then for each
 * byte of the name (its UTF-8 bytes, without the NUL), h = (h xor byte) *
 * 0x100000001b3 modulo 2^64.  A name with a hash tag hashes the tag alone,
 * by Redis Cluster's rule: when the name holds a '{' and a '}' after it,
 * with at least one byte between the first '{' and the first '}' after it,
 * only those bytes are hashed, so "user:{42}:api" and "user:{42}:upload"
 * hash as "42" and share a shard; "{}x", "a{b" and "x{}{y}" hash whole.
 * NULL hashes as "".  Test vectors (the client's tests hold them):
 *   pyrate_shard_hash("")            0xcbf29ce484222325
 *   pyrate_shard_hash("a")           0xaf63dc4c8601ec8c
 *   pyrate_shard_hash("foobar")      0x85944171f73967e8
 *   pyrate_shard_hash("api:user:42") 0x282df042fe21a678, shard 1 of 3, 4 of 5
 *   pyrate_shard_hash("user:{42}:api") = pyrate_shard_hash("42") = 0x07ee7e07b4b19223
 */
uint64_t	pyrate_shard_hash(const char *name);
/* The shard of name among nshards (0 .. nshards - 1); -1 for NULL or nshards < 1. */
int			pyrate_shard_of(const char *name, int nshards);

/*
 * A factory routing each name to the Postgres bucket of its shard:
 * conninfos[i] is shard i's primary (a multi-host string with
 * target_session_attrs=read-write follows that shard's failover).  Each
 * shard is one unbound Postgres bucket, with opts' schema, timeout_ms and
 * protocol (opts may be NULL; its conninfo and name must be NULL), shared
 * by every name routed there: one connection per shard, a call at a time,
 * as pyrate_limiter_new_postgres's bucket.  A shard connects on first use
 * and reconnects on its own: one that cannot be reached fails the calls of
 * its names only (PYRATE_EBACKEND or PYRATE_ETIMEOUT within timeout_ms, so
 * a limiter's fail mode answers), and serves again once it is back.
 * Items are stamped by the clock of their shard.  Rates live in each
 * database: define the same ones on every shard.  Shard i's bucket is
 * registered under the key "shard:I" (pyrate_factory_lookup(f, "shard:0")
 * for pyrate_pg_define and the rest of the SQL surface there); one disposed
 * is opened again by the next call routed to it.  No leaker thread: each
 * server's pyrate worker leaks its buckets.
 */
pyrate_factory *pyrate_pg_sharded_factory_new(const char *const *conninfos, int n,
											  const pyrate_pg_options *opts, pyrate_error *err);

/* ---- the limiter --------------------------------------------------------- */

typedef struct pyrate_limiter pyrate_limiter;

typedef enum pyrate_fail_mode
{
	PYRATE_FAIL_CLOSED = 0,		/* an unreachable backend rejects (default) */
	PYRATE_FAIL_OPEN			/* an unreachable backend admits */
} pyrate_fail_mode;

typedef struct pyrate_limiter_options
{
	int64_t		buffer_ms;		/* added to every sleep; < 0: 50 */
	pyrate_fail_mode fail_mode;
} pyrate_limiter_options;

/* Why try_acquire answered what it did. */
typedef enum pyrate_outcome
{
	PYRATE_ACQUIRED = 0,
	PYRATE_REJECTED,			/* non-blocking, over a limit */
	PYRATE_TIMED_OUT,			/* blocking, the timeout passed */
	PYRATE_NEVER,				/* the weight exceeds a limit: can never fit */
	PYRATE_FAILED_OPEN,			/* backend unreachable, admitted (fail open) */
	PYRATE_FAILED_CLOSED		/* backend unreachable, rejected (fail closed) */
} pyrate_outcome;

typedef struct pyrate_acquire_info
{
	pyrate_outcome outcome;
	pyrate_decision decision;	/* of the last put */
	int64_t		waited_ms;		/* time spent sleeping */
	int			attempts;		/* puts made */
	pyrate_error backend_error; /* for the FAILED_* outcomes */
} pyrate_acquire_info;

/* Limiter over a factory (owned by the limiter from now on). opts may be NULL. */
pyrate_limiter *pyrate_limiter_new(pyrate_factory *factory, const pyrate_limiter_options *opts,
								   pyrate_error *err);
/* Limiter(bucket): a SingleBucketFactory with a scheduled leak. */
pyrate_limiter *pyrate_limiter_new_bucket(pyrate_bucket *bucket, const pyrate_limiter_options *opts,
										  pyrate_error *err);

/*
 * try_acquire(name, weight, blocking, timeout).  *acquired tells the answer;
 * info (may be NULL) tells why.  Blocking, a rejected put sleeps its
 * retry-after plus buffer_ms, never past the timeout (seconds, -1 = none),
 * and puts again: until admitted, until the timeout has passed (TIMED_OUT)
 * or until the weight can never fit (NEVER).  Argument errors as in
 * pyrate-limiter: weight < 0, timeout < 0 other than -1, a timeout with
 * blocking false.
 * An unreachable backend yields PYRATE_OK with the fail mode's answer and
 * outcome FAILED_OPEN / FAILED_CLOSED; other backend errors are returned.
 * name NULL is "pyrate".
 */
int			pyrate_try_acquire(pyrate_limiter *l, const char *name, int64_t weight, bool blocking,
							   double timeout, bool *acquired, pyrate_acquire_info *info,
							   pyrate_error *err);

/* as_decorator: acquire (blocking), then call fn(arg) when admitted. */
typedef int (*pyrate_call_fn) (void *arg);
int			pyrate_call(pyrate_limiter *l, const char *name, int64_t weight, double timeout,
						pyrate_call_fn fn, void *arg, int *fn_result, bool *called, pyrate_error *err);

int64_t		pyrate_limiter_buffer_ms(pyrate_limiter *l);
pyrate_factory *pyrate_limiter_factory(pyrate_limiter *l);
size_t		pyrate_limiter_buckets(pyrate_limiter *l, pyrate_bucket **out, size_t max);
bool		pyrate_limiter_dispose(pyrate_limiter *l, pyrate_bucket *bucket);
/* close: frees the limiter, its factory, the leaker and every bucket. */
void		pyrate_limiter_free(pyrate_limiter *l);

/*
 * limiter_factory: one-call limiters.  The memory and Redis ones are keyed:
 * one bucket per name (Redis: pyrate_redis_factory_new with the key prefix
 * "pyrate:", one key per name); the SQLite one is one bucket for every name.
 */
pyrate_limiter *pyrate_limiter_new_memory(const pyrate_rate *rates, int n, int64_t buffer_ms,
										  pyrate_error *err);
pyrate_limiter *pyrate_limiter_new_sqlite(const pyrate_rate *rates, int n, const char *path,
										  bool use_file_lock, int64_t buffer_ms, pyrate_error *err);
pyrate_limiter *pyrate_limiter_new_redis(const pyrate_rate *rates, int n, const char *host, int port,
										 int64_t buffer_ms, pyrate_error *err);
pyrate_limiter *pyrate_limiter_new_postgres(const char *conninfo, int64_t buffer_ms,
											pyrate_fail_mode fail_mode, pyrate_error *err);
/* Over pyrate_pg_sharded_factory_new(conninfos, n, NULL): names spread over n primaries. */
pyrate_limiter *pyrate_limiter_new_postgres_sharded(const char *const *conninfos, int n, int64_t buffer_ms,
													pyrate_fail_mode fail_mode, pyrate_error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PYRATE_H */
