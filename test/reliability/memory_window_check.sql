-- Over-admission check of memory buckets whose names match :'like', from
-- their items read back with pyrate_peek: one row per stored unit (a weight-3
-- item is three rows with its timestamp), so counting rows in
-- [ts - interval, ts] counts units.  Also flags a log out of order (a unit
-- nearer the newest with an older timestamp).  One row per violation; none
-- is a pass.
SELECT b.name, r::text AS rate, w.ts, w.units
FROM pyrate_buckets() b
CROSS JOIN LATERAL unnest(b.rates) r
CROSS JOIN LATERAL (
	SELECT p.ts, count(*) OVER (ORDER BY p.ts RANGE BETWEEN pyrate_rate_interval(r) PRECEDING AND CURRENT ROW) AS units
	FROM generate_series(0, b.count::int - 1) i, pyrate_peek(b.name, i) p
) w
WHERE b.storage = 'memory' AND b.name LIKE :'like' AND w.units > pyrate_rate_limit(r)
UNION ALL
SELECT o.name, 'order', o.ts, o.unit
FROM (
	SELECT b.name, i AS unit, p.ts, lag(p.ts) OVER (PARTITION BY b.name ORDER BY i) AS newer_ts
	FROM pyrate_buckets() b
	CROSS JOIN LATERAL generate_series(0, b.count::int - 1) i
	CROSS JOIN LATERAL pyrate_peek(b.name, i) p
	WHERE b.storage = 'memory' AND b.name LIKE :'like'
) o
WHERE o.ts > o.newer_ts
ORDER BY 1, 3
LIMIT 20;
