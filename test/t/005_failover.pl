# The table engine across a failover: a primary and a standby, both with
# pyrate preloaded, one {N/1h} table bucket hammered by two client sessions,
# the primary stopped with -m immediate mid-load, the standby promoted and
# the same load continued there until the bucket is full.  The stored items
# on the promoted server prove there was no over-admission.
#
# Each client transaction is
#     BEGIN; pyrate_try_acquire('k', 1, false); pyrate_count('k'); COMMIT;
# and counts as acknowledged only once its COMMIT has returned.  With items
# written at once (pyrate.defer_table_puts off) an admit keeps the bucket's
# lock to the end of its transaction, so the count read right after it is
# its own position in the bucket (1, 2, ...): commits come in position order
# and a standby holds a prefix of them, so an acknowledged admit survived
# the failover exactly when its position is within the count the promoted
# server starts with.  With items written at commit (the default) positions
# are not known before the commit; the same load is checked by counts: the
# promoted server starts with every acknowledged admit and at most those in
# flight, and no window of what it stores holds more than the limit.
#
# Under synchronous replication nothing acknowledged may be lost.  Under
# asynchronous replication the admits lost across the failover are measured
# and printed (clients then saw that many admits more than the limit).
use strict;
use warnings;
use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(max);

my $N = 300;      # the limit: {300/1h}
my $CUT = 100;    # acknowledged admits before the primary is stopped
my $TIMEOUT = $PostgreSQL::Test::Utils::timeout_default;

# ---- a client: one psql session, fed a few transactions ahead ------------

our $DEFER = 'on';

sub client_new
{
	my ($node, $id) = @_;
	my $c = { id => $id, in => "SET pyrate.defer_table_puts = $DEFER;\n", out => '', err => '', junk => '',
		sent => 0, done => 0,
		dead => 0, rejected => 0, results => [] };
	$c->{h} = IPC::Run::start(
		[ $node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres'), '-f', '-' ],
		'<', \$c->{in}, '>', \$c->{out}, '2>', \$c->{err});
	return $c;
}

# queue k more transactions; the line "R seq acquired position" of each
# comes only after its COMMIT returned (psql stops at the first error), so
# a session goes on by itself, a few transactions ahead of what was read
sub client_send
{
	my ($c, $k) = @_;
	for (1 .. $k)
	{
		$c->{sent}++;
		$c->{in} .= "BEGIN;\n"
		  . "SELECT pyrate_try_acquire('k', 1, false) AS a \\gset\n"
		  . "SELECT pyrate_count('k') AS c \\gset\n"
		  . "COMMIT;\n"
		  . "\\echo R $c->{sent} :a :c\n";
	}
	eval { $c->{h}->pump_nb };
	return;
}

# read what arrived; returns how many results came in
sub client_poll
{
	my ($c) = @_;
	my $got = 0;

	return 0 if $c->{dead};
	eval { $c->{h}->pump_nb } if $c->{h}->pumpable;
	while ($c->{out} =~ s/\A([^\n]*)\n//)
	{
		my $line = $1;
		if ($line =~ /^R (\d+) ([tf]) (\d+)$/ && $1 == $c->{done} + 1)
		{
			push @{ $c->{results} }, { acquired => $2 eq 't', position => $3 };
			$c->{rejected}++ if $2 eq 'f';
			$c->{done}++;
			$got++;
		}
		else
		{
			$c->{junk} .= "$line\n";
		}
	}
	if (!$c->{h}->pumpable)
	{
		eval { $c->{h}->finish };
		$c->{dead} = 1;
	}
	return $got;
}

# keep transactions queued on every live client that $want says should go
# on, until $done says so or the timeout passes; false on the timeout
sub drive
{
	my ($clients, $want, $done, $timeout) = @_;
	my $end = time + $timeout;

	while (time < $end)
	{
		my $progress = 0;
		$progress += client_poll($_) for @$clients;
		return 1 if $done->();
		for my $c (@$clients)
		{
			client_send($c, 8) if !$c->{dead} && $c->{sent} - $c->{done} < 4 && $want->($c);
		}
		usleep(1000) unless $progress;
	}
	return 0;
}

sub client_quit
{
	my ($c) = @_;
	return if $c->{dead};
	$c->{in} .= "\\q\n";
	drive([$c], sub { 0 }, sub { $c->{dead} }, $TIMEOUT)
	  or $c->{h}->kill_kill;
	return;
}

sub acked_positions
{
	return map { $_->{position} } grep { $_->{acquired} } map { @{ $_->{results} } } @_;
}

sub distinct
{
	my %seen;
	return scalar(grep { !$seen{$_}++ } @_) == scalar(@_);
}

# ---- one failover ---------------------------------------------------------

sub failover
{
	my ($mode, $port, $positions) = @_;
	my $sync = $mode eq 'sync';
	local $DEFER = $positions ? 'off' : 'on';
	my $node_name = $positions ? $mode : "${mode}_deferred";

	$mode .= $positions ? ', written at once' : ', written at commit';
	my $primary = PostgreSQL::Test::Cluster->new("${node_name}_primary", port => $port);
	$primary->init(allows_streaming => 1);
	$primary->append_conf('postgresql.conf', qq(
shared_preload_libraries = 'pyrate'
pyrate.leak_interval = 0
));
	$primary->start;
	$primary->safe_psql('postgres', qq{
CREATE EXTENSION pyrate;
SELECT pyrate_define('k', '{$N/1h}', 'table');
});
	$primary->backup("${node_name}_base");
	my $standby = PostgreSQL::Test::Cluster->new("${node_name}_standby", port => $port + 1);
	$standby->init_from_backup($primary, "${node_name}_base", has_streaming => 1);
	# the promoted server has no standby of its own: its commits must not wait
	$standby->append_conf('postgresql.conf', "synchronous_standby_names = ''\n");
	$standby->start;
	if ($sync)
	{
		$primary->safe_psql('postgres',
			"ALTER SYSTEM SET synchronous_standby_names = '*'; SELECT pg_reload_conf()");
	}
	my $state = $sync ? 'sync' : 'async';
	ok($primary->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = '$state' AND state = 'streaming'"),
		"$mode: the standby streams, $state");

	# ---- load on the primary, stopped mid-load ----
	my @clients = map { client_new($primary, $_) } 1 .. 2;
	my $phase1 = sub { scalar(acked_positions(@clients)) >= $CUT };
	ok(drive(\@clients, sub { 1 }, $phase1, $TIMEOUT),
		"$mode: two clients admit $CUT on the primary");
	# the sessions go on with what they have queued while the primary is
	# stopped under them (a queue they cannot finish first)
	client_send($_, 50) for @clients;
	$primary->stop('immediate');
	ok(drive(\@clients, sub { 1 }, sub { !grep { !$_->{dead} } @clients }, $TIMEOUT),
		"$mode: every client session ends with the primary");
	my @before = acked_positions(@clients);
	# a session that died with work queued may have had one commit under way
	my $inflight = grep { $_->{sent} > $_->{done} } @clients;
	ok(distinct(@before), "$mode: before the failover, each acknowledged admit holds a position of its own")
	  if $positions;

	# ---- promotion ----
	$standby->promote;
	ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		"$mode: the standby is promoted");
	my $start = $standby->safe_psql('postgres', "SELECT pyrate_count('k')");
	# with positions, the acknowledged admits beyond the promoted count;
	# without, at least as many as the promoted count falls short by
	my $lost = $positions ? scalar(grep { $_ > $start } @before) : max(0, scalar(@before) - $start);

	# ---- the same load on the promoted server, until the bucket is full ----
	my @again = map { client_new($standby, $_) } 1 .. 2;
	ok(drive(\@again, sub { !$_[0]->{rejected} },
			sub { !grep { !$_->{dead} && !$_->{rejected} } @again }, $TIMEOUT),
		"$mode: the clients go on against the promoted server until it rejects");
	ok(!grep({ $_->{dead} } @again), "$mode: ... without losing a session")
	  or diag(join('', map { $_->{err} } @again));
	is(join('', map { $_->{junk} } @clients, @again), '',
		"$mode: the sessions printed their results in order, and nothing else");
	client_quit($_) for @again;
	my @after = acked_positions(@again);

	# ---- what is stored ----
	my $count = $standby->safe_psql('postgres', "SELECT pyrate_count('k')");
	my ($items, $widest) = split /\|/, $standby->safe_psql('postgres', qq{
SELECT count(*), max(units) FROM (
	SELECT count(*) OVER (ORDER BY p.ts RANGE BETWEEN 3600000 PRECEDING AND CURRENT ROW) AS units
	FROM generate_series(0, pyrate_count('k')::int - 1) i, pyrate_peek('k', i) p) w});
	my $acked = @before + @after;

	note(sprintf("%s replication: %d admits acknowledged before the failover (%d transaction(s) in flight at the stop), "
		  . "%d items on the promoted server at its start, %d admits acknowledged after, %d stored in the end",
		$mode, scalar(@before), $inflight, $start, scalar(@after), $count));
	note(sprintf("%s replication: acknowledged admits lost across the failover: %d (clients saw %d admits for a limit of %d)",
		$mode, $lost, $acked, $N));

	ok($count <= $N, "$mode: the promoted server stores at most $N units ($count)");
	is($count, $N, "$mode: ... and the clients filled it");
	is($items, $count, "$mode: pyrate_peek finds every stored unit");
	ok($widest <= $N, "$mode: no window of the stored items holds more than $N ($widest)");
	ok(distinct(@after) && !grep({ $_ <= $start } @after),
		"$mode: after the promotion, each admit holds a new position of its own")
	  if $positions;
	is(scalar(@after), $count - $start, "$mode: every item stored after the promotion was acknowledged");
	if ($sync)
	{
		is($lost, 0, "$mode: every acknowledged admit survived the failover");
		ok($acked <= $count, "$mode: the acknowledged admits ($acked) are no more than the stored count ($count)");
		ok($start >= scalar(@before) && $start <= scalar(@before) + $inflight,
			"$mode: the promoted server starts with the acknowledged admits and at most those in flight ($start)");
	}
	else
	{
		ok($lost >= 0, "$mode: lost admits measured ($lost)");
		ok($start <= scalar(@before) + $inflight,
			"$mode: the promoted server holds no admit that was never made ($start)");
	}

	$standby->stop;
	return;
}

failover('sync', 57141, 1);
failover('async', 57143, 1);
failover('sync', 57145, 0);
failover('async', 57147, 0);
done_testing();
