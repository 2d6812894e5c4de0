-- Limiter.try_acquire, pyrate_require and pyrate_leak(): these use the
-- server clock, so they show only what does not depend on it.
SELECT pyrate_define('lim', '{2/200ms}');

-- non-blocking: admitted until the window is full, then false at once
SELECT pyrate_try_acquire('lim', 1, false), pyrate_try_acquire('lim', 1, false),
       pyrate_try_acquire('lim', 1, false);

-- blocking (the default) waits until the window has room
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SELECT pyrate_try_acquire('lim');
SELECT clock_timestamp() - t >= interval '100 ms' AS waited FROM t0;

-- a timeout shorter than the wait gives up, no sooner than the timeout
SELECT pyrate_define('hourly', '{1/1h}');
SELECT pyrate_try_acquire('hourly');
TRUNCATE t0;
INSERT INTO t0 SELECT clock_timestamp();
SELECT pyrate_try_acquire('hourly', 1, true, 0.05);
SELECT clock_timestamp() - t >= interval '50 ms' AS waited_timeout,
       clock_timestamp() - t < interval '5 s' AS gave_up FROM t0;
-- timeout 0 tries once
SELECT pyrate_try_acquire('hourly', 1, true, 0);

-- a weight larger than the limit can never fit: false at once, even blocking
SELECT pyrate_try_acquire('lim', 3);

-- weight 0 is always admitted
SELECT pyrate_try_acquire('lim', 0, false);

-- pyrate.buffer_ms is added to each sleep: about 200 ms of wait + 100, not + 50
SET pyrate.buffer_ms = 100;
SELECT pg_sleep(0.25);
SELECT pyrate_try_acquire('lim'), pyrate_try_acquire('lim');
TRUNCATE t0;
INSERT INTO t0 SELECT clock_timestamp();
SELECT pyrate_try_acquire('lim');
SELECT clock_timestamp() - t >= interval '290 ms' AS waited_with_buffer FROM t0;
RESET pyrate.buffer_ms;

-- the blocking wait honours statement_timeout
SET statement_timeout = '100ms';
SELECT pyrate_define('slow', '{1/1h}');
SELECT pyrate_try_acquire('slow');
SELECT pyrate_try_acquire('slow');
RESET statement_timeout;

-- argument errors, as in pyrate-limiter
SELECT pyrate_try_acquire('lim', 1, false, 5);
SELECT pyrate_try_acquire('lim', 1, true, -2);
SELECT pyrate_try_acquire('lim', 1, true, 'NaN');
SELECT pyrate_try_acquire('lim', -1);
SELECT pyrate_try_acquire(NULL);
SELECT pyrate_try_acquire('lim', 1, NULL);
SELECT pyrate_try_acquire('undefined-bucket');
SELECT sqlstate_of($$SELECT pyrate_try_acquire('lim', 1, false, 5)$$) AS timeout_without_blocking,
       sqlstate_of($$SELECT pyrate_try_acquire('lim', 1, true, -2)$$) AS negative_timeout;
-- the message shows the timeout as given
SELECT pyrate_try_acquire('lim', 1, true, -1.0000001);

-- the default bucket name is 'pyrate'
SELECT pyrate_define('pyrate', '{1/h}');
SELECT pyrate_try_acquire(), pyrate_try_acquire(blocking => false);

-- pyrate_require: nothing when admitted, SQLSTATE PT429 when rejected
SELECT pyrate_define('req', '{1/1h}');
SELECT pyrate_require('req');
\set VERBOSITY terse
SELECT pyrate_require('req');
\set VERBOSITY default
SELECT sqlstate_of($$SELECT pyrate_require('req')$$);
DO $$
DECLARE
	d text;
	h text;
BEGIN
	PERFORM pyrate_require('req');
EXCEPTION WHEN SQLSTATE 'PT429' THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	RAISE NOTICE 'detail: %', d;
	RAISE NOTICE 'hint is a retry-after: %', h ~ '^Retry after [0-9]+ ms\.$';
END $$;
SELECT pyrate_require('req', 2);
SELECT pyrate_require('req', -1);

-- pyrate_leak() leaks every bucket by its own largest interval
SELECT pyrate_define('old', '{5/10ms}');
SELECT pyrate_put('old', 1, 1000), pyrate_put('old', 2, 1001);
SELECT pyrate_leak() >= 3 AS leaked, pyrate_count('old');
SELECT pyrate_dispose(name) FROM pyrate_buckets() ORDER BY name;
