# The background worker ("pyrate leaker"): started only when preloaded, leaks
# both engines on its own, follows SIGHUP, survives the extension being
# dropped and re-created, follows pyrate.database, exits on SIGTERM and is
# restarted, and runs on a hot standby too (memory buckets only there).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();

my $leaker = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'";

# ---- without shared_preload_libraries ------------------------------------
my $plain = PostgreSQL::Test::Cluster->new('plain', port => 57101);
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION pyrate');
sleep 1;
is($plain->safe_psql('postgres', "SELECT count(*) FROM ($leaker) w"), '0',
	'no worker without shared_preload_libraries');
my ($ret, $out, $err) = $plain->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT pyrate_define('m:*', '{5/s}', 'memory')");
isnt($ret, 0, 'the memory engine is refused without preload');
like($err, qr/ERROR:  55000: the memory storage engine is not available/, '... with SQLSTATE 55000');
like($err, qr/HINT:  Add pyrate to shared_preload_libraries in postgresql.conf/, '... and says what to add');
is($plain->safe_psql('postgres', 'SELECT state FROM pyrate_worker_status()'),
	'not running: pyrate is not in shared_preload_libraries', 'worker status says why it is not running');
is($plain->safe_psql('postgres', 'SELECT available, size_bytes IS NULL FROM pyrate_memory_status()'),
	'f|t', 'memory status says the engine is unavailable');
is($plain->safe_psql('postgres',
	"SELECT pyrate_define('t:*', '{5/s}', 'table'); SELECT pyrate_put('t:1'); SELECT pyrate_leak()"),
	"(t:*,{5/1s},table,f,,,t)\nt\n0", 'the table engine and pyrate_leak() work without preload');
$plain->stop;

# ---- preloaded ------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('main', port => 57102);
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 100
log_min_messages = debug1
restart_after_crash = on
));
$node->start;

ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($leaker) w"),
	'the worker starts with shared_preload_libraries');
ok($node->poll_query_until('postgres',
	"SELECT wait_event_type = 'Extension' AND wait_event = 'Extension' AND query = 'waiting for CREATE EXTENSION pyrate' "
	  . "FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'"),
	'before CREATE EXTENSION it waits, idle in an Extension wait event');
my $pid = $node->safe_psql('postgres', $leaker);

$node->safe_psql('postgres', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('mem:*', '{3/300}', 'memory');
SELECT pyrate_define('tab:*', '{3/300}', 'table');
SELECT pyrate_define('big', '{3000/1s}', 'table');
SELECT pyrate_put('mem:a'), pyrate_put('mem:a'), pyrate_put('tab:a'), pyrate_put('tab:a');
});
# the worker may leak them as soon as they commit
is($node->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, 2500) WHERE pyrate_put('big', 1, pyrate_now() - 60000)"),
	'2500', 'a table bucket takes 2500 old items');
ok($node->poll_query_until('postgres', "SELECT pyrate_count('mem:a') = 0"), 'the worker leaks memory buckets on its own');
ok($node->poll_query_until('postgres', "SELECT pyrate_count('tab:a') = 0"), 'the worker leaks table buckets on its own');
ok($node->poll_query_until('postgres', "SELECT pyrate_count('big') = 0"),
	'the worker leaks 2500 table items (in batches of 1000)');
# many buckets go many to a transaction: 1200 buckets of 2 expired items
# each are 2400 units, 500 buckets (1000 units) to a transaction
$node->safe_psql('postgres', q{
SELECT pyrate_define('many:*', '{3/300}', 'table');
SELECT count(*) FROM generate_series(0, 2399) i
	WHERE pyrate_put('many:' || i % 1200, 1, pyrate_now() - 60000);
});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pyrate_buckets() WHERE name LIKE 'many:%' AND count > 0"),
	'the worker leaks 1200 table buckets ...');
# each leak that empties its bucket reclaims it in the same step, and a
# transaction ends after 100 reclaims (each keeps its bucket's lock to commit)
ok(eval { $node->wait_for_log(qr/pyrate leaker: leaked \d+ unit\(s\) from memory buckets and 2400 from table buckets \(1200 bucket\(s\) with items; 12 transaction\(s\) for the table buckets\), reclaimed 1200 idle/); 1 },
	'... in one pass of 12 transactions (at most 500 buckets, about 1000 units or 100 reclaims each), reclaiming all 1200 as it empties them');
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_bucket_data WHERE name LIKE 'many:%'"), '0',
	'... and their rows are gone');
# once its leaks removed 10,000 units and a fifth of the items, the worker
# vacuums the items table itself (autovacuum comes once a minute at most)
my $vacuums = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pyrate_item_data'";
is($node->safe_psql('postgres', $vacuums), '0', 'no vacuum of the items table yet');
$node->safe_psql('postgres', q{
SELECT pyrate_define('vac', '{20000/1s}', 'table');
SELECT count(*) FROM generate_series(1, 12000) WHERE pyrate_put('vac', 1, pyrate_now() - 60000);
});
ok($node->poll_query_until('postgres', "SELECT ($vacuums) >= 1"),
	'after leaking 12000 items the worker vacuums pyrate_item_data');
ok(eval { $node->wait_for_log(qr/pyrate leaker: vacuumed pyrate_item_data/); 1 }, '... and says so at DEBUG1');
$node->safe_psql('postgres', 'ALTER SYSTEM SET pyrate.leak_vacuum = off; SELECT pg_reload_conf()');
my $before_off = $node->safe_psql('postgres', $vacuums);
ok($node->poll_query_until('postgres', "SELECT setting = 'off' FROM pg_settings WHERE name = 'pyrate.leak_vacuum'"),
	'pyrate.leak_vacuum = off');
$node->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, 12000) WHERE pyrate_put('vac', 1, pyrate_now() - 60000)");
ok($node->poll_query_until('postgres', "SELECT pyrate_count('vac') = 0"), '... the worker leaks 12000 more');
my $runs_now = $node->safe_psql('postgres', 'SELECT leak_runs FROM pyrate_worker_status()');
$node->poll_query_until('postgres', "SELECT leak_runs > $runs_now + 2 FROM pyrate_worker_status()");
is($node->safe_psql('postgres', $vacuums), $before_off, '... and does not vacuum');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET pyrate.leak_vacuum; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
	"SELECT n_tup_del >= 2500 FROM pg_stat_user_tables WHERE relname = 'pyrate_item_data'"),
	'the worker reports its deletes to the statistics system while it runs (autovacuum sees them)');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pyrate_bucket_data WHERE name IN ('tab:a', 'big')"),
	'the worker reclaims table buckets idle and empty past their largest interval');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pyrate_buckets() WHERE name IN ('mem:a', 'tab:a', 'big')"),
	'... and memory ones');
ok($node->poll_query_until('postgres',
	"SELECT total_units >= 2504 AND leak_runs > 0 AND last_leak IS NOT NULL AND state = 'idle' FROM pyrate_worker_status()"),
	'pyrate_worker_status reports the leaks');
is($node->safe_psql('postgres', 'SELECT pid, database, leak_interval_ms FROM pyrate_worker_status()'),
	"$pid|postgres|100", 'pyrate_worker_status names the worker, its database and interval');
ok($node->log_contains(qr/pyrate leaker: leaked \d+ unit\(s\) from memory buckets and \d+ from table buckets/),
	'the worker reports its leaks at DEBUG1');

# ---- SIGHUP -------------------------------------------------------------
$node->safe_psql('postgres', 'ALTER SYSTEM SET pyrate.leak_interval = 0; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
	"SELECT leak_interval_ms = 0 AND state LIKE 'idle: leaking is off%' FROM pyrate_worker_status()"),
	'SIGHUP: leak_interval = 0 turns leaking off');
my $runs = $node->safe_psql('postgres', 'SELECT leak_runs FROM pyrate_worker_status()');
$node->safe_psql('postgres', "SELECT pyrate_put('mem:b'), pyrate_put('tab:b')");
sleep 1;
is($node->safe_psql('postgres',
	"SELECT pyrate_count('mem:b'), pyrate_count('tab:b'), (SELECT leak_runs FROM pyrate_worker_status())"),
	"1|1|$runs", 'with leaking off nothing is leaked');
$node->safe_psql('postgres', "ALTER SYSTEM SET pyrate.leak_interval = '250ms'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', "SELECT pyrate_count('mem:b') + pyrate_count('tab:b') = 0"),
	'SIGHUP: a new interval turns leaking back on');
is($node->safe_psql('postgres', 'SELECT leak_interval_ms FROM pyrate_worker_status()'), '250',
	'the new interval is reported');

# ---- DROP EXTENSION and CREATE again while it runs --------------------------
$node->safe_psql('postgres', "SELECT pyrate_put('mem:gone')");
$node->safe_psql('postgres', 'DROP EXTENSION pyrate');
ok($node->poll_query_until('postgres',
	"SELECT query = 'waiting for CREATE EXTENSION pyrate' FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'"),
	'after DROP EXTENSION the worker waits again');
# with a long interval, CREATE EXTENSION wakes the worker at its commit
my $logpos10 = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET pyrate.leak_interval = '10min'; SELECT pg_reload_conf()");
ok($node->wait_for_log(qr/pyrate leaker: configuration reloaded, leak_interval = 600000 ms/, $logpos10),
	'the worker runs with a 10-minute interval');
my $t0 = [Time::HiRes::gettimeofday()];
$node->safe_psql('postgres', q{
CREATE SCHEMA limits;
CREATE EXTENSION pyrate SCHEMA limits;
});
ok($node->poll_query_until('postgres',
	"SELECT state = 'idle' AND last_leak IS NOT NULL FROM limits.pyrate_worker_status()"),
	'CREATE EXTENSION: the worker leaks the new extension at once');
my $waited = Time::HiRes::tv_interval($t0);
ok($waited < 30, "... not after its 10-minute interval (${waited}s)");
$node->safe_psql('postgres', "ALTER SYSTEM SET pyrate.leak_interval = '250ms'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres', 'SELECT leak_interval_ms = 250 FROM limits.pyrate_worker_status()'),
	'back to a 250 ms interval');
is($node->safe_psql('postgres', 'SELECT buckets FROM limits.pyrate_memory_status()'), '0',
	"DROP EXTENSION emptied the database's memory buckets");
$node->safe_psql('postgres', q{
SELECT limits.pyrate_define('mem:*', '{3/300}', 'memory');
SELECT limits.pyrate_define('tab:*', '{3/300}', 'table');
SELECT limits.pyrate_put('mem:c'), limits.pyrate_put('tab:c');
});
ok($node->poll_query_until('postgres',
	"SELECT limits.pyrate_count('mem:c') + limits.pyrate_count('tab:c') = 0"),
	'the worker leaks the re-created extension, in another schema');
is($node->safe_psql('postgres', $leaker), $pid, 'the same worker ran throughout');

# ---- pyrate.database ----------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('postgres', "ALTER SYSTEM SET pyrate.database = 'other'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pyrate leaker' AND datname = 'other'"),
	'a new pyrate.database: the worker restarts there');
ok($node->log_contains(qr/pyrate\.database changed from "postgres" to "other"; restarting to connect there/),
	'... and says so');
$node->safe_psql('other', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('m', '{3/300}', 'memory');
SELECT pyrate_put('m');
});
ok($node->poll_query_until('other', "SELECT pyrate_count('m') = 0"), 'it leaks in the new database');
$node->safe_psql('postgres', "SELECT limits.pyrate_put('mem:d')");
sleep 1;
is($node->safe_psql('postgres', "SELECT limits.pyrate_count('mem:d')"), '1',
	'memory buckets of other databases are left to their own pyrate_leak()');

my $logpos = -s $node->logfile;
$node->safe_psql('postgres', "ALTER SYSTEM SET pyrate.database = 'nosuch'; SELECT pg_reload_conf()");
ok($node->wait_for_log(qr/FATAL:  database "nosuch" does not exist/, $logpos),
	'a database that does not exist: the worker fails to connect, and says so');
$node->safe_psql('postgres', "ALTER SYSTEM RESET pyrate.database; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pyrate leaker' AND datname = 'postgres'"),
	'once pyrate.database is fixed the worker comes back');

# ---- SIGTERM, SIGKILL --------------------------------------------------------
$pid = $node->safe_psql('postgres', $leaker);
$logpos = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->wait_for_log(qr/terminating background worker "pyrate leaker" due to administrator command/, $logpos),
	'SIGTERM ends the worker');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($leaker) w WHERE pid <> $pid"),
	'the postmaster starts it again');
ok($node->poll_query_until('postgres',
	"SELECT pid <> $pid AND state = 'idle' FROM limits.pyrate_worker_status()"),
	'the new worker reports itself');

$pid = $node->safe_psql('postgres', $leaker);
$logpos = -s $node->logfile;
kill 'KILL', $pid;
ok($node->wait_for_log(qr/pyrate: restored \d+ durable memory bucket/, $logpos),
	'SIGKILL of the worker: the server reinitializes and the memory engine restores its durable buckets');
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($leaker) w WHERE pid <> $pid"),
	'the worker is restarted after the crash');

# ---- a standby ----------------------------------------------------------
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby', port => 57103);
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', "SELECT limits.pyrate_define('sb', '{2/1h}', 'memory', durable => false)");
$node->wait_for_catchup($standby);
ok($standby->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($leaker) w"),
	'the worker runs on a hot standby too (for its memory buckets; see 004_standby)');
is($standby->safe_psql('postgres',
	"SELECT limits.pyrate_put('sb'), limits.pyrate_put('sb'), limits.pyrate_put('sb')"),
	't|t|f', 'the memory engine limits on a standby');
my $standby_pid = $standby->safe_psql('postgres', $leaker);
$standby->promote;
ok($standby->poll_query_until('postgres', "SELECT pg_is_in_recovery() = false"),
	'the standby is promoted');
is($standby->safe_psql('postgres', $leaker), $standby_pid, 'the same worker goes on after the promotion');

$standby->stop;
$node->stop;
done_testing();
