-- Definitions and routing.
SELECT pyrate_define('api:*', '{5/s,1000/h}');
SELECT pyrate_define('api:admin', '{100/s}');
SELECT pyrate_define('api:admin:*', '{50/s}');
SELECT pyrate_define('api:*:reports', '{1/m}');
SELECT pyrate_define('*', '{1/d}');
SELECT pyrate_define('jobs', '{1000/h,5/s}', 'table', true);
SELECT pattern, rates, storage, dry_run FROM pyrate_definitions ORDER BY pattern;

-- the most specific definition wins: exact name, then the longest literal prefix
SELECT count(*) FILTER (WHERE pyrate_put(n, 1, 1000)) AS admitted
FROM unnest(ARRAY['api:42', 'api:admin', 'api:admin:7', 'api:7:reports', 'other', 'jobs']) n;
SELECT name, pattern, storage, rates, count FROM pyrate_buckets() ORDER BY name;

-- redefining replaces the rates; the definition keeps its place
SELECT pyrate_define('api:*', '{10/s,2000/h}');
SELECT pattern, rates FROM pyrate_definitions WHERE pattern = 'api:*';

-- undefine
SELECT pyrate_undefine('api:*:reports'), pyrate_undefine('api:*:reports');

-- errors
SELECT pyrate_define(NULL, '{5/s}');
SELECT pyrate_define('p', NULL);
SELECT pyrate_define('', '{5/s}');
SELECT pyrate_define(repeat('p', 1025), '{5/s}');
SELECT pyrate_define('p', '{}');
SELECT pyrate_define('p', '{5/s,6/s}');
SELECT pyrate_define('p', '{5/s,4/m}');
SELECT pyrate_define('p', '{1/100,20/1000}');
SELECT pyrate_define('p', ARRAY[NULL]::pyrate_rate[]);
SELECT pyrate_define('p', '{5/s}', 'disk');
SELECT pyrate_undefine(NULL);
SELECT sqlstate_of($$SELECT pyrate_define('p', '{5/s,6/s}')$$) AS invalid_rates,
       sqlstate_of($$SELECT pyrate_define('p', '{5/s}', 'disk')$$) AS bad_storage,
       sqlstate_of($$SELECT pyrate_define(repeat('p', 1025), '{5/s}')$$) AS too_long,
       sqlstate_of($$SELECT pyrate_define(NULL, '{5/s}')$$) AS null_pattern;
-- nothing was stored by the failed calls
SELECT count(*) FROM pyrate_definitions WHERE pattern = 'p';

-- the table is guarded too: direct edits obey the rules
INSERT INTO pyrate_definition_data VALUES ('q', '{5/s,6/s}', 'table', false, '2026-01-01');
INSERT INTO pyrate_definition_data VALUES ('q', '{5/s}', 'disk', false, '2026-01-01');
-- and a direct edit reaches the routing cache at once
INSERT INTO pyrate_definition_data (pattern, rates, storage) VALUES ('direct', '{1/s}', 'table');
SELECT pyrate_put('direct', 1, 1000), pyrate_put('direct', 1, 1001);
SELECT pattern FROM pyrate_buckets() WHERE name = 'direct';
DELETE FROM pyrate_definition_data WHERE pattern = 'direct';
SELECT pattern FROM pyrate_buckets() WHERE name = 'direct';
SELECT pyrate_dispose('direct');

-- pg_dump keeps definitions: the table is marked as configuration
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'pyrate';

-- moving a definition to the other storage while its buckets hold items is
-- refused (their windows would start empty there); once flushed it moves
SELECT pyrate_define('mv:*', '{3/h}', 'table');
SELECT pyrate_put('mv:a', 2, 1000), pyrate_put('mv:b', 1, 1000);
SELECT pyrate_define('mv:*', '{3/h}', 'memory');
SELECT storage FROM pyrate_definitions WHERE pattern = 'mv:*';
SELECT pyrate_flush(name) FROM pyrate_buckets() WHERE pattern = 'mv:*';
SELECT pyrate_define('mv:*', '{3/h}', 'memory');
SELECT pyrate_put('mv:a', 2, 1000), pyrate_put('mv:a', 2, 1000);
-- and back: the memory buckets hold items now
SELECT pyrate_define('mv:*', '{3/h}', 'table');
SELECT pyrate_flush('mv:a');
SELECT pyrate_define('mv:*', '{3/h}', 'table');
SELECT pyrate_dispose('mv:a'), pyrate_dispose('mv:b');
SELECT pyrate_undefine('mv:*');

-- pyrate reads its tables directly: a table altered by hand gets a clear
-- error naming it and saying how to recover, never a wrong read
SELECT pyrate_define('lay:*', '{5/h}', 'table');
SELECT pyrate_put('lay:a', 1, 1000);
ALTER TABLE pyrate_definition_data ADD COLUMN note int;
SELECT pyrate_put('lay:a', 1, 1001);
ALTER TABLE pyrate_definition_data DROP COLUMN note;
SELECT pyrate_put('lay:a', 1, 1001);
SELECT pyrate_define('lay:b', '{6/h}', 'table'), pyrate_undefine('lay:b');
ALTER TABLE pyrate_bucket_data ADD COLUMN note int;
SELECT pyrate_put('lay:new', 1, 1002);
ALTER TABLE pyrate_bucket_data DROP COLUMN note;
ALTER TABLE pyrate_item_data ADD COLUMN note int;
SELECT pyrate_put('lay:a', 1, 1002);
ALTER TABLE pyrate_item_data DROP COLUMN note;
ALTER TABLE pyrate_item_data RENAME COLUMN weight TO w;
SELECT pyrate_count('lay:a');
ALTER TABLE pyrate_item_data RENAME COLUMN w TO weight;
CREATE INDEX lay_hash ON pyrate_item_data USING hash (ts);
SELECT pyrate_put('lay:a', 1, 1003);
DROP INDEX lay_hash;
CREATE INDEX lay_expr ON pyrate_bucket_data (lower(name));
SELECT pyrate_put('lay:c', 1, 1003);
DROP INDEX lay_expr;
CREATE INDEX lay_part ON pyrate_definition_data (pattern) WHERE dry_run;
SELECT pyrate_put('lay:a', 1, 1003);
DROP INDEX lay_part;
-- with the dropped columns left behind, everything works and reads right
SELECT pyrate_put('lay:a', 1, 1003), pyrate_put('lay:new', 1, 1003);
SELECT pyrate_count('lay:a'), pyrate_count('lay:new'), (pyrate_peek('lay:a', 0)).ts;
SELECT pyrate_leak('lay:a', 3600000 + 1002), pyrate_count('lay:a');
SELECT pyrate_flush('lay:a'), pyrate_count('lay:a');
SELECT name, pattern, count FROM pyrate_buckets() WHERE name LIKE 'lay:%' ORDER BY name;
SELECT pyrate_dispose('lay:a'), pyrate_dispose('lay:new');
SELECT pyrate_undefine('lay:*');

-- rates as text: one rate, a comma-separated list, or an array literal;
-- pyrate_define answers the definition it stored
SELECT * FROM pyrate_define('txt:one', '5/s');
SELECT * FROM pyrate_define('txt:two', '5/s, 1000/h', 'table', true);
SELECT * FROM pyrate_define('txt:arr', '{1000/h,5/s}');
SELECT pyrate_define('txt:typed', ARRAY[pyrate_rate(5, 'SECOND'), pyrate_rate(1000, 'HOUR')]);
SELECT pattern, rates, dry_run FROM pyrate_definitions WHERE pattern LIKE 'txt:%' ORDER BY pattern;
SELECT pyrate_define('txt:bad', '5/s, 6/s');
SELECT pyrate_define('txt:bad', '5/s,');
SELECT pyrate_define('txt:bad', 'five per second');
SELECT pyrate_define('txt:bad', '');
SELECT pyrate_undefine('txt:one'), pyrate_undefine('txt:two'), pyrate_undefine('txt:arr'),
       pyrate_undefine('txt:typed');
