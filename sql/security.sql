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

-- A role with default privileges cannot lift a limit with an oversized
-- trigger weight (strtol used to saturate it to INT64_MAX, and the window
-- sum overflowed): the trigger refuses it, on both engines, and the bucket
-- keeps its count.
SELECT pyrate_define('hourly:*', '{3/h}', 'table'), pyrate_define('mhourly:*', '{3/h}', 'memory');
CREATE ROLE pyrate_hostile LOGIN;
GRANT CREATE ON SCHEMA public TO pyrate_hostile;
SET ROLE pyrate_hostile;
SELECT pyrate_put('hourly:bob'), pyrate_put('mhourly:bob');
CREATE TEMP TABLE t (k text);
CREATE TRIGGER a BEFORE INSERT ON t FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('hourly:bob', '', '99999999999999999999');
INSERT INTO t VALUES ('x');
CREATE TRIGGER b BEFORE INSERT ON t FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('mhourly:bob', '', '2147483648');
DROP TRIGGER a ON t;
INSERT INTO t VALUES ('x');
DROP TRIGGER b ON t;
CREATE TRIGGER c BEFORE INSERT ON t FOR EACH ROW
	EXECUTE FUNCTION pyrate_throttle('hourly:bob', '', '2147483647');
INSERT INTO t VALUES ('x');
DROP TRIGGER c ON t;
SELECT count(*) AS rows_inserted FROM t;
SELECT pyrate_count('hourly:bob') AS table_count, pyrate_count('mhourly:bob') AS memory_count;
-- and the limit still holds: two more units fit, the third does not
SELECT pyrate_try_acquire('hourly:bob', 1, false), pyrate_try_acquire('hourly:bob', 1, false),
	pyrate_try_acquire('hourly:bob', 1, false);
SELECT pyrate_try_acquire('mhourly:bob', 2, false), pyrate_try_acquire('mhourly:bob', 1, false);
DROP TABLE t;
RESET ROLE;
SELECT pyrate_dispose('hourly:bob'), pyrate_dispose('mhourly:bob');
SELECT pyrate_undefine('hourly:*'), pyrate_undefine('mhourly:*');
REVOKE CREATE ON SCHEMA public FROM pyrate_hostile;
DROP ROLE pyrate_hostile;
