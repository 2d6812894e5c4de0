-- The README's SQL tour ("A five-minute tour" and "Throttling triggers, dry
-- runs, statistics"), statement for statement after the marker line below:
-- test/tools/readme.py checks that this file holds the README's sql blocks
-- and that expected/readme.out holds the outputs the README shows.
-- Set-up first, which the README leaves to the reader: a fresh extension
-- (pg_regress made one) with none of the earlier tests' statistics, and
-- errors shown by their first line (their HINT is a retry-after that
-- depends on the clock).
SELECT pyrate_stats_reset();
SET client_min_messages = warning;
DROP EXTENSION pyrate CASCADE;
RESET client_min_messages;
\set VERBOSITY terse
-- ---- the README from here on ----
CREATE EXTENSION pyrate;

-- Rates: limit/interval with ms, s, m, h, d or w; a bare number is milliseconds.
SELECT '5/s'::pyrate_rate, '10/1500ms'::pyrate_rate, pyrate_rate(100, interval '1 minute');
--  pyrate_rate | pyrate_rate | pyrate_rate
--  5/1s        | 10/1500ms   | 100/1m

-- A definition routes bucket names to rates. An exact name beats a pattern;
-- among patterns ('*' matches anything) the longest literal prefix wins.
-- pyrate_define answers the definition it stored; rates are an array or text.
SELECT * FROM pyrate_define('api:*', '{5/s,1000/h}');
--  pattern |     rates      | storage | dry_run | slots | max_buckets | durable
--  api:*   | {5/1s,1000/1h} | table   | f       |       |             | t
SELECT * FROM pyrate_define('api:admin', '100/s');
--   pattern  |  rates   | storage | dry_run | slots | max_buckets | durable
--  api:admin | {100/1s} | table   | f       |       |             | t
SELECT storage FROM pyrate_define('reports:*', '2/m', storage => 'memory');  -- needs preload
--  storage
--  memory

-- Limiter.try_acquire(name, weight, blocking, timeout): blocks by default.
SELECT pyrate_try_acquire('api:42');                            -- waits while the window is full
--  t
SELECT pyrate_try_acquire('api:42', 1, blocking => false);      -- answers at once
--  t
SELECT pyrate_try_acquire('api:42', 2, true, timeout => 0.5);   -- waits at most 0.5 s
--  t
SELECT pyrate_try_acquire('api:admin'), pyrate_try_acquire('reports:daily');
--  pyrate_try_acquire | pyrate_try_acquire
--  t                  | t

-- One call with everything an HTTP server needs; it never sleeps. Here the
-- clock is pinned (at => ms since the epoch) so that the answers are always
-- these: 4 units at 1700000000000, then 2 more 266 ms later.
SELECT * FROM pyrate_acquire('api:7', 4, at => 1700000000000);
--  acquired | failing_rate | retry_after_ms | remaining
--  t        |              |              0 |         1
SELECT * FROM pyrate_acquire('api:7', 2, at => 1700000000266);
--  acquired | failing_rate | retry_after_ms | remaining
--  f        | 5/1s         |            735 |         1

-- The bucket itself (AbstractBucket): put, waiting, count, peek, leak, flush.
SELECT pyrate_put('api:9', 3, at => 1700000000000);       -- weight 3
--  t
SELECT pyrate_waiting('api:9', 3, at => 1700000000100);   -- ms until 3 more fit; -1: never
--  901
SELECT pyrate_count('api:9'), pyrate_peek('api:9', 0);
--  pyrate_count |       pyrate_peek
--             3 | (api:9,3,1700000000000)
SELECT name, pattern, storage, rates, count FROM pyrate_buckets() ORDER BY name;
--  name          | pattern   | storage | rates          | count
--  api:42        | api:*     | table   | {5/1s,1000/1h} |     4
--  api:7         | api:*     | table   | {5/1s,1000/1h} |     4
--  api:9         | api:*     | table   | {5/1s,1000/1h} |     3
--  api:admin     | api:admin | table   | {100/1s}       |     1
--  reports:daily | reports:* | memory  | {2/1m}         |     1
SELECT pyrate_leak();                    -- the worker does this every pyrate.leak_interval
--  7
SELECT pyrate_flush('api:42'), pyrate_count('api:42');
--  pyrate_flush | pyrate_count
--               |            0

-- At most 10 orders per customer per minute: the 11th raises PT429.
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL);
SELECT rates FROM pyrate_define('orders:*', '10/m');
--  rates
--  {10/1m}
CREATE TRIGGER throttle BEFORE INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('orders:', 'customer_id');
INSERT INTO orders (customer_id) SELECT 1 FROM generate_series(1, 10);
INSERT INTO orders (customer_id) VALUES (1);
-- ERROR:  rate limit exceeded for bucket "orders:1" (trigger "throttle")

-- pyrate_throttle(prefix [, key_column [, weight | weight_column [, on_limit]]]):
-- the bucket is prefix || key_column ('' for prefix alone); on_limit is
-- 'error' (PT429, the default), 'skip' (drop the row) or 'wait' (block).
DROP TRIGGER throttle ON orders;
CREATE TRIGGER throttle BEFORE INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('orders:', 'customer_id', 1, 'skip');
INSERT INTO orders (customer_id) SELECT 2 FROM generate_series(1, 12);
SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY customer_id;
--  customer_id | count
--            1 |    10
--            2 |    10

-- Roll a new limit out safely: a dry run counts what it would reject, rejects nothing.
SELECT dry_run FROM pyrate_define('signup:*', '3/h', dry_run => true);
--  dry_run
--  t
SELECT count(*) FILTER (WHERE pyrate_try_acquire('signup:10.0.0.1')) AS admitted
	FROM generate_series(1, 5);
--  5
SELECT pattern, acquired, rejected, would_reject, waited, wait_ms FROM pyrate_stats ORDER BY pattern;
--  pattern   | acquired | rejected | would_reject | waited | wait_ms
--  api:*     |        5 |        1 |            0 |      0 |       0
--  api:admin |        1 |        0 |            0 |      0 |       0
--  orders:*  |       20 |        3 |            0 |      0 |       0
--  reports:* |        1 |        0 |            0 |      0 |       0
--  signup:*  |        3 |        0 |            2 |      0 |       0
SELECT dry_run FROM pyrate_define('signup:*', '3/h');   -- then switch it on; items stay
--  dry_run
--  f
SELECT pyrate_try_acquire('signup:10.0.0.1', 1, false);
--  f
SELECT pyrate_stats_reset();                        -- owner only
