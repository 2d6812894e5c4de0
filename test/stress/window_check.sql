-- Over-admission check from the stored items of table buckets whose names
-- match :'like': for every item and every rate of its bucket, the units in
-- the window ending at that item (ts - interval .. ts, inclusive) must not
-- exceed the limit.  Prints one row per violation; none is a pass.
SELECT b.name, r AS rate, w.ts, w.units
FROM pyrate_bucket_data b
CROSS JOIN LATERAL unnest((SELECT rates FROM pyrate_buckets() pb WHERE pb.name = b.name)) r
CROSS JOIN LATERAL (
	SELECT i.ts, sum(i.weight) OVER (ORDER BY i.ts RANGE BETWEEN pyrate_rate_interval(r) PRECEDING AND CURRENT ROW) AS units
	FROM pyrate_item_data i WHERE i.bucket = b.id
) w
WHERE b.name LIKE :'like' AND w.units > pyrate_rate_limit(r)
ORDER BY 1, 3
LIMIT 20;
