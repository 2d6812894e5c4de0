-- Dry runs and pyrate_stats (the regression server preloads pyrate).
SELECT pyrate_stats_reset();
SELECT pyrate_define('dry:*', '{2/1h}', dry_run => true);
SELECT pyrate_define('real:*', '{2/1h}');
SELECT pyrate_define('wait:*', '{1/100ms}');

-- a dry-run definition never rejects, and says what it would have done
SELECT n, d.acquired, d.failing_rate, d.remaining
FROM generate_series(1, 4) n, LATERAL pyrate_acquire('dry:a', 1 + 0 * n, 1000) d;
SELECT pyrate_put('dry:a', 1, 1000), pyrate_try_acquire('dry:a', 1, false);
SELECT pyrate_waiting('dry:a', 1, 1000);
-- only what the limit would have admitted is stored
SELECT pyrate_count('dry:a');

SELECT pyrate_put('real:a', 1, 1000), pyrate_put('real:a', 1, 1000), pyrate_put('real:a', 1, 1000);
-- the second blocking acquire waits about 100 ms
SELECT pyrate_try_acquire('wait:a'), pyrate_try_acquire('wait:a');
SELECT pattern, acquired, rejected, would_reject, waited, wait_ms >= 50 AS waited_50ms
FROM pyrate_stats ORDER BY pattern;

-- switching the limit on for real keeps the items
SELECT pyrate_define('dry:*', '{2/1h}');
SELECT pyrate_put('dry:a', 1, 1001);

-- everyone may read the statistics; resetting them is for the owner
CREATE ROLE pyrate_watcher;
SET ROLE pyrate_watcher;
SELECT count(*) > 0 FROM pyrate_stats;
SELECT pyrate_stats_reset();
RESET ROLE;
DROP ROLE pyrate_watcher;
SELECT pyrate_stats_reset();
SELECT count(*) FROM pyrate_stats;
SELECT pyrate_dispose(name) FROM pyrate_buckets() ORDER BY name;
