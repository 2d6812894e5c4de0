# The memory engine's own behaviour: non-transactional, namespaced per
# database, 1 KiB names, emptied by DROP EXTENSION / DROP DATABASE (only when
# they commit), bounded memory (eviction of empty buckets, then SQLSTATE
# 53200 without harm to other buckets), and no lock left behind by a backend
# cancelled, terminated or killed in the middle of acquiring, nor held while
# a blocking acquire sleeps.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $node = PostgreSQL::Test::Cluster->new('engine', port => 57121);
$node->init;
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
pyrate.memory_size = '4MB'
restart_after_crash = on
));
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('m:*', '{3/1h}', 'memory');
SELECT pyrate_define('t:*', '{3/1h}', 'table');
});

sub sql { return $node->safe_psql('postgres', @_); }

# ---- non-transactional ------------------------------------------------
sql("BEGIN; SELECT pyrate_put('m:rb'), pyrate_put('t:rb'); ROLLBACK;");
is(sql("SELECT pyrate_count('m:rb'), pyrate_count('t:rb')"), '1|0',
	'a rolled-back acquire keeps its memory permit (the table one is returned)');

# ---- names --------------------------------------------------------------
my $n1 = 'm:' . ('a' x 1021) . 'x';    # 1024 bytes
my $n2 = 'm:' . ('a' x 1021) . 'y';
is(sql("SELECT pyrate_put('$n1'), pyrate_put('$n1'), pyrate_put('$n2'), pyrate_count('$n1'), pyrate_count('$n2')"),
	't|t|t|2|1', '1 KiB names, differing only in the last byte, are separate buckets');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT pyrate_put('m:" . ('a' x 1023) . "')");
like($err, qr/bucket name is too long/, 'a 1025-byte name is refused');

# ---- per database; DROP EXTENSION / DATABASE -------------------------------
sql('CREATE DATABASE db2');
$node->safe_psql('db2', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('m:*', '{3/1h}', 'memory');
SELECT pyrate_put('m:rb'), pyrate_put('m:rb');
});
is(sql("SELECT pyrate_count('m:rb')") . '/' . $node->safe_psql('db2', "SELECT pyrate_count('m:rb')"), '1/2',
	'each database has its own buckets under the same name');
$node->safe_psql('db2', 'BEGIN; DROP EXTENSION pyrate; ROLLBACK');
is($node->safe_psql('db2', "SELECT pyrate_count('m:rb')"), '2', 'a rolled-back DROP EXTENSION keeps the buckets');
$node->safe_psql('db2',
	'BEGIN; SAVEPOINT s; DROP EXTENSION pyrate; ROLLBACK TO s; COMMIT');
is($node->safe_psql('db2', "SELECT pyrate_count('m:rb')"), '2', '... so does one rolled back to a savepoint');
my $buckets = sql('SELECT buckets FROM pyrate_memory_status()');
sql('DROP DATABASE db2');
is(sql('SELECT buckets FROM pyrate_memory_status()'), $buckets - 1, "DROP DATABASE removes that database's buckets");
is(sql("SELECT pyrate_count('m:rb')"), '1', '... and no other');

# ---- memory full ----------------------------------------------------------
sql("SELECT pyrate_define('full:*', '{100000000/1h}', 'memory')");
($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT count(*) FROM generate_series(1, 100000) WHERE pyrate_put('full:big', 1, 1000)");
like($err, qr/ERROR:  53200: pyrate's shared memory is full/, 'filling the memory: SQLSTATE 53200');
like($err, qr/DETAIL:  Bucket "full:big" needs \d+ more bytes; pyrate.memory_size is 4096 kB/, '... saying what and how much');
like($err, qr/HINT:  Leak buckets more often/, '... and what to do');
my $big = sql("SELECT pyrate_count('full:big')");
# a ring doubles by copying, so one bucket gets at least an eighth of the arena
ok($big * 16 >= 4 * 1024 * 1024 / 8, "the bucket kept what it admitted before memory ran out ($big items)");
($ret, $out, $err) = $node->psql('postgres', "SELECT pyrate_put('full:big', 1, 1000)");
like($err, qr/shared memory is full/, 'the next put on the full bucket fails alike');
is(sql("SELECT pyrate_count('full:big'), (pyrate_peek('full:big', 0)).ts, (pyrate_peek('full:big', $big - 1)).ts"),
	"$big|1000|1000", '... and leaves it intact');
is(sql("SELECT pyrate_count('m:rb'), pyrate_count('$n1'), pyrate_put('m:small'), pyrate_count('m:small')"),
	'1|2|t|1', 'other buckets are untouched and small ones still fit');
is(sql('SELECT used_bytes <= size_bytes, full_errors >= 2 FROM pyrate_memory_status()'), 't|t',
	'memory in use stays within pyrate.memory_size; the refusals are counted');

# eviction: buckets that leaked empty make room; buckets with items stay
sql("SELECT pyrate_dispose('full:big')");
sql("SELECT pyrate_define('ev:*', '{3/1s}', 'memory')");
($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(*) FROM generate_series(1, 1000000) i WHERE pyrate_put('ev:' || i, 1, 1000)");
like($err, qr/shared memory is full/, 'memory filled with buckets of one item each');
my $nev = sql("SELECT count(*) FROM pyrate_buckets() WHERE name LIKE 'ev:%'");
sql("SELECT sum(pyrate_leak('ev:' || i, 100000)) FROM generate_series(2, $nev) i");
is(sql("SELECT count(*), sum(count) FROM pyrate_buckets() WHERE name LIKE 'ev:%'"), "$nev|1",
	"$nev buckets, all but one leaked empty");
my $evicted = sql('SELECT evicted FROM pyrate_memory_status()');
is(sql("SELECT count(*) FROM generate_series(1, 40000) WHERE pyrate_put('full:big2', 1, 1000)"), '40000',
	'a bucket needing their room gets it');
is(sql('SELECT evicted FROM pyrate_memory_status()') - $evicted, $nev - 1, 'the empty buckets were evicted');
is(sql("SELECT count(*), sum(count) FROM pyrate_buckets() WHERE name LIKE 'ev:%'"), '1|1',
	'the bucket holding an item was kept');
is(sql("SELECT pyrate_count('m:rb'), pyrate_count('$n1')"), '1|2', 'so were the others');
sql("SELECT pyrate_dispose('full:big2')");

# ---- no lock left behind ---------------------------------------------------
# (volatile: after the SIGKILL below the bucket must start empty, whatever
# of its WAL reached the disk; 007_memory_wal covers durable buckets)
sql("SELECT pyrate_define('hot', '{10/1h}', 'memory', durable => false)");
my $hammer = "DO \$\$ BEGIN LOOP PERFORM pyrate_put('hot'); END LOOP; END \$\$";

# Start a backend hammering the hot key; returns (session, pid).
sub hammer
{
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	$s->query_until(qr/go/, "\\echo go\n$hammer;\n");
	# running: it has filled the bucket and is being rejected, over and over
	$node->poll_query_until('postgres',
		"SELECT state = 'active' AND pyrate_count('hot') = 10 FROM pg_stat_activity WHERE pid = $pid") or die;
	sleep 0.3;
	return ($s, $pid);
}

# the next acquire on the key must answer within 2 s
sub prompt
{
	my ($what) = @_;
	my $t0 = time;
	my ($r, $o, $e) = $node->psql('postgres',
		"SET statement_timeout = '2s'; SELECT (pyrate_acquire('hot')).acquired, pyrate_count('hot')");
	my $took = time - $t0;
	return ($r == 0 ? $o : "error: $e", $took);
}

for my $how ('pg_cancel_backend', 'pg_terminate_backend')
{
	my ($s, $pid) = hammer();
	sql("SELECT $how($pid)");
	my ($o, $took) = prompt();
	is($o, 'f|10', "$how in the middle of acquiring: the next acquire answers (took ${took}s)");
	eval { $s->quit };
}

{
	sql("SELECT pyrate_flush('hot')");
	my ($s, $pid) = hammer();
	my $pos = -s $node->logfile;
	kill 'KILL', $pid;
	eval { $s->quit };
	$node->wait_for_log(qr/database system is ready to accept connections/, $pos);
	my ($o, $took) = prompt();
	is($o, 't|1', "SIGKILL in the middle of acquiring: after the server reinitializes the next acquire succeeds (took ${took}s)");
}

# a blocking acquire sleeps without the lock
sql("SELECT pyrate_define('slow', '{1/1h}', 'memory'); SELECT pyrate_put('slow')");
my $sleeper = $node->background_psql('postgres', on_error_stop => 0);
$sleeper->query_until(qr/go/, "\\echo go\nSELECT pyrate_try_acquire('slow', 1, true, 30);\n");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pyrate_try_acquire(''slow''%' AND wait_event = 'Extension'")
  or die;
my $t0 = time;
is(sql("SET statement_timeout = '2s'; SELECT pyrate_put('slow'), pyrate_count('slow')"), 'f|1',
	sprintf('while a blocking acquire sleeps, others on its key go on (%.3fs)', time - $t0));
sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pyrate_try_acquire(''slow''%'");
eval { $sleeper->quit };

$node->stop;
done_testing();
