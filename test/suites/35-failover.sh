#!/usr/bin/env bash
# 35-failover — libpyrate's Postgres bucket through a failover: a primary
# and a streaming standby (pg_basebackup -R), both with pyrate preloaded,
# reached through one multi-host connection string with
# target_session_attrs=read-write.  test/client/test_failover.c takes
# permits, has the primary stopped (immediate), checks the fail modes while
# no primary answers, has the standby promoted and takes permits again with
# the same objects.  The table engine's own failover test (no over-admission
# under synchronous replication, the loss under asynchronous replication) is
# the TAP test test/t/005_failover.pl, run by 30-memory-worker.
#
#   PYRATE_SKIP_INSTALL=1 bash test/suites/35-failover.sh
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
. test/client/valgrind.sh
pyrate_trap
pyrate_install_deps

TMP=$(pyrate_tmp)
BIN=$TMP/bin
PRIMARY_PORT=56401
STANDBY_PORT=56402
mkdir -p "$BIN"

echo "== building libpyrate and test_failover"
if client_build "$TMP/build.log" test_failover; then
	ok "test_failover builds without warnings"
else
	cat "$TMP/build.log"
	not_ok "test_failover builds without warnings"
	suite_end
	exit 1
fi

echo "== a primary and a streaming standby"
# the test's bucket holds its items for an hour: nothing needs leaking
pg_start failover_primary "$PRIMARY_PORT" "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" || exit 1
PRIMARY=$TMP/failover_primary
STANDBY=$TMP/failover_standby
psql -X -q "$(pg_conninfo failover_primary "$PRIMARY_PORT")" -c "CREATE EXTENSION pyrate" ||
	not_ok "CREATE EXTENSION pyrate"
mkdir -p "$STANDBY/sock"
chown -R postgres: "$STANDBY"
if as_postgres "$PG_BINDIR/pg_basebackup" -D "$STANDBY/data" -h "$PRIMARY/sock" -p "$PRIMARY_PORT" -U postgres \
	-R -X stream -c fast >"$STANDBY/basebackup.log" 2>&1; then
	# the copied postgresql.conf is the primary's: the lines added last win
	{
		echo "port = $STANDBY_PORT"
		echo "unix_socket_directories = '$STANDBY/sock'"
	} >>"$STANDBY/data/postgresql.conf"
	PYRATE_PG_DIRS+=("$STANDBY")
	as_postgres "$PG_BINDIR/pg_ctl" -D "$STANDBY/data" -l "$STANDBY/server.log" -w -t 60 start >/dev/null ||
		cat "$STANDBY/server.log"
else
	cat "$STANDBY/basebackup.log"
fi
STANDBY_DSN=$(pg_conninfo failover_standby "$STANDBY_PORT")
check "the standby runs in recovery" test "$(psql -X -At "$STANDBY_DSN" -c 'SELECT pg_is_in_recovery()' 2>&1)" = t
streaming=no
for _ in $(seq 300); do
	if [ "$(psql -X -At "$(pg_conninfo failover_primary "$PRIMARY_PORT")" \
		-c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" = 1 ]; then
		streaming=yes
		break
	fi
	sleep 0.1
done
check "the standby streams from the primary" test $streaming = yes

cat >"$TMP/stop-primary.sh" <<SH
exec runuser -u postgres -- '$PG_BINDIR/pg_ctl' -D '$PRIMARY/data' -m immediate -w stop >/dev/null
SH
# promoted, and taking writes (pg_ctl promote -w waits for the first; the
# second is what target_session_attrs=read-write asks a new connection)
cat >"$TMP/promote.sh" <<SH
runuser -u postgres -- '$PG_BINDIR/pg_ctl' -D '$STANDBY/data' -w -t 60 promote >/dev/null || exit 1
for i in \$(seq 600); do
	[ "\$('$PG_BINDIR/psql' -X -At '$STANDBY_DSN' -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ] && exit 0
	sleep 0.1
done
exit 1
SH

echo "== test_failover"
MULTI="host=$PRIMARY/sock,$STANDBY/sock port=$PRIMARY_PORT,$STANDBY_PORT user=postgres dbname=postgres target_session_attrs=read-write"
valgrind_test "$TMP/test_failover.out" test_failover \
	"$BIN/test_failover" "$MULTI" "$STANDBY_DSN" "bash $TMP/stop-primary.sh" "bash $TMP/promote.sh"

pg_stop failover_standby
pg_stop failover_primary
suite_end
