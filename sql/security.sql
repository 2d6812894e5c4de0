-- Nothing pyrate does depends on the caller's search_path: hostile objects
-- that shadow built-ins change nothing.
SELECT pyrate_define('sec:*', '{2/1000,3/10000}');
CREATE SCHEMA evil;
CREATE FUNCTION evil.always_true(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always_true);
CREATE FUNCTION evil.lt_false(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR evil.< (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.lt_false);
CREATE OPERATOR evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.lt_false);
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$SELECT 'memory'$$;
CREATE FUNCTION evil.hashtext(text) RETURNS integer LANGUAGE sql AS 'SELECT 0';
CREATE TABLE evil.pyrate_item_data (bucket bigint, cum bigint, ts bigint, weight integer);
CREATE TABLE evil.pyrate_definition_data (pattern text, rates pyrate_rate[], storage text, dry_run boolean, created timestamptz);

SET search_path = evil, pg_catalog, public;
SELECT pyrate_put('sec:a', 1, 1000), pyrate_put('sec:a', 1, 1001), pyrate_put('sec:a', 1, 1002);
SELECT * FROM pyrate_acquire('sec:a', 1, 1500);
SELECT pyrate_waiting('sec:a', 1, 1500), pyrate_count('sec:a'), pyrate_peek('sec:a', 0);
SELECT pyrate_put('sec:b', 1, 1000);
SELECT pyrate_define('sec:c', '{1/s}');
-- (this query's own = is the hostile one: it must be spelt out)
SELECT storage FROM pyrate_definitions WHERE pattern OPERATOR(pg_catalog.=) 'sec:c';
SELECT name, count FROM pyrate_buckets() WHERE name LIKE 'sec:%' ORDER BY name;
SELECT pyrate_leak('sec:a', 20000), pyrate_count('sec:a');
SELECT pyrate_dispose('sec:a'), pyrate_dispose('sec:b');
-- the shadow tables were never touched
SELECT (SELECT count(*) FROM evil.pyrate_item_data) AS items, (SELECT count(*) FROM evil.pyrate_definition_data) AS definitions;
RESET search_path;
DROP SCHEMA evil CASCADE;
SELECT pyrate_undefine('sec:*'), pyrate_undefine('sec:c');
