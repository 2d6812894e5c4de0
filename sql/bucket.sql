-- AbstractBucket on the table engine, with explicit timestamps.
SELECT pyrate_define('b', '{3/1000,5/10000}');

-- put until the 1 s rate rejects; weights take several units
SELECT pyrate_put('b', 1, 100), pyrate_put('b', 2, 200), pyrate_put('b', 1, 300);
SELECT * FROM pyrate_acquire('b', 1, 400);
SELECT pyrate_waiting('b', 1, 400), pyrate_waiting('b', 2, 400), pyrate_waiting('b', 4, 400);
-- at 1101 the first item has left the 1 s window
SELECT pyrate_waiting('b', 1, 1101);
SELECT * FROM pyrate_acquire('b', 1, 1101);
SELECT * FROM pyrate_acquire('b', 1, 2500);
-- now the 10 s rate is full
SELECT * FROM pyrate_acquire('b', 1, 2600);
-- both rates reject: failing_rate is the first, retry_after waits for every rate
SELECT pyrate_waiting('b', 3, 2600), * FROM pyrate_acquire('b', 3, 2600);
SELECT * FROM pyrate_acquire('b', 1, 10101);
-- weight 0 is always admitted and stores nothing
SELECT pyrate_put('b', 0, 10102), pyrate_count('b');

-- peek counts units from the newest; a weight-2 item holds two units
SELECT i, (pyrate_peek('b', i)).* FROM generate_series(-1, 6) i;
SELECT pyrate_count('b');

-- leak removes items older than the largest interval
SELECT pyrate_leak('b', 10150), pyrate_count('b');
SELECT pyrate_leak('b', 10250), pyrate_count('b');
SELECT pyrate_leak('b', 99999), pyrate_count('b');
SELECT pyrate_put('b', 1, 100000), pyrate_put('b', 1, 100001), pyrate_count('b');
SELECT pyrate_flush('b');
SELECT pyrate_count('b'), pyrate_peek('b', 0);

-- a clock stepping back never breaks the order: the item is stored as the newest
SELECT pyrate_put('b', 1, 200000), pyrate_put('b', 1, 150000);
SELECT (pyrate_peek('b', 0)).ts, (pyrate_peek('b', 1)).ts;

-- a weight that can never fit
SELECT * FROM pyrate_acquire('b', 4, 300000);
SELECT pyrate_waiting('b', 4, 300000);

-- a rollback gives the permit back (table engine)
SELECT pyrate_flush('b');
BEGIN;
SELECT pyrate_put('b', 3, 400000);
SELECT pyrate_count('b');
ROLLBACK;
SELECT pyrate_count('b'), pyrate_put('b', 3, 400001);

-- buckets and dispose
SELECT name, pattern, storage, rates, count FROM pyrate_buckets() WHERE name = 'b';
SELECT pyrate_dispose('b'), pyrate_dispose('b');
SELECT count(*) FROM pyrate_buckets() WHERE name = 'b';

-- pyrate_now is the server clock in ms since the epoch
SELECT abs(pyrate_now() - (extract(epoch FROM clock_timestamp()) * 1000)::bigint) < 1000 AS close;
-- with at NULL the item is stamped by the server clock
SELECT pyrate_put('b', 1, NULL), abs((pyrate_peek('b', 0)).ts - pyrate_now()) < 1000 AS stamped_now;
SELECT pyrate_dispose('b');

-- errors: each names what is wrong and what to do
SELECT pyrate_undefine('*');
SELECT pyrate_put('nowhere');
SELECT pyrate_put(NULL);
SELECT pyrate_put('b', NULL);
SELECT pyrate_put('b', -1);
SELECT pyrate_put('b', 1, -5);
SELECT pyrate_put('b', 1, 253402300800000);
SELECT pyrate_put('');
SELECT pyrate_put(repeat('k', 1025));
SELECT pyrate_peek('b', NULL);
SELECT sqlstate_of($$SELECT pyrate_put('nowhere')$$) AS unknown_bucket,
       sqlstate_of($$SELECT pyrate_put(NULL)$$) AS null_name,
       sqlstate_of($$SELECT pyrate_put('b', -1)$$) AS negative_weight,
       sqlstate_of($$SELECT pyrate_put('b', 1, -5)$$) AS bad_at,
       sqlstate_of($$SELECT pyrate_put(repeat('k', 1025))$$) AS long_name;
-- a name of 1024 bytes is fine
SELECT pyrate_define(repeat('k', 1024), '{1/s}');
SELECT pyrate_put(repeat('k', 1024), 1, 1000), pyrate_put(repeat('k', 1024), 1, 1001);
SELECT pyrate_dispose(repeat('k', 1024)), pyrate_undefine(repeat('k', 1024));
-- every function refuses an unknown bucket the same way
SELECT sqlstate_of($$SELECT pyrate_waiting('nowhere')$$), sqlstate_of($$SELECT pyrate_count('nowhere')$$),
       sqlstate_of($$SELECT pyrate_peek('nowhere', 0)$$), sqlstate_of($$SELECT pyrate_leak('nowhere')$$),
       sqlstate_of($$SELECT pyrate_flush('nowhere')$$), sqlstate_of($$SELECT * FROM pyrate_acquire('nowhere')$$);
-- disposing of a bucket nobody defined is not an error: there is nothing to dispose of
SELECT pyrate_dispose('nowhere');

-- in a read-only transaction a table bucket cannot take permits
BEGIN READ ONLY;
SELECT pyrate_put('b', 1);
ROLLBACK;
-- but disposing of a name it never stored needs no write
BEGIN READ ONLY;
SELECT pyrate_dispose('never-stored');
ROLLBACK;

-- Buckets empty and idle past their largest interval are reclaimed by a
-- leak: the first pyrate_leak() removes the expired item and forgets the
-- table bucket it emptied at once; it removes the memory bucket's item, and
-- the next forgets that bucket; a put after that starts a new bucket that
-- limits as before.
SELECT pyrate_define('idle:t:*', '{1/1}', 'table'), pyrate_define('idle:m:*', '{1/1}', 'memory');
SELECT pyrate_put('idle:t:a'), pyrate_put('idle:m:a'), pg_sleep(0.01);
SELECT pyrate_leak() >= 2 AS leaked;
SELECT name, count FROM pyrate_buckets() WHERE name LIKE 'idle:%' ORDER BY name;
SELECT pg_sleep(0.01), pyrate_leak() >= 0 AS leaked_again;
SELECT name, count FROM pyrate_buckets() WHERE name LIKE 'idle:%' ORDER BY name;
SELECT count(*) AS table_rows FROM pyrate_bucket_data WHERE name LIKE 'idle:%';
SELECT pyrate_put('idle:t:a', 1, 5000), pyrate_put('idle:t:a', 1, 5000), pyrate_count('idle:t:a');
SELECT pyrate_dispose('idle:t:a'), pyrate_undefine('idle:t:*'), pyrate_undefine('idle:m:*');

-- A put in the same statement as a flush or a dispose of its bucket goes to
-- the bucket as it is now, never to the one just flushed or disposed of
SELECT FROM pyrate_define('same:*', '5/h', 'table');
SELECT pyrate_put('same:a', 1, 1000), pyrate_put('same:b', 1, 1000);
SELECT pyrate_flush('same:a'), pyrate_put('same:a', 1, 1000), pyrate_count('same:a');
SELECT pyrate_dispose('same:b'), pyrate_put('same:b', 1, 1000), pyrate_count('same:b');
SELECT pyrate_count('same:a') AS a, pyrate_count('same:b') AS b,
	(SELECT count(*) FROM pyrate_items i WHERE NOT EXISTS
		(SELECT FROM pyrate_bucket_data b WHERE b.id = i.bucket)) AS orphans;
SELECT pyrate_dispose('same:a'), pyrate_dispose('same:b'), pyrate_undefine('same:*');

-- After a leak of many items, their index entries stay until VACUUM, all
-- below the oldest item: counting reads from the newest down, not through
-- them (the count below read every dead entry's page before)
SELECT FROM pyrate_define('bulk', '1000000000/1h', 'table');
SELECT count(*) FILTER (WHERE pyrate_put('bulk', 1, 1000 + g)) FROM generate_series(1, 20000) g;
SELECT pyrate_leak('bulk', 1000 + 19990 + 3600000);
BEGIN;
SELECT pg_stat_get_xact_blocks_fetched('pyrate_item_data_pkey'::regclass) AS pages_before \gset
SELECT pyrate_count('bulk');
SELECT pg_stat_get_xact_blocks_fetched('pyrate_item_data_pkey'::regclass) - :pages_before < 20 AS few_index_pages;
COMMIT;
SELECT pyrate_dispose('bulk'), pyrate_undefine('bulk');

-- A table bucket records when it is next due for a leak (its oldest item's
-- time plus its largest interval): a leak pass reads only the buckets due.
-- A leak that removes items and leaves units does not move it (the bucket
-- stays due: the next pass comes back); one that finds nothing to remove,
-- or leaves only the tombstone, does
SELECT FROM pyrate_define('due:*', '{3/1s,5/1h}', 'table');
SELECT pyrate_put('due:a', 1, 1000), pyrate_put('due:a', 1, 2000);
SELECT due FROM pyrate_bucket_data WHERE name = 'due:a';
SELECT pyrate_leak('due:a', 3601500), pyrate_count('due:a');
SELECT due FROM pyrate_bucket_data WHERE name = 'due:a';
SELECT pyrate_leak('due:a', 3601600), pyrate_count('due:a');
SELECT due FROM pyrate_bucket_data WHERE name = 'due:a';
SELECT pyrate_leak('due:a', 3602500), pyrate_count('due:a');
SELECT due FROM pyrate_bucket_data WHERE name = 'due:a';
-- A leak pass (pyrate_leak() or the worker's) that empties a table bucket
-- reclaims it in the same pass: its tombstone has left the largest window
SELECT pyrate_put('due:b', 1, pyrate_now() - 7300000), pyrate_put('due:b', 1, pyrate_now() - 7200000);
SELECT pyrate_leak() >= 2 AS leaked, pyrate_count('due:b');
SELECT count(*) AS left_behind FROM pyrate_bucket_data WHERE name = 'due:b';
SELECT count(*) AS orphan_items FROM pyrate_items i
	WHERE NOT EXISTS (SELECT FROM pyrate_bucket_data b WHERE b.id = i.bucket);
-- A definition whose largest interval shrinks makes the buckets it routes
-- due now, and so does one removed (its buckets route elsewhere): the next
-- pass leaks what left the new window
SELECT pyrate_put('due:c', 1, pyrate_now() - 600000);
SELECT due > pyrate_now() AS due_later FROM pyrate_bucket_data WHERE name = 'due:c';
SELECT FROM pyrate_define('due:*', '{3/1s,5/1m}', 'table');
SELECT due <= pyrate_now() AS due_now FROM pyrate_bucket_data WHERE name = 'due:c';
SELECT pyrate_leak() >= 1 AS leaked, pyrate_count('due:c');
SELECT FROM pyrate_define('due:d', '{5/1h}', 'table');
SELECT pyrate_put('due:d', 1, pyrate_now() - 600000);
SELECT pyrate_undefine('due:d');
SELECT due <= pyrate_now() AS due_now FROM pyrate_bucket_data WHERE name = 'due:d';
SELECT pyrate_leak() >= 1 AS leaked, pyrate_count('due:d');
-- a pattern that starts with '*' finds its buckets too
SELECT FROM pyrate_define('*:e', '{5/1h}', 'table');
SELECT pyrate_put('due:e', 1, pyrate_now() - 600000);
SELECT FROM pyrate_define('*:e', '{5/1m}', 'table');
SELECT pyrate_leak() >= 1 AS leaked, pyrate_count('due:e');
SELECT pyrate_undefine('*:e');
SELECT pyrate_dispose(name) FROM pyrate_buckets() WHERE name LIKE 'due:%' ORDER BY name;
SELECT pyrate_dispose('due:a'), pyrate_undefine('due:*');

-- A memory bucket still holding items its window no longer counts (not yet
-- leaked): pyrate_acquire counts the window exactly for its remaining;
-- puts admit on a bound (every unit held fits) while it holds, and count the
-- window once it does not: the four after 5000 fit, the fifth does not.
SELECT FROM pyrate_define('exact:m', '{5/1000}', 'memory');
SELECT pyrate_put('exact:m', 1, 1000), pyrate_put('exact:m', 1, 1100), pyrate_put('exact:m', 1, 1200);
SELECT acquired, remaining FROM pyrate_acquire('exact:m', 1, 5000);
SELECT t, pyrate_put('exact:m', 1, t) FROM generate_series(5001, 5005) t;
SELECT pyrate_count('exact:m'), pyrate_dispose('exact:m'), pyrate_undefine('exact:m');
