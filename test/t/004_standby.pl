# A primary and a hot standby, both with pyrate preloaded: the standby limits
# with volatile memory buckets of its own, its worker leaks them; durable
# memory buckets arrive by replication, read there, change on the primary
# only (the standby's leaks leave them to the primary's), pyrate_leak() there
# leaks what it can and skips table buckets (which change on the primary and
# arrive by replication), table buckets read on the standby as on the
# primary, acquiring one there says where to go; after a promotion the same
# worker leaks table buckets too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# the primary's worker leaks nothing here: the old items below must reach
# the standby first
my $conf = qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
);
my $primary = PostgreSQL::Test::Cluster->new('primary', port => 57131);
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('m:*', '{3/300}', 'memory', durable => false);
SELECT pyrate_define('d:*', '{3/1h}', 'memory');
SELECT pyrate_define('t:*', '{3/1h}', 'table');
SELECT pyrate_define('old:*', '{5/1s}', 'table');
SELECT pyrate_put('t:a', 2);
});
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby', port => 57132);
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->append_conf('postgresql.conf', 'pyrate.leak_interval = 200');
$standby->start;
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));

my $leaker = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'";
ok($standby->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($leaker) w"),
	'the worker runs on the hot standby');
my $pid = $standby->safe_psql('postgres', $leaker);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', '... which is in recovery');

my ($rc, $out, $err);

# memory buckets of the standby's own
is($standby->safe_psql('postgres', "SELECT pyrate_put('m:s'), pyrate_put('m:s'), pyrate_put('m:s'), pyrate_put('m:s')"),
	't|t|t|f', 'the standby limits with memory buckets');
ok($standby->poll_query_until('postgres', "SELECT pyrate_count('m:s') = 0"),
	'the worker leaks the standby memory buckets');
ok($standby->poll_query_until('postgres',
	"SELECT state LIKE 'idle (a standby%' FROM pyrate_worker_status()"),
	'its status says it leaks memory buckets only');
is($primary->safe_psql('postgres', "SELECT pyrate_count('m:s')"), '0',
	'memory buckets are per server: the primary has none of the standby ones');

# durable memory buckets: replicated, changed on the primary only
$primary->safe_psql('postgres', q{
SELECT pyrate_put('d:p', 2);
SELECT pyrate_put('d:old', 1, pyrate_now() - 7200000);
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('postgres', "SELECT pyrate_count('d:p'), pyrate_count('d:old'), (pyrate_peek('d:p', 0)).weight"),
	'2|1|2', 'durable memory buckets arrive by replication, item by item');
($rc, $out, $err) = $standby->psql('postgres', "SELECT pyrate_put('d:p')");
like($err, qr/cannot acquire on durable memory bucket "d:p" during recovery/,
	'acquiring a durable memory bucket on the standby is refused');
($rc, $out, $err) = $standby->psql('postgres', "SELECT pyrate_flush('d:p')");
like($err, qr/cannot flush durable memory bucket "d:p" during recovery/, '... and so is flushing it');
($rc, $out, $err) = $standby->psql('postgres', "SELECT pyrate_dispose('d:p')");
like($err, qr/cannot dispose of durable memory bucket "d:p" during recovery/, '... and disposing of it');
is($standby->safe_psql('postgres', "SELECT pyrate_leak() >= 0, pyrate_count('d:old')"), 't|1',
	'the standby leaves durable buckets to the primary, whose leaks it replays');
$primary->safe_psql('postgres', "SELECT pyrate_leak('d:old')");
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('postgres', "SELECT pyrate_count('d:old')"), '0', '... as this one');

# table buckets: read on the standby, written on the primary
is($standby->safe_psql('postgres', "SELECT pyrate_count('t:a'), pyrate_waiting('t:a', 2) > 0, (pyrate_peek('t:a', 0)).weight"),
	'2|t|2', 'a table bucket reads on the standby');
($rc, $out, $err) = $standby->psql('postgres', "SELECT pyrate_put('t:a')");
like($err, qr/cannot take permits from table bucket "t:a" during recovery/,
	'acquiring a table bucket on the standby is refused');
like($err, qr/HINT:  Table buckets live on the primary/, '... and says where to go');
$standby->safe_psql('postgres', "SELECT pyrate_put('m:x')");
is($standby->safe_psql('postgres', 'SELECT pyrate_leak() >= 0'), 't',
	'pyrate_leak() on the standby leaks what it can, with table buckets present');

# a promotion: the same worker goes on, now with table buckets too
$primary->safe_psql('postgres', q{
SELECT pyrate_put('old:a', 1, pyrate_now() - 60000) FROM generate_series(1, 5);
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
is($standby->safe_psql('postgres', "SELECT pyrate_count('old:a')"), '5',
	'old table items arrive by replication');
$standby->promote;
ok($standby->poll_query_until('postgres', "SELECT pyrate_count('old:a') = 0"),
	'after the promotion the worker leaks table buckets');
is($standby->safe_psql('postgres', $leaker), $pid, '... the same worker, following the promotion');
ok($standby->poll_query_until('postgres', "SELECT state = 'idle' FROM pyrate_worker_status()"),
	'its status is that of a primary');
is($standby->safe_psql('postgres', "SELECT pyrate_put('t:a'), pyrate_put('t:a')"), 't|f',
	'the promoted server takes table permits, within the replicated window');
is($standby->safe_psql('postgres', "SELECT pyrate_put('d:p'), pyrate_put('d:p')"), 't|f',
	'... and durable memory permits, within the replicated window');

$standby->stop;
$primary->stop;
done_testing();
