# Durable memory buckets (the default since 1.4): their changes are
# WAL-logged, so they come back after the postmaster is killed with
# SIGKILL, after a server process crashes, and on a promoted standby; a
# definition with durable => false keeps 1.3's volatile buckets, which start
# empty after a crash.
#
# Under load, what a crash can lose is measured: pgbench clients put into one
# durable bucket and log every acknowledged put (pgbench -l), the postmaster
# is killed mid-run, and the count the restarted server holds is compared
# with the acknowledged puts.  Puts do not wait for a WAL flush, so the loss
# is the puts of about the last wal_writer_delay; the test allows a second's
# worth and prints what it measured.  The same is done across a failover
# under synchronous replication: the promoted standby holds every
# acknowledged put but those of the last moments, so a {limit/1h} bucket
# admits at most the limit plus those across the two servers.
use strict;
use warnings;
use IPC::Run;
use Time::HiRes qw(time sleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
restart_after_crash = on
wal_writer_delay = 200ms
);

my $node = PostgreSQL::Test::Cluster->new('wal', port => 57171);
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', $conf);
$node->start;

sub sql { my $n = shift; return $n->safe_psql('postgres', @_); }

# Whether a process runs (a zombie, left for its new parent to reap, does not).
sub running
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh>;
	close $fh;
	return $stat =~ /^\d+ \(.*\) ([A-Z])/ && $1 ne 'Z';
}

# The processes whose parent is $pm.
sub children
{
	my ($pm) = @_;
	my @pids;
	for my $stat (glob('/proc/[0-9]*/stat'))
	{
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		close $fh;
		push @pids, $1 if $line =~ /^(\d+) \(.*\) [A-Z] (\d+) / && $2 == $pm;
	}
	return @pids;
}

# kill -9 of the postmaster, then a start once it and its children are gone
# (they exit as they notice it died)
sub crash_and_start
{
	my ($n) = @_;
	my $pm = $n->{_pid};
	my @children = children($pm);
	$n->kill9;
	for my $try (1 .. 300)
	{
		last unless grep { running($_) } $pm, @children;
		sleep(0.1);
	}
	# a dead postmaster's lock files may be removed
	unlink($n->data_dir . '/postmaster.pid', $n->host . '/.s.PGSQL.' . $n->port . '.lock')
	  unless running($pm);
	$n->start;
}

sql($node, q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('d:*', '{1000000/1h}', 'memory');
SELECT pyrate_define('s:*', '{100/1s,1000/1h}', 'memory', slots => 4);
SELECT pyrate_define('v:*', '{1000000/1h}', 'memory', durable => false);
});
is(sql($node, "SELECT string_agg(pattern || '=' || durable, ',' ORDER BY pattern) FROM pyrate_definitions"),
	'd:*=true,s:*=true,v:*=false', 'memory definitions are durable unless durable => false');

# ---- the WAL records each change -----------------------------------------
# (pg_walinspect reads records in the server, where pyrate describes its own)
sql($node, 'CREATE EXTENSION pg_walinspect');
my $before = sql($node, 'SELECT pg_current_wal_insert_lsn()');
sql($node, "SELECT pyrate_put('d:rec', 3)");
sql($node, "SELECT pyrate_put('v:rec', 3)");
sql($node, "SELECT pyrate_leak('d:rec', pyrate_now() + 7200000)");
my $after = sql($node, 'SELECT pg_current_wal_insert_lsn()');
# nothing waited for a flush; the WAL writer does it
my $t = time;
ok($node->poll_query_until('postgres', "SELECT pg_current_wal_flush_lsn() >= '$after'"),
	'the records reach disk without anyone waiting for them');
note(sprintf('flushed after %.0f ms', 1000 * (time - $t)));
my $dump = sql($node, qq{SELECT string_agg(resource_manager || ' ' || record_type || ' ' || description, E'\n')
	FROM pg_get_wal_records_info('$before', '$after') WHERE resource_manager = 'pyrate'});
like($dump, qr/^pyrate PUT db \d+ bucket "d:rec" ts \d+ weight 3 group \d+ slots 0\npyrate LEAK db \d+ bucket "d:rec" before \d+$/,
	'a durable put is a pyrate PUT record, a leak a LEAK record');
unlike($dump, qr/v:rec/, 'a volatile put writes no WAL');

# ---- kill -9 of the postmaster ----------------------------------------------
sql($node, q{
SELECT pyrate_put('d:a') FROM generate_series(1, 5);
SELECT pyrate_put('d:old', 2, pyrate_now() - 7200000), pyrate_put('d:old', 4);
SELECT pyrate_put('d:gone', 2), pyrate_put('d:flushed', 2);
SELECT pyrate_put('v:a') FROM generate_series(1, 5);
SELECT pyrate_put('s:x', 1, pyrate_now() - 50000 + i * 1000) FROM generate_series(1, 40) i;
});
# a checkpoint between: what came before it comes back from the saver's
# file, what came after from the WAL
sql($node, 'CHECKPOINT');
ok($node->poll_query_until('postgres',
	"SELECT (pg_stat_file('pyrate_memory.state')).modification >= now() - interval '5 s'"),
	'the saver saves the durable buckets after a checkpoint');
sql($node, q{
SELECT pyrate_put('d:a') FROM generate_series(1, 3);
SELECT pyrate_leak('d:old');
SELECT pyrate_dispose('d:gone');
SELECT pyrate_flush('d:flushed');
SELECT pyrate_put('s:x', 1, pyrate_now() - 5000 + i * 100) FROM generate_series(1, 20) i;
});
my $want = sql($node, q{
SELECT pyrate_count('d:a'), pyrate_count('d:old'), pyrate_count('d:flushed'),
	(SELECT count(*) FROM pyrate_buckets() WHERE name = 'd:gone'),
	pyrate_count('s:x'), (SELECT entries FROM pyrate_buckets() WHERE name = 's:x'),
	pyrate_count('v:a')});
is($want, '8|4|0|0|60|' . (split /\|/, sql($node, "SELECT entries FROM pyrate_buckets() WHERE name = 's:x'"))[0] . '|5',
	'before the crash: puts, a leak, a disposal, a flush, a slotted bucket');
sleep(0.6);    # longer than wal_writer_delay: everything is flushed
crash_and_start($node);
my $got = sql($node, q{
SELECT pyrate_count('d:a'), pyrate_count('d:old'), pyrate_count('d:flushed'),
	(SELECT count(*) FROM pyrate_buckets() WHERE name = 'd:gone'),
	pyrate_count('s:x'), (SELECT entries FROM pyrate_buckets() WHERE name = 's:x'),
	pyrate_count('v:a')});
my @w = split /\|/, $want;
$w[6] = 0;
is($got, join('|', @w), 'after kill -9 of the postmaster durable buckets are as they were, volatile ones empty');
is(sql($node, "SELECT (pyrate_peek('d:old', 0)).weight, (pyrate_peek('s:x', 0)).weight"), '4|1',
	'... item by item');
ok($node->log_contains(qr/pyrate: restored \d+ durable memory bucket/),
	'the log says what was restored');

# a second crash at once replays onto the file saved at the restart, and
# the volatile buckets of a clean shutdown do not come back after a crash
sql($node, "SELECT pyrate_put('v:clean', 2), pyrate_put('d:a')");
$node->restart;
is(sql($node, "SELECT pyrate_count('v:clean'), pyrate_count('d:a')"), '2|9',
	'a clean restart keeps both kinds');
sleep(0.6);
crash_and_start($node);
is(sql($node, "SELECT pyrate_count('v:clean'), pyrate_count('d:a')"), '0|9',
	'a crash after it keeps the durable ones only');

# a server process crash (the postmaster reinitializes shared memory)
sql($node, "SELECT pyrate_put('d:a', 3)");
sleep(0.6);
my $pos = -s $node->logfile;
my $pid = sql($node, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum launcher'");
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', "SELECT pyrate_count('d:a') = 12"),
	'after a server process crashed and shared memory was made anew, durable buckets are back');
ok($node->log_contains(qr/terminating any other active server processes/),
	'... it was a crash');

# ---- a checkpoint that completes before the saver saves ------------------
# The saver is stopped, so checkpoints move the redo pointer past its last
# save; its slot keeps the WAL from that save on, and recovery replays the
# records between it and the redo pointer before the redo loop.
sub saver_pid
{
	for my $pid (children($node->{_pid}))
	{
		open my $fh, '<', "/proc/$pid/cmdline" or next;
		my $cmd = <$fh> // '';
		close $fh;
		return $pid if $cmd =~ /^postgres: .*pyrate saver/;
	}
	return undef;
}
ok($node->poll_query_until('postgres',
	"SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'pyrate_memory'"),
	'the saver keeps the WAL it may need in a replication slot');
my $saver = saver_pid();
ok(defined $saver, 'the saver runs');
kill 'STOP', $saver;
sql($node, q{
SELECT pyrate_put('d:gap') FROM generate_series(1, 5);
CHECKPOINT;
SELECT pyrate_put('d:gap') FROM generate_series(1, 3);
SELECT pyrate_leak('d:old', pyrate_now() + 7200000);
SELECT pg_switch_wal();
CHECKPOINT;
SELECT pyrate_put('d:gap', 2);
SELECT pg_switch_wal();
CHECKPOINT;
});
is(sql($node, q{SELECT s.restart_lsn < c.redo_lsn
	FROM pg_replication_slots s, pg_control_checkpoint() c WHERE s.slot_name = 'pyrate_memory'}), 't',
	'checkpoints completed past the last save; the slot keeps the WAL from before them');
sleep(0.6);
$pos = -s $node->logfile;
kill 'KILL', $saver;
ok($node->poll_query_until('postgres', "SELECT pyrate_count('d:gap') = 10 AND pyrate_count('d:old') = 0"),
	'after a crash the changes logged between the last save and the redo pointer are back');
ok($node->wait_for_log(qr/pyrate: replayed [1-9]\d* change\(s\) of durable memory buckets logged from/, $pos),
	'... replayed from the WAL the slot kept, and the log says so');

# ---- what a crash under load loses ------------------------------------------
sub pgbench_puts
{
	my ($n, $name, $seconds, $logprefix) = @_;
	my $script = "${\$n->basedir}/put.sql";
	open my $fh, '>', $script or die;
	print $fh "SELECT pyrate_put('$name');\n";
	close $fh;
	my @cmd = ($n->installed_command('pgbench'), '-n', '-c', '2', '-j', '2', '-T', $seconds,
		'-f', $script, '-l', '--log-prefix', $logprefix, '-h', $n->host, '-p', $n->port, 'postgres');
	return IPC::Run::start(\@cmd, '>', \my $o, '2>', \my $e);
}

sub acked
{
	my ($prefix) = @_;
	my $n = 0;
	for my $f (glob("$prefix.*"))
	{
		open my $fh, '<', $f or die;
		while (<$fh>)
		{
			my @c = split;
			next unless @c >= 6 && $c[2] =~ /^\d+$/;
			$n++;
		}
		close $fh;
		unlink $f;
	}
	return $n;
}

my $prefix = $node->basedir . '/crashlog';
my $t0 = time;
my $h = pgbench_puts($node, 'd:hot', 10, $prefix);
sleep(2);
my $elapsed = time - $t0;
crash_and_start($node);
$h->finish;
my $acked = acked($prefix);
my $kept = sql($node, "SELECT pyrate_count('d:hot')");
my $rate = $acked / $elapsed;
my $lost = $acked - $kept;
note(sprintf('crash under load: %d puts acknowledged (%.0f/s), %d kept, %d lost (%.0f ms of puts)',
	$acked, $rate, $kept, $lost, 1000 * $lost / ($rate || 1)));
diag(sprintf('measured: kill -9 under load lost %d of %d acknowledged puts (%.0f ms at %.0f puts/s)',
	$lost, $acked, 1000 * $lost / ($rate || 1), $rate));
ok($acked > 100, 'the load ran');
ok($kept <= $acked + 2, 'nothing is counted that was not put (at most the two in flight)');
ok($lost <= $rate * 1.0, 'at most about a second of acknowledged puts is lost (wal_writer_delay is 200 ms)');

# ---- a failover under synchronous replication ---------------------------
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('walstandby', port => 57172);
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;

# a standby with less memory than the primary's buckets take: redo drops
# what does not fit, says so, and goes on
my $tiny = PostgreSQL::Test::Cluster->new('waltiny', port => 57173);
$tiny->init_from_backup($node, 'base', has_streaming => 1);
$tiny->append_conf('postgresql.conf', "pyrate.memory_size = '1MB'");
$tiny->start;
sql($node, q{
SELECT pyrate_define('big:*', '{1000000/1h}', 'memory');
SELECT count(*) FROM generate_series(1, 20) k, generate_series(1, 6000) i
	WHERE pyrate_put('big:' || k, 1, pyrate_now() - 6000 + i);
});
$node->wait_for_catchup($tiny, 'replay', $node->lsn('insert'));
ok($tiny->log_contains(qr/WARNING:  pyrate: replaying the WAL, an item of memory bucket "big:\d+" found no room and was dropped/),
	'a standby whose arena is too small drops what does not fit, with a warning');
is(sql($tiny, "SELECT sum(count) < 120000 FROM pyrate_buckets() WHERE name LIKE 'big:%'"), 't',
	'... holding less than the primary');
sql($node, "SELECT pyrate_dispose(name) FROM pyrate_buckets() WHERE name LIKE 'big:%'");
sql($node, "SELECT pyrate_put('d:fits', 2)");
$node->wait_for_catchup($tiny, 'replay', $node->lsn('insert'));
is(sql($tiny, "SELECT pyrate_count('d:fits'), (SELECT count(*) FROM pyrate_buckets() WHERE name LIKE 'big:%'), pg_is_in_recovery()"),
	'2|0|t', '... and replays on: disposals free its memory, later puts fit');
$tiny->stop;

$node->append_conf('postgresql.conf', "synchronous_standby_names = 'walstandby'");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'walstandby'"),
	'the standby replicates synchronously');
my $LIMIT = 1000000;
sql($node, "SELECT pyrate_define('fo:*', '{$LIMIT/1h}', 'memory')");
sql($node, "SELECT pyrate_put('fo:x', 7)");
$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
is(sql($standby, "SELECT pyrate_count('fo:x')"), '7', 'the standby holds the replicated durable bucket');
my ($rc, $out, $err) = $standby->psql('postgres', "SELECT pyrate_put('fo:x')");
like($err, qr/cannot acquire on durable memory bucket "fo:x" during recovery/,
	'acquiring a durable memory bucket on the standby is refused');
like($err, qr/durable => false/, '... and the hint says how to limit with the standby own buckets');

$prefix = $node->basedir . '/fologging';
$t0 = time;
$h = pgbench_puts($node, 'fo:hot', 10, $prefix);
sleep(2);
$node->stop('immediate');
$elapsed = time - $t0;
$h->finish;
$acked = acked($prefix);
$standby->promote;
$kept = sql($standby, "SELECT pyrate_count('fo:hot')");
$rate = $acked / $elapsed;
$lost = $acked - $kept;
diag(sprintf('measured: failover under synchronous replication lost %d of %d acknowledged puts (%.0f ms at %.0f puts/s)',
	$lost, $acked, 1000 * $lost / ($rate || 1), $rate));
ok($acked > 100, 'the load ran on the primary');
ok($kept <= $acked + 2, 'the promoted server counts nothing that was not put');
ok($lost <= $rate * 1.0, 'it holds all but about a second of acknowledged puts');
is(sql($standby, "SELECT pyrate_put('fo:x', 3), pyrate_count('fo:x')"), 't|10',
	'the promoted server takes permits on the replicated buckets');
is(sql($standby, "SELECT pyrate_put('fo:hot', $LIMIT - $kept), pyrate_put('fo:hot')"), 't|f',
	'and admits exactly the rest of the limit: limit + what was lost in all');

# every replication slot taken: the saver says so and goes on (it asks for
# the WAL flushes too)
$standby->safe_psql('postgres', q{
SELECT pg_drop_replication_slot('pyrate_memory');
SELECT pg_create_physical_replication_slot('taken' || i)
FROM generate_series(1, current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int) i;
});
$pos = -s $standby->logfile;
$standby->safe_psql('postgres', "SELECT pyrate_put('fo:slot'); CHECKPOINT;");
ok($standby->wait_for_log(qr/ERROR:  all replication slots are in use/, $pos),
	'with every replication slot taken the saver cannot keep its WAL, and the log says why');
$standby->safe_psql('postgres', "SELECT pyrate_put('fo:slot')");
$after = $standby->lsn('insert');
ok($standby->poll_query_until('postgres', "SELECT pg_current_wal_flush_lsn() >= '$after'"),
	'... and goes on asking for the flushes');
ok(!$standby->log_contains(qr/background worker "pyrate saver" \(PID \d+\) exited/, $pos),
	'... without exiting');

$standby->stop;
done_testing();
