-- durable: memory buckets are WAL-logged unless durable => false (1.4).
SELECT pyrate_define('dur:*', '5/s', 'memory');
SELECT pyrate_define('vol:*', '5/s', 'memory', durable => false);
SELECT pyrate_define('tab:*', '5/s', 'table', durable => true);
SELECT pattern, storage, durable FROM pyrate_definitions
WHERE pattern IN ('dur:*', 'vol:*', 'tab:*') ORDER BY pattern;
-- both kinds limit alike on a primary
SELECT pyrate_put('dur:a', 3, 1000), pyrate_put('dur:a', 3, 1000), pyrate_count('dur:a');
SELECT pyrate_put('vol:a', 3, 1000), pyrate_put('vol:a', 3, 1000), pyrate_count('vol:a');
-- redefining switches a definition between the kinds; the items stay
SELECT durable FROM pyrate_define('dur:*', '5/s', 'memory', durable => false);
SELECT pyrate_put('dur:a', 2, 1001), pyrate_count('dur:a');
SELECT durable FROM pyrate_define('dur:*', '5/s', 'memory', durable => NULL);
-- table buckets are rows of WAL-logged tables: they cannot be volatile
SELECT pyrate_define('tab:*', '5/s', 'table', durable => false);
SELECT pyrate_define('tab:v', '5/s', durable => false);
SELECT durable FROM pyrate_definitions WHERE pattern = 'tab:*';
-- the table's own check, for a direct edit
INSERT INTO pyrate_definition_data (pattern, rates, storage, created, durable)
VALUES ('tab:x', '{5/s}', 'table', '2026-01-01 00:00:00+00', false);
SELECT pyrate_dispose('dur:a'), pyrate_dispose('vol:a');
SELECT pyrate_undefine('dur:*'), pyrate_undefine('vol:*'), pyrate_undefine('tab:*');
