/* pyrate 1.4 -> 1.5: a table item is 16 bytes shorter, and so is the WAL
   of an acquire.
   - Its bucket and cum are packed into one key, bucket << 40 | cum, the
     primary key: the row and its index entry each lose 8 bytes.  Bucket ids
     stay below 2^23 - 1 (the sequence cycles, skipping ids in use), and a
     bucket whose cum passes 2^39 has its items renumbered by the library.
   - A weight of 1 is stored as NULL: the null bitmap fits in the padding of
     the row's header, another 8 bytes.
   The update rebuilds the table: buckets are numbered again from 1, and a
   bucket's cums are moved down when they passed 2^39. */

\echo Use "ALTER EXTENSION pyrate UPDATE TO '1.5'" to load this file. \quit

LOCK TABLE @extschema@.pyrate_bucket_data, @extschema@.pyrate_item_data IN ACCESS EXCLUSIVE MODE;

DO $pyrate$
DECLARE
	too_many text;
BEGIN
	IF (SELECT pg_catalog.count(*) FROM @extschema@.pyrate_bucket_data) > 8388606 THEN
		RAISE EXCEPTION 'pyrate 1.5 holds at most 8388606 table buckets'
			USING ERRCODE = '54000',
				HINT = 'Dispose of the buckets no longer needed (pyrate_dispose), or let leaks reclaim idle ones, then update again.';
	END IF;
	SELECT b.name INTO too_many
	FROM @extschema@.pyrate_bucket_data b
	JOIN @extschema@.pyrate_item_data i ON i.bucket OPERATOR(pg_catalog.=) b.id
	GROUP BY b.name
	HAVING pg_catalog.max(i.cum) OPERATOR(pg_catalog.-)
		pg_catalog.min(i.cum OPERATOR(pg_catalog.-) pg_catalog.abs(i.weight)) OPERATOR(pg_catalog.>) 549755813888
	LIMIT 1;
	IF too_many IS NOT NULL THEN
		RAISE EXCEPTION 'table bucket "%" holds too many units to move to pyrate 1.5', too_many
			USING ERRCODE = '54000',
				DETAIL = 'A bucket''s items may span at most 2^39 units of its count.',
				HINT = 'Leak its old items (pyrate_leak) or flush it (pyrate_flush), then update again.';
	END IF;
END
$pyrate$;

ALTER TABLE @extschema@.pyrate_item_data RENAME TO pyrate_item_data_1_4;
ALTER INDEX @extschema@.pyrate_item_data_pkey RENAME TO pyrate_item_data_1_4_pkey;

CREATE TABLE @extschema@.pyrate_item_data (
	key bigint PRIMARY KEY,
	ts bigint NOT NULL,
	weight integer
);
COMMENT ON COLUMN @extschema@.pyrate_item_data.key IS 'bucket id << 40 | cum, the units put into the bucket up to and including the item';
COMMENT ON COLUMN @extschema@.pyrate_item_data.weight IS 'units of the item; NULL for 1, negative when stacked, 0 for a leaked bucket''s tombstone';
REVOKE ALL ON @extschema@.pyrate_item_data FROM PUBLIC;

-- buckets numbered from 1 in the order of their ids; cums past 2^39 moved
-- down to start at 1 (only their differences count)
INSERT INTO @extschema@.pyrate_item_data (key, ts, weight)
SELECT (m.n OPERATOR(pg_catalog.<<) 40) OPERATOR(pg_catalog.+) i.cum OPERATOR(pg_catalog.-)
		CASE WHEN i.top OPERATOR(pg_catalog.>) 549755813888 THEN i.bottom OPERATOR(pg_catalog.-) 1 ELSE 0 END,
	i.ts, NULLIF(i.weight, 1)
FROM (SELECT bucket, cum, ts, weight,
		pg_catalog.max(cum) OVER w AS top,
		pg_catalog.min(cum OPERATOR(pg_catalog.-) pg_catalog.abs(weight)) OVER w AS bottom
	FROM @extschema@.pyrate_item_data_1_4 WINDOW w AS (PARTITION BY bucket)) i
JOIN (SELECT id, pg_catalog.row_number() OVER (ORDER BY id) AS n
	FROM @extschema@.pyrate_bucket_data) m ON m.id OPERATOR(pg_catalog.=) i.bucket;

UPDATE @extschema@.pyrate_bucket_data SET id = OPERATOR(pg_catalog.-) id;
UPDATE @extschema@.pyrate_bucket_data b SET id = m.n
FROM (SELECT id, pg_catalog.row_number() OVER (ORDER BY id DESC) AS n
	FROM @extschema@.pyrate_bucket_data) m
WHERE b.id OPERATOR(pg_catalog.=) m.id;

DROP TABLE @extschema@.pyrate_item_data_1_4;

SELECT pg_catalog.setval('@extschema@.pyrate_bucket_id_seq',
	GREATEST(pg_catalog.count(*), 1), pg_catalog.count(*) OPERATOR(pg_catalog.>) 0)
FROM @extschema@.pyrate_bucket_data;
ALTER SEQUENCE @extschema@.pyrate_bucket_id_seq MINVALUE 1 MAXVALUE 8388606 CYCLE;

-- the items as they were: for reading by hand (the owner's, like the tables)
CREATE VIEW @extschema@.pyrate_items AS
	SELECT key OPERATOR(pg_catalog.>>) 40 AS bucket,
		key OPERATOR(pg_catalog.&) 1099511627775 AS cum,
		ts, COALESCE(weight, 1) AS weight
	FROM @extschema@.pyrate_item_data;
REVOKE ALL ON @extschema@.pyrate_items FROM PUBLIC;
COMMENT ON VIEW @extschema@.pyrate_items IS 'table items by bucket id and cum, weights of 1 shown as 1 (1.5 packs bucket and cum into pyrate_item_data.key)';
