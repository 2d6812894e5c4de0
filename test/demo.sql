-- pyrate showcase: what test/demo runs against a fresh server.
\pset footer off
\echo '== Every api:<user> gets its own window: 5 per second and 1000 per hour'
SELECT pyrate_define('api:*', '{5/s,1000/h}');

\echo '== Seven requests from user 42 in the same instant: five pass'
SELECT n AS request, d.acquired, d.failing_rate, d.retry_after_ms, d.remaining
FROM generate_series(1, 7) n, LATERAL pyrate_acquire('api:42', 1 + 0 * n) d;

\echo '== User 7 is not affected by user 42'
SELECT acquired, remaining FROM pyrate_acquire('api:7');

\echo '== Blocking acquire (the default) waits until the window has room'
SELECT pyrate_try_acquire('api:42') AS acquired_after_waiting;

\echo '== A REST API on PostgREST gets HTTP 429 from SQLSTATE PT429'
DO $$
BEGIN
	PERFORM pyrate_require('api:42') FROM generate_series(1, 10);
EXCEPTION WHEN SQLSTATE 'PT429' THEN
	RAISE NOTICE '%', SQLERRM;
END $$;

\echo '== Weights, and a weight that can never fit'
SELECT pyrate_define('export', '{10/1m}');
SELECT pyrate_put('export', 4) AS four, pyrate_put('export', 4) AS four_more,
       pyrate_put('export', 4) AS one_too_many, pyrate_try_acquire('export', 11) AS eleven;

\echo '== Buckets, their rates and what they hold'
SELECT name, pattern, storage, rates, count FROM pyrate_buckets() ORDER BY name;

\echo '== The shared-memory engine: non-transactional, for hot paths'
SELECT pyrate_define('hot:*', '{100000/s}', 'memory');
\timing on
SELECT count(*) FILTER (WHERE pyrate_put('hot:demo')) AS admitted FROM generate_series(1, 200000);
\timing off

\echo '== Bad input gets a clear error'
SELECT pyrate_define('bad', '{5/s,4/m}');
