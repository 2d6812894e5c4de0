-- Bounded storage: slots => n, on both engines, with explicit timestamps.

-- the definition carries slots; NULL (the default) is exact
SELECT pyrate_define('sl:t:*', '{10/100ms,50/1s,200/10s}', 'table', slots => 4);
SELECT pyrate_define('sl:m:*', '{10/100ms,50/1s,200/10s}', 'memory', slots => 4);
SELECT pyrate_define('sl:x:*', '{10/100ms,50/1s,200/10s}', 'table');
SELECT pattern, slots FROM pyrate_definitions WHERE pattern LIKE 'sl:%' ORDER BY pattern;
-- out of range: nothing is stored
SELECT pyrate_define('sl:bad', '5/s', slots => 0);
SELECT pyrate_define('sl:bad', '5/s', 'table', false, 1001);
SELECT pyrate_define('sl:bad', '5/s', slots => -3);
SELECT count(*) FROM pyrate_definitions WHERE pattern = 'sl:bad';
-- the table's own check, for a direct edit
INSERT INTO pyrate_definition_data (pattern, rates, storage, created, slots)
VALUES ('sl:bad', '{5/s}', 'table', '2026-01-01 00:00:00+00', 0);

-- Merging, small enough to follow: 2/1s and 6/10s with 2 slots: the 10 s
-- rate's cells are 5 s wide, and a bucket compacts once every 4 units.
-- The 4th put merges the items older than 1 s in one cell (1000 and 1500)
-- into one entry that counts both units at 1500.  'sl:e:*' is exact.
SELECT pyrate_define('sl:s:*', '{2/1s,6/10s}', 'table', slots => 2);
SELECT pyrate_define('sl:sm:*', '{2/1s,6/10s}', 'memory', slots => 2);
SELECT pyrate_define('sl:e:*', '{2/1s,6/10s}', 'table');
SELECT b, array_agg(pyrate_put(b, 1, t) ORDER BY t)
FROM unnest(ARRAY['sl:e:a', 'sl:s:a', 'sl:sm:a']) b, unnest(ARRAY[1000, 1500, 2100, 2600, 5200, 5300]) t
GROUP BY b ORDER BY b;
SELECT name, count, entries FROM pyrate_buckets() WHERE name LIKE 'sl:%:a' ORDER BY name;
SELECT b, i, p.ts, p.weight
FROM unnest(ARRAY['sl:e:a', 'sl:s:a', 'sl:sm:a']) b, generate_series(0, 6) i, LATERAL pyrate_peek(b, i) p
ORDER BY b, i;
-- at 11001 the exact bucket has room again (1000 has left the 10 s window);
-- the coarse entry holds both its units until 1500 leaves, at 11501
SELECT b, d.* FROM unnest(ARRAY['sl:e:a', 'sl:s:a', 'sl:sm:a']) b, LATERAL pyrate_acquire(b, 1, 11001) d
ORDER BY b;
SELECT b, d.* FROM unnest(ARRAY['sl:s:a', 'sl:sm:a']) b, LATERAL pyrate_acquire(b, 1, 11501) d
ORDER BY b;
-- a leak removes a coarse entry with its newest unit
SELECT b, pyrate_leak(b, 11500) AS at_11500, pyrate_leak(b, 11501) AS at_11501, pyrate_count(b)
FROM unnest(ARRAY['sl:s:a', 'sl:sm:a']) b ORDER BY b;

-- A rolled-back merge gives everything back (table engine)
BEGIN;
SELECT count(*) FILTER (WHERE pyrate_put('sl:s:r', 1, 1000 + g * 400)) FROM generate_series(1, 20) g;
SELECT name, count, entries FROM pyrate_buckets() WHERE name = 'sl:s:r';
SAVEPOINT more;
SELECT pyrate_put('sl:s:r', 1, 20000);
SELECT name, count, entries FROM pyrate_buckets() WHERE name = 'sl:s:r';
ROLLBACK TO more;
SELECT name, count, entries FROM pyrate_buckets() WHERE name = 'sl:s:r';
ROLLBACK;
SELECT count(*) FROM pyrate_buckets() WHERE name = 'sl:s:r';

-- A long run of arrivals, mostly more than the rates admit (6000 puts over
-- about 66 s), replayed on both engines with slots and on an exact bucket.
CREATE TEMP TABLE arrivals AS
SELECT g, 1000000 + sum((g * 7919 + g * g * 31) % 23) OVER (ORDER BY g) AS ts,
	1 + (g * 13) % 3 AS w
FROM generate_series(1, 6000) g;
CREATE TEMP TABLE replayed (bucket text, g int, ts bigint, w int, ok boolean, failing pyrate_rate,
	entries bigint);
CREATE FUNCTION pg_temp.replay(bucket text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	a record;
	d pyrate_decision;
BEGIN
	FOR a IN SELECT * FROM arrivals ORDER BY g LOOP
		SELECT * INTO d FROM pyrate_acquire(bucket, a.w, a.ts);
		-- (entries every 10th put: pyrate_buckets() lists every bucket)
		INSERT INTO replayed VALUES (bucket, a.g, a.ts, a.w, d.acquired, d.failing_rate,
			CASE WHEN a.g % 10 = 0 THEN
				(SELECT b.entries FROM pyrate_buckets() b WHERE b.name = bucket) END);
	END LOOP;
END
$$;
SELECT pg_temp.replay('sl:t:1'), pg_temp.replay('sl:m:1'), pg_temp.replay('sl:x:1');
CREATE INDEX ON replayed (bucket, ts) WHERE ok;

-- both engines decide alike
SELECT count(*) AS differ FROM replayed t JOIN replayed m USING (g)
WHERE t.bucket = 'sl:t:1' AND m.bucket = 'sl:m:1' AND (t.ok, t.failing) IS DISTINCT FROM (m.ok, m.failing);
-- no window of the true clock ever holds more than its limit
SELECT x.bucket, pyrate_rate_limit(rate) AS "limit", pyrate_rate_interval(rate) AS "interval",
	max(used) AS most_in_a_window
FROM unnest('{10/100ms,50/1s,200/10s}'::pyrate_rate[]) rate, replayed x,
	LATERAL (SELECT sum(y.w) AS used FROM replayed y WHERE y.bucket = x.bucket AND y.ok
		AND y.ts BETWEEN x.ts - pyrate_rate_interval(rate) AND x.ts) u
WHERE x.ok
GROUP BY 1, 2, 3 ORDER BY 1, 3;
-- every rejection has a cause: more than limit - weight units of the true
-- clock within the failing rate's interval, plus the cell width for a
-- coarse rate (interval / 4 here), so each rate admits at least 4/5
SELECT r.bucket, count(*) AS rejected,
	count(*) FILTER (WHERE (SELECT coalesce(sum(a.w), 0) FROM replayed a
		WHERE a.bucket = r.bucket AND a.ok AND a.g < r.g
		AND a.ts >= r.ts - pyrate_rate_interval(r.failing)
			- CASE WHEN pyrate_rate_interval(r.failing) > 100 THEN pyrate_rate_interval(r.failing) / 4 ELSE 0 END)
		+ r.w <= pyrate_rate_limit(r.failing)) AS without_cause
FROM replayed r WHERE NOT r.ok GROUP BY r.bucket ORDER BY r.bucket;
-- storage: with slots at most the smallest limit + 2 * 11 + 1 entries
-- (11: one beyond every window, 5 cells for each larger rate), leaked or
-- not; the exact bucket, not leaked here, keeps every item.  Units admitted
-- against the exact bucket's: at least 4/5
SELECT bucket, max(entries) AS most_entries, sum(w) FILTER (WHERE ok) AS admitted,
	round(sum(w) FILTER (WHERE ok)::numeric
		/ (SELECT sum(w) FROM replayed WHERE bucket = 'sl:x:1' AND ok), 3) AS of_exact
FROM replayed GROUP BY bucket ORDER BY bucket;
-- counts are exact: every admitted unit is counted
SELECT bucket, pyrate_count(bucket) = sum(w) FILTER (WHERE ok) AS count_exact
FROM replayed GROUP BY bucket ORDER BY bucket;
-- a leak past every window removes every entry
SELECT b, pyrate_leak(b, 2000000) > 0, pyrate_count(b)
FROM unnest(ARRAY['sl:m:1', 'sl:t:1', 'sl:x:1']) b ORDER BY b;
SELECT name, count, entries FROM pyrate_buckets() WHERE name LIKE 'sl:_:1' ORDER BY name;

-- Redefined exact, a bucket with merged entries counts on exactly: its
-- coarse entries stay coarse until they leak
SELECT count(*) FILTER (WHERE pyrate_put('sl:t:2', 1, 3000000 + g * 60)) FROM generate_series(1, 200) g;
SELECT pyrate_count('sl:t:2'), entries FROM pyrate_buckets() WHERE name = 'sl:t:2';
SELECT pyrate_define('sl:t:*', '{10/100ms,50/1s,200/10s}', 'table');
SELECT count(*) FILTER (WHERE pyrate_put('sl:t:2', 1, 3012000 + g * 60)) FROM generate_series(1, 200) g;
SELECT pyrate_count('sl:t:2'), entries FROM pyrate_buckets() WHERE name = 'sl:t:2';
SELECT * FROM pyrate_acquire('sl:t:2', 1, 3030000);

SELECT pyrate_dispose(name) FROM pyrate_buckets() WHERE name LIKE 'sl:%' ORDER BY name;
SELECT pyrate_undefine(pattern) FROM pyrate_definitions WHERE pattern LIKE 'sl:%' ORDER BY pattern;
