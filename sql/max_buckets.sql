-- max_buckets: a cap on the memory buckets of one definition.
SELECT pyrate_define('cap:*', '5/s', 'memory', max_buckets => 3);
SELECT pattern, storage, max_buckets FROM pyrate_definitions WHERE pattern = 'cap:*';
SELECT pyrate_put('cap:' || g, 1, 1000) FROM generate_series(1, 3) g;
-- a fourth name is refused; the three that exist go on
SELECT pyrate_put('cap:4', 1, 1000);
SELECT pyrate_put('cap:1', 1, 1001), pyrate_put('cap:2', 1, 1001);
SELECT * FROM pyrate_acquire('cap:4', 1, 1002);
-- disposing of one makes room for one
SELECT pyrate_dispose('cap:2');
SELECT pyrate_put('cap:4', 1, 1003);
SELECT pyrate_put('cap:5', 1, 1003);
-- so does a leak that reclaims an idle, empty bucket
SELECT pyrate_leak('cap:1', 9000), pyrate_leak('cap:1', 9000);
SELECT pyrate_leak() >= 0;
SELECT pyrate_put('cap:5', 1, 9000);
-- a larger cap takes effect at once; NULL lifts it
SELECT max_buckets FROM pyrate_define('cap:*', '5/s', 'memory', max_buckets => 4);
SELECT pyrate_put('cap:6', 1, 9000);
SELECT pyrate_put('cap:7', 1, 9000);
SELECT max_buckets FROM pyrate_define('cap:*', '5/s', 'memory');
SELECT pyrate_put('cap:7', 1, 9000);
-- bad caps: nothing is stored
SELECT pyrate_define('cap:t:*', '5/s', 'table', max_buckets => 4);
SELECT pyrate_define('cap:t:*', '5/s', 'memory', max_buckets => 0);
SELECT pyrate_define('cap:t:*', '5/s', 'memory', false, NULL, -1);
SELECT count(*) FROM pyrate_definitions WHERE pattern = 'cap:t:*';
-- the table's own check, for a direct edit
INSERT INTO pyrate_definition_data (pattern, rates, storage, created, max_buckets)
VALUES ('cap:x', '{5/s}', 'table', '2026-01-01 00:00:00+00', 3);
SELECT pyrate_dispose(name) FROM pyrate_buckets() WHERE name LIKE 'cap:%' ORDER BY name;
SELECT pyrate_undefine('cap:*');
