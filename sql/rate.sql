-- The pyrate_rate type, durations and rate-list validation.
-- An error's SQLSTATE is shown by sqlstate_of, which the other tests use too.
CREATE FUNCTION sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

-- text forms in, canonical text out
SELECT r::pyrate_rate AS rate, pyrate_rate_limit(r::pyrate_rate) AS "limit",
       pyrate_rate_interval(r::pyrate_rate) AS "interval"
FROM (VALUES ('5/s'), ('100/1m'), ('10/1500ms'), ('1000/h'), ('7/2d'), ('1/w'),
             ('10/10'), ('3/60s'), ('2/90s'), (' 4 / 2 h '), ('9/1000ms'), ('6/14d'),
             ('2147483647/1ms')) AS t(r);

-- constructors
SELECT pyrate_rate(5, 1000), pyrate_rate(10, 1500::bigint), pyrate_rate(100, interval '1 minute'),
       pyrate_rate(7, interval '2 days'), pyrate_rate(3, interval '1.5 seconds');

-- equality
SELECT '5/s'::pyrate_rate = '5/1000'::pyrate_rate AS same,
       '5/s'::pyrate_rate = '5/m'::pyrate_rate AS other,
       '5/s'::pyrate_rate <> '6/s'::pyrate_rate AS differs;

-- arrays
SELECT '{5/s,1000/h}'::pyrate_rate[] AS rates;

-- binary I/O round trip
CREATE TEMP TABLE rate_copy (r pyrate_rate);
INSERT INTO rate_copy VALUES ('5/s'), ('10/1500ms');
DO $$
DECLARE
	f text := current_setting('data_directory') || '/pyrate_rate_copy.bin';
BEGIN
	EXECUTE format('COPY rate_copy TO %L WITH (FORMAT binary)', f);
	TRUNCATE rate_copy;
	EXECUTE format('COPY rate_copy FROM %L WITH (FORMAT binary)', f);
END $$;
SELECT r FROM rate_copy ORDER BY pyrate_rate_interval(r);

-- bad text: each error says what a rate looks like
SELECT 'five/s'::pyrate_rate;
SELECT '5'::pyrate_rate;
SELECT '5/'::pyrate_rate;
SELECT '5/fortnight'::pyrate_rate;
SELECT '0/s'::pyrate_rate;
SELECT '5/0ms'::pyrate_rate;
SELECT '5/s extra'::pyrate_rate;
SELECT '99999999999/s'::pyrate_rate;
SELECT '5/99999999999d'::pyrate_rate;
SELECT sqlstate_of($$SELECT 'x'::pyrate_rate$$);

-- bad constructor arguments
SELECT pyrate_rate(0, 1000);
SELECT pyrate_rate(5, 0::bigint);
SELECT pyrate_rate(5, interval '1 month');
SELECT pyrate_rate(5, interval '1.5 milliseconds');
SELECT pyrate_rate(5, interval '-1 day');
-- days and time of opposite signs: only the sum counts (23 hours here)
SELECT pyrate_rate(5, interval '1 day -1 hour'), pyrate_rate(5, interval '-1 hour 2 days');
SELECT pyrate_rate(5, interval '1 hour -1 day');
SELECT pyrate_rate(5, interval '200 years' - interval '200 years' + interval '40000 days');
SELECT sqlstate_of($$SELECT pyrate_rate(-1, 1000)$$);

-- durations
SELECT d, pyrate_duration(d) FROM unnest(ARRAY['SECOND','MINUTE','HOUR','DAY','WEEK','second']) d;
SELECT pyrate_duration('FORTNIGHT');
SELECT ms, pyrate_duration_readable(ms)
FROM unnest(ARRAY[0, 1, 500, 999, 1000, 1500, 60000, 90000, 3600000, 86400000, 604800000, 1209600000]::bigint[]) ms;

-- rate lists: the rules, in definition order or not
SELECT rates, pyrate_validate_rates(rates::pyrate_rate[])
FROM (VALUES ('{5/s}'), ('{5/s,100/1m,1000/h}'), ('{1000/h,5/s}'),
             ('{}'), ('{5/s,6/s}'), ('{5/s,5/m}'), ('{5/s,4/m}'), ('{1/100,20/1000}'),
             ('{10/10,10/10}')) AS t(rates);
SELECT pyrate_validate_rates(ARRAY[NULL]::pyrate_rate[]);
SELECT pyrate_validate_rates('{{5/s},{6/m}}'::pyrate_rate[]);

-- pyrate_rate(limit, text): pyrate-limiter's duration names, the rate
-- grammar's intervals, or anything the interval type reads
SELECT pyrate_rate(5, 'SECOND'), pyrate_rate(100, 'minute'), pyrate_rate(10, '1500ms'),
       pyrate_rate(7, '2d'), pyrate_rate(1000, 'h'), pyrate_rate(3, '90 seconds'), pyrate_rate(2, '250');
SELECT pyrate_rate(5, 'FORTNIGHT');
SELECT pyrate_rate(5, '1 month');
SELECT pyrate_rate(5, '0ms');
