-- Over-admission check from the stored items of table buckets whose names
-- match :'like': for every item and every rate of its bucket, the units in
-- the window ending at that item (ts - interval .. ts, inclusive) must not
-- exceed the limit.  Prints one row per violation; none is a pass.
WITH pb AS MATERIALIZED (SELECT name, rates FROM pyrate_buckets() WHERE name LIKE :'like')
SELECT b.name, r AS rate, w.ts, w.units
FROM pyrate_bucket_data b
JOIN pb ON pb.name = b.name
CROSS JOIN LATERAL unnest(pb.rates) r
CROSS JOIN LATERAL (
	SELECT i.ts, sum(abs(coalesce(i.weight, 1))) OVER (ORDER BY i.ts RANGE BETWEEN pyrate_rate_interval(r) PRECEDING AND CURRENT ROW) AS units
	FROM pyrate_item_data i WHERE i.key BETWEEN b.id << 40 AND (b.id << 40) + 1099511627775
) w
WHERE b.name LIKE :'like' AND w.units > pyrate_rate_limit(r)
ORDER BY 1, 3
LIMIT 20;
