-- packed: table items are (key, ts, weight), key = bucket << 40 | cum, and a
-- weight of 1 is stored as NULL (1.5).
SELECT pyrate_define('pk:*', '{2147483647/1s}', 'table');
SELECT pyrate_put('pk:w', 1, 1000), pyrate_put('pk:w', 3, 1001);
SELECT pyrate_put('pk:w2', 1, 1000);
SELECT i.key & 1099511627775 AS cum, i.weight AS stored
FROM pyrate_item_data i JOIN pyrate_bucket_data b ON i.key >> 40 = b.id
WHERE b.name = 'pk:w' ORDER BY i.key;
SELECT pyrate_count('pk:w'), (pyrate_peek('pk:w', 0)).weight AS newest, (pyrate_peek('pk:w', 3)).weight AS oldest;

-- A cum has 40 bits: once a bucket's passes 2^39, a leak renumbers its
-- items under a new id, less the units below the oldest.  Items written at
-- once here; a leak after each put keeps only the newest.
SET pyrate.defer_table_puts = off;
SELECT pyrate_put('pk:r', 2147483647, 2000);
SELECT id AS first_id FROM pyrate_bucket_data WHERE name = 'pk:r' \gset
DO $$
BEGIN
	FOR i IN 2..300 LOOP
		IF NOT pyrate_put('pk:r', 2147483647, i * 2000) THEN
			RAISE 'put % rejected', i;
		END IF;
		PERFORM pyrate_leak('pk:r', i * 2000);
	END LOOP;
END
$$;
SELECT i.key >> 40 = :first_id AS same_id, i.key & 1099511627775 AS cum, i.ts, i.weight
FROM pyrate_item_data i JOIN pyrate_bucket_data b ON i.key >> 40 = b.id
WHERE b.name = 'pk:r' ORDER BY i.key;
SELECT count(*) AS left_under_first_id FROM pyrate_item_data WHERE key >> 40 = :first_id;
-- the moved item counts in full: its window has no room left
SELECT pyrate_count('pk:r'), pyrate_put('pk:r', 1, 600000) AS one_more, (pyrate_peek('pk:r', 0)).ts;

-- A bucket no leak renumbers (none runs here; none would for one whose
-- items span 2^38 units or more) runs out of count: the statement that
-- would pass 2^40 fails, storing nothing.
SELECT count(*) FROM generate_series(1, 600) i WHERE pyrate_put('pk:big', 2147483647, i * 2000);
SELECT pyrate_count('pk:big');
RESET pyrate.defer_table_puts;

-- Bucket ids stay below 2^23 - 1: the sequence cycles, and a new bucket
-- skips the ids that buckets hold.
SELECT setval('pyrate_bucket_id_seq', 8388605);
SELECT pyrate_put('pk:top', 1, 1000), pyrate_put('pk:wrapped', 1, 1000);
SELECT t.id AS top_id, w.id < t.id AS wrapped_below,
	(SELECT count(*) FROM pyrate_bucket_data x WHERE x.id = w.id) AS holders
FROM pyrate_bucket_data t, pyrate_bucket_data w WHERE t.name = 'pk:top' AND w.name = 'pk:wrapped';
SELECT setval('pyrate_bucket_id_seq', (SELECT id FROM pyrate_bucket_data WHERE name = 'pk:w') - 1) > 0 AS set;
SELECT pyrate_put('pk:skip', 1, 1000);
SELECT s.id > w.id AS skipped, (SELECT count(*) FROM pyrate_bucket_data x WHERE x.id = s.id) AS holders
FROM pyrate_bucket_data s, pyrate_bucket_data w WHERE s.name = 'pk:skip' AND w.name = 'pk:w';
SELECT pyrate_count('pk:top'), pyrate_count('pk:wrapped'), pyrate_count('pk:skip'), pyrate_count('pk:w');

-- A sequence altered out of that range, or one whose every id is held, is
-- an error that says what to do.
ALTER SEQUENCE pyrate_bucket_id_seq MAXVALUE 9000000000 NO CYCLE;
SELECT setval('pyrate_bucket_id_seq', 8388606);
SELECT pyrate_put('pk:out', 1, 1000);
-- (pk:w and pk:w2 took two ids in a row)
SELECT setval('pyrate_bucket_id_seq', (SELECT id FROM pyrate_bucket_data WHERE name = 'pk:w2')) > 0 AS set;
DO $$
DECLARE
	w bigint := (SELECT id FROM pyrate_bucket_data WHERE name = 'pk:w');
BEGIN
	IF (SELECT id FROM pyrate_bucket_data WHERE name = 'pk:w2') <> w + 1 THEN
		RAISE 'pk:w and pk:w2 do not hold two ids in a row';
	END IF;
	EXECUTE format('ALTER SEQUENCE pyrate_bucket_id_seq MINVALUE %s MAXVALUE %s START WITH %s CYCLE', w, w + 1, w);
END
$$;
SELECT pyrate_put('pk:full', 1, 1000);
ALTER SEQUENCE pyrate_bucket_id_seq MINVALUE 1 MAXVALUE 8388606 START WITH 1 RESTART CYCLE;
SELECT pyrate_put('pk:full', 1, 1000), pyrate_count('pk:out') AS nothing_stored;

SELECT count(pyrate_dispose(name)) FROM pyrate_buckets() WHERE name LIKE 'pk:%';
SELECT pyrate_undefine('pk:*');
