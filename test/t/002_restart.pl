# The memory engine's volatile buckets (durable => false) across restarts:
# saved at a clean shutdown and restored, empty after an immediate shutdown
# or a crash (and the log says so), a bad state file ignored with a warning,
# and buckets that no longer fit dropped.  (Durable buckets: 007_memory_wal.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restart', port => 57111);
$node->init;
$node->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
pyrate.memory_size = '8MB'
restart_after_crash = on
));
$node->start;
my $state = $node->data_dir . '/pyrate_memory.state';
my $long = 'keep:' . ('x' x 1019);    # 1024 bytes

sub memory_snapshot
{
	my ($db) = @_;
	return $node->safe_psql($db, q{
SELECT string_agg(format('%s=%s[%s]', left(b.name, 12), b.count,
	(SELECT string_agg(format('%s@%s', (pyrate_peek(b.name, i)).weight, (pyrate_peek(b.name, i)).ts), ',' ORDER BY i)
	 FROM generate_series(0, b.count::int - 1) i)), ' ' ORDER BY b.name)
FROM pyrate_buckets() b WHERE b.storage = 'memory'});
}

$node->safe_psql('postgres', qq{
CREATE EXTENSION pyrate;
SELECT pyrate_define('keep:*', '{5/1h,10/1d}', 'memory', durable => false);
SELECT pyrate_define('tab', '{5/1h}', 'table');
SELECT pyrate_put('keep:a', 1, 1000), pyrate_put('keep:a', 2, 1001), pyrate_put('keep:a', 2, 1002);
SELECT pyrate_put('keep:b', 1, 5000), pyrate_put('keep:b', 1, 5000), pyrate_put('keep:b', 3, 9000);
SELECT pyrate_put('$long', 4, 7000);
SELECT pyrate_put('keep:empty', 1, 1000), pyrate_flush('keep:empty');
SELECT pyrate_put('tab');
CREATE DATABASE db2;
});
$node->safe_psql('db2', q{
CREATE EXTENSION pyrate;
SELECT pyrate_define('keep:*', '{5/1h,10/1d}', 'memory', durable => false);
SELECT pyrate_put('keep:a', 5, 2000);
});
my $before = memory_snapshot('postgres');
my $before2 = memory_snapshot('db2');
is($before, 'keep:a=5[2@1002,2@1002,2@1001,2@1001,1@1000] keep:b=5[3@9000,3@9000,3@9000,1@5000,1@5000] keep:empty=0[] '
	  . 'keep:xxxxxxx=4[4@7000,4@7000,4@7000,4@7000]', 'memory buckets before the restart');
my $waiting = $node->safe_psql('postgres', "SELECT pyrate_waiting('keep:a', 1, 1003)");

$node->restart;    # -m fast
is(memory_snapshot('postgres'), $before, 'memory buckets survive a fast restart, item by item');
is(memory_snapshot('db2'), $before2, '... in every database, each its own namespace');
is($node->safe_psql('postgres', "SELECT pyrate_waiting('keep:a', 1, 1003)"), $waiting,
	'decisions after the restart are the same');
is($node->safe_psql('postgres', "SELECT pyrate_put('keep:a', 1, 1003), pyrate_put('keep:a', 1, 3601002)"), 'f|t',
	'the restored bucket goes on limiting');
ok($node->log_contains(qr/pyrate: saved 5 memory bucket\(s\) holding 8 item\(s\) to "pyrate_memory.state"/),
	'the shutdown says what it saved');
ok($node->log_contains(qr/pyrate: restored 5 memory bucket\(s\) holding 8 item\(s\) from "pyrate_memory.state"/),
	'the start says what it restored');
is(-s $state, 48 + 128 * 8 + 4, 'while running, the state file holds only the durable buckets (none here)');
is($node->safe_psql('postgres', 'SELECT buckets, items FROM pyrate_memory_status()'), '5|9',
	'pyrate_memory_status counts the restored buckets');
# (this node has wal_level = minimal: the saver can keep no slot, and says so)
ok($node->log_contains(qr/LOG:  pyrate: no replication slot keeps the WAL that durable memory buckets may need after a crash/),
	'without a replication slot the saver says what a crash may lose');

# ---- immediate shutdown: nothing saved ----------------------------------
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'"), '0',
	'after an immediate shutdown the memory engine is empty');
is($node->safe_psql('postgres', "SELECT pyrate_count('tab')"), '1', '... and the table engine intact');
ok($node->log_contains(qr/pyrate: not saving the memory engine's buckets: the server did not shut down cleanly/),
	'the immediate shutdown saved nothing, and said so');
ok($node->log_contains(qr/pyrate: restored 0 durable memory bucket\(s\) holding 0 item\(s\) as saved at [0-9A-F]+\/[0-9A-F]+; volatile buckets start empty/),
	'the next start says the volatile buckets start empty');

# ---- a crashed backend: shared memory reinitialized ----------------------
$node->safe_psql('postgres', "SELECT pyrate_put('keep:crash')");
my $logpos = -s $node->logfile;
my $victim = $node->background_psql('postgres', on_error_stop => 0);
kill 'KILL', $victim->query_safe('SELECT pg_backend_pid()');
eval { $victim->quit };
ok($node->wait_for_log(qr/pyrate: restored 0 durable memory bucket.*volatile buckets start empty/, $logpos),
	'after a backend crash the volatile buckets start empty, and the log says so');
ok($node->poll_query_until('postgres', "SELECT pyrate_count('keep:crash') = 0 AND pyrate_count('tab') = 1"),
	'... its buckets are gone, the table engine is intact');
$node->safe_psql('postgres', "SELECT pyrate_put('keep:after')");
$node->restart;
is($node->safe_psql('postgres', "SELECT pyrate_count('keep:after')"), '1',
	'after a crash cycle a clean restart saves again');

# ---- bad state files --------------------------------------------------
sub restart_with_file
{
	my ($edit) = @_;
	$node->stop;
	my $bytes = slurp_file($state);
	$bytes = $edit->($bytes);
	open my $fh, '>:raw', $state or die "open $state: $!";
	print $fh $bytes;
	close $fh;
	my $pos = -s $node->logfile;
	$node->start;
	return $pos;
}

my $pos = restart_with_file(sub { my $b = shift; substr($b, -1, 1) = chr(ord(substr($b, -1, 1)) ^ 1); $b });
ok($node->wait_for_log(qr/WARNING:  pyrate: ignoring "pyrate_memory.state": its checksum does not match/, $pos),
	'a flipped bit: the file is ignored with a warning');
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'"), '0',
	'... and nothing is restored from it');

$node->safe_psql('postgres', "SELECT pyrate_put('keep:v')");
$pos = restart_with_file(sub { my $b = shift; substr($b, 4, 4) = pack('L', 99); $b });
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": it was written in format version 99, this server reads 2/, $pos),
	'another format version: ignored with a warning');

$node->safe_psql('postgres', "SELECT pyrate_put('keep:t')");
$pos = restart_with_file(sub { my $b = shift; substr($b, 0, length($b) - 10) });
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": (it ends too early|its checksum is missing|it is shorter than its counts say)/, $pos),
	'a truncated file: ignored with a warning');

$pos = restart_with_file(sub { 'x' x 64 });
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": it is not a pyrate memory file/, $pos),
	'a foreign file: ignored with a warning');
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'"), '0',
	'... and the engine starts empty');

# a header or bucket record whose counts the file cannot hold: ignored
# before anything is allocated for them (the server used to refuse to start,
# asking for 32 GB in the postmaster)
my $header = pack('LLLLqq', 0x50595254, 1, 2, 0, 1, 2**31);
$pos = restart_with_file(sub { $header . pack('LLLL', 5, 1, 2**31, 0) . 'x' });
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": its header is malformed/, $pos),
	'a 49-byte file claiming 2^31 items: ignored with a warning');
is($node->safe_psql('postgres', 'SELECT 1'), '1', '... and the server is up');
$header = pack('LLLLqq', 0x50595254, 1, 2, 0, 1, 1);
$pos = restart_with_file(sub { $header . pack('LLLL', 5, 1, 2**31, 0) . 'x' . ("\0" x 16) });
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": it is shorter than its counts say/, $pos),
	'a bucket record claiming 2^31 items: ignored with a warning');
is($node->safe_psql('postgres', 'SELECT 1'), '1', '... and the server is up');

# CRC-32C, as the server computes it, to forge files with a valid checksum
sub crc32c
{
	my ($data) = @_;
	my $crc = 0xFFFFFFFF;
	for my $byte (unpack('C*', $data))
	{
		$crc ^= $byte;
		$crc = ($crc & 1) ? (($crc >> 1) ^ 0x82F63B78) : ($crc >> 1) for 1 .. 8;
	}
	return $crc ^ 0xFFFFFFFF;
}

# an item whose weight is out of range, under a valid checksum: ignored
$node->safe_psql('postgres', "SELECT pyrate_put('keep:w')");
$pos = restart_with_file(
	sub {
		my $b = substr(shift, 0, -4);
		substr($b, -8, 8) = pack('q', 2**40);
		return $b . pack('L', crc32c($b));
	});
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": a bucket's item has a weight or timestamp out of range/, $pos),
	'an item of weight 2^40 under a valid checksum: ignored with a warning');
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'"), '0',
	'... and nothing is restored from it');

# a bucket counted in a group (max_buckets) past the last, under a valid
# checksum: ignored (the group sits after the header, the partitions' lsns,
# and the bucket's dbid, namelen and nitems)
$node->safe_psql('postgres', "SELECT pyrate_put('keep:g')");
$pos = restart_with_file(
	sub {
		my $b = substr(shift, 0, -4);
		substr($b, 48 + 128 * 8 + 12, 4) = pack('L', 70000);
		return $b . pack('L', crc32c($b));
	});
ok($node->wait_for_log(qr/pyrate: ignoring "pyrate_memory.state": a bucket record is malformed/, $pos),
	'a bucket in group 70000 under a valid checksum: ignored with a warning');
is($node->safe_psql('postgres', "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'"), '0',
	'... and nothing is restored from it');

$node->safe_psql('postgres', "SELECT pyrate_put('keep:perm')");
$node->stop;
chmod 0, $state;
$pos = -s $node->logfile;
$node->start;
ok($node->wait_for_log(qr/WARNING:  pyrate: could not read file "pyrate_memory.state": Permission denied/, $pos),
	'an unreadable file: a warning, and the engine starts empty');
chmod 0600, $state;

# the state file cannot be written: said in the log, and the next start is empty
$node->safe_psql('postgres', "SELECT pyrate_put('keep:w')");
mkdir "$state.tmp" or die;
$pos = -s $node->logfile;
$node->restart;
ok($node->wait_for_log(qr/LOG:  pyrate: could not write file "pyrate_memory.state.tmp": Is a directory/, $pos),
	'a state file that cannot be written: the log says so');
is($node->safe_psql('postgres', "SELECT pyrate_count('keep:w'), pyrate_count('keep:perm')"), '0|0',
	'... and nothing is restored, not even what an older file held');
rmdir "$state.tmp";

# ---- restored into less memory ----------------------------------------
$node->safe_psql('postgres', q{
SELECT pyrate_define('fill:*', '{1000000/1h}', 'memory');
SELECT count(*) FROM generate_series(1, 20) k, generate_series(1, 6000) i
	WHERE pyrate_put('fill:' || k, 1, 1000 + i);
});
is($node->safe_psql('postgres', 'SELECT buckets, items FROM pyrate_memory_status()'), '20|120000',
	'20 buckets of 6000 items in 8 MB');
$node->stop;
$node->append_conf('postgresql.conf', "pyrate.memory_size = '1MB'");
$pos = -s $node->logfile;
$node->start;
ok($node->wait_for_log(qr/WARNING:  pyrate: \d+ saved memory bucket\(s\) did not fit and were dropped/, $pos),
	'into a smaller pyrate.memory_size: what does not fit is dropped, with a warning');
my ($restored) = slurp_file($node->logfile, $pos) =~ /pyrate: restored (\d+) memory bucket/;
ok(defined $restored && $restored > 0 && $restored < 20, "... what fits is restored ($restored of 20)");
is($node->safe_psql('postgres',
	"SELECT bool_and(count = 6000) AND count(*) = $restored FROM pyrate_buckets() WHERE storage = 'memory'"),
	't', '... each restored bucket whole');

$node->stop;

# ---- pyrate.memory_size has bounds ----------------------------------------
$node->append_conf('postgresql.conf', "pyrate.memory_size = '512kB'");
$pos = -s $node->logfile;
$node->start;
ok($node->log_contains(qr/WARNING:  512 kB is outside the valid range for parameter "pyrate.memory_size" \(1024 \.\. \d+\)/, $pos),
	'a pyrate.memory_size below 1 MB is refused, with the bounds');
is($node->safe_psql('postgres', 'SELECT size_bytes FROM pyrate_memory_status()'), 32 * 1024 * 1024,
	'... and the default (32 MB) is used');
$node->stop;
done_testing();
