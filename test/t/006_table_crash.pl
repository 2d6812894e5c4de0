# The table engine across a crash.  Permits of transactions that had not
# committed leave nothing behind: those waiting for their commit lived in
# memory, and items written at once roll back.  Under a hot key's load,
# commits and rollbacks mixed, a crash leaves a log that is never short: no
# window of the stored items holds more than its limit, units are contiguous
# except for a gap below an item marked as stacked (a commit that was under
# way may have failed beneath it: its units stay counted), and the limiter
# then admits exactly what the count leaves.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('tablecrash', port => 57151);
$node->init;
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
restart_after_crash = on
max_connections = 40
));
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('open', '{2/1h}', 'table');
SELECT pyrate_define('open:written', '{1/1h}', 'table');
SELECT pyrate_define('hot', '{30000/1h}', 'table');
SELECT pyrate_put('open', 0), pyrate_put('open:written', 0);
});

# ---- open transactions at the crash ---------------------------------------
my $waiting = $node->background_psql('postgres', on_error_stop => 0);
$waiting->query_safe("BEGIN");
is($waiting->query_safe("SELECT pyrate_put('open', 2)"), 't', 'a transaction holds 2 permits, waiting for its commit');
is($node->safe_psql('postgres', "SELECT pyrate_put('open')"), 'f', '... another session is turned down at once');
my $written = $node->background_psql('postgres', on_error_stop => 0);
$written->query_safe("BEGIN");
$written->query_safe("SET LOCAL pyrate.defer_table_puts = off");
is($written->query_safe("SELECT pyrate_put('open:written', 1)"), 't', 'another holds a permit whose item is written at once');

# ---- a hot key under load -------------------------------------------------
my $script = $node->basedir . '/hot.sql';
open my $fh, '>', $script or die "open $script: $!";
print $fh q{\set rb random(0, 3)
BEGIN;
SELECT pyrate_put('hot');
SELECT pyrate_put('hot', 2);
\if :rb
COMMIT;
\else
ROLLBACK;
\endif
};
close $fh;
my ($out, $err) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '60', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres', "SELECT pyrate_count('hot') > 3000"), 'the hot key fills under load');

# a backend killed: every server process goes, shared memory is made anew,
# and recovery replays what the WAL holds
my $logpos = -s $node->logfile;
my $victim = $node->background_psql('postgres', on_error_stop => 0);
kill 'KILL', $victim->query_safe('SELECT pg_backend_pid()');
eval { $victim->quit };
eval { $waiting->quit };
eval { $written->quit };
$load->finish;
ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $logpos), 'the server went through a crash');
ok($node->poll_query_until('postgres', 'SELECT true'), '... and is back');

is($node->safe_psql('postgres', "SELECT pyrate_count('open') + pyrate_count('open:written')"), '0',
	'nothing of the transactions open at the crash is counted');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE pyrate_put('open')) FROM generate_series(1, 5)"), '2',
	'... and their permits are there again: the 2 waiting for the commit');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE pyrate_put('open:written')) FROM generate_series(1, 5)"), '1',
	'... and the 1 written at once');

my $bucket = "(SELECT id FROM pyrate_bucket_data WHERE name = 'hot')";
my $stored = $node->safe_psql('postgres', "SELECT sum(abs(weight)) FROM pyrate_items WHERE bucket = $bucket");
my $count = $node->safe_psql('postgres', "SELECT pyrate_count('hot')");
my $gaps = $node->safe_psql('postgres', qq{
SELECT coalesce(sum(base - prev), 0) FROM (
	SELECT cum - abs(weight) AS base, lag(cum) OVER (ORDER BY cum) AS prev FROM pyrate_items WHERE bucket = $bucket) s
WHERE base <> prev});
note("hot key after the crash: $count counted, $stored stored, $gaps in gaps");
cmp_ok($count, '>=', $stored, 'the count is never short of the units stored');
is($count - $stored, $gaps, '... and exceeds them by the gaps alone');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM (
	SELECT weight, cum - abs(weight) AS base, lag(cum) OVER (ORDER BY cum) AS prev FROM pyrate_items WHERE bucket = $bucket) s
WHERE base < prev OR (base > prev AND weight > 0)}), '0',
	'units never overlap, and a gap is only ever below an item marked as stacked');
is($node->safe_psql('postgres', qq{
SELECT count(*) FROM (
	SELECT sum(abs(weight)) OVER (ORDER BY ts RANGE BETWEEN 3600000 PRECEDING AND CURRENT ROW) AS units
	FROM pyrate_items WHERE bucket = $bucket) w WHERE units > 30000}), '0',
	'no window of the stored items holds more than its limit');
my $left = 30000 - $count;
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE pyrate_put('hot', 1, pyrate_now())) FROM generate_series(1, 30000)"),
	$left, "the limiter admits exactly what the count leaves ($left)");

$node->stop;
done_testing();
