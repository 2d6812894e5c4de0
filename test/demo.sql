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

\echo '== A throttling trigger: at most 3 orders a minute per customer'
CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, item text);
SELECT pyrate_define('orders:*', '{3/m}');
\echo '-- on_limit skip: rows over the limit are dropped, the rest are written'
CREATE TRIGGER throttle BEFORE INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('orders:', 'customer', 1, 'skip');
INSERT INTO orders (customer, item) SELECT 'alice', 'book ' || g FROM generate_series(1, 5) g;
SELECT customer, item FROM orders ORDER BY id;
\echo '-- on_limit error (the default): a row over the limit fails its statement with PT429'
DROP TRIGGER throttle ON orders;
CREATE TRIGGER throttle BEFORE INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('orders:', 'customer');
INSERT INTO orders (customer, item) VALUES ('bob', 'pen'), ('bob', 'ink'), ('bob', 'pad');
INSERT INTO orders (customer, item) VALUES ('bob', 'nib');
SELECT customer, count(*) AS orders FROM orders GROUP BY customer ORDER BY customer;

\echo '== A dry run counts what it would reject and rejects nothing: roll a limit out safely'
SELECT pyrate_define('signup:*', '{3/h}', dry_run => true);
SELECT count(*) FILTER (WHERE pyrate_try_acquire('signup:10.0.0.1')) AS admitted
FROM generate_series(1, 5);

\echo '== Statistics per definition: acquired, rejected, would_reject (dry run), waits'
SELECT pattern, acquired, rejected, would_reject, waited, wait_ms FROM pyrate_stats ORDER BY pattern;

\echo '== Bad input gets a clear error'
SELECT pyrate_define('bad', '{5/s,4/m}');
