#!/usr/bin/env bash
# 50-client — libpyrate and the pyrate CLI against a real PostgreSQL (with the
# extension, preloaded), a real redis-server, pgbouncer and SQLite files:
# conformance replay through every client bucket, the C tests under
# valgrind, and the CLI's exit codes and messages.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
. test/client/valgrind.sh
. test/client/cli.sh
. test/client/cli_define.sh
pyrate_trap
pyrate_install_deps

TMP=$(pyrate_tmp)
BIN=$TMP/bin
TRACE=${PYRATE_TRACE:-$PWD/test/conformance/traces/sliding_window_log.tsv}
# TCP ports below the kernel's ephemeral range (32768-60999), where an outgoing
# connection of the run could hold them
PGPORT_C=26301
BOUNCER_PORT=26302
PGPORT_PLAIN=26303
REDIS_PORT=6361
mkdir -p "$BIN"

echo "== building libpyrate, the CLI, the tests and the replay tool"
if client_build "$TMP/build.log" test_local test_redis test_pg; then
	ok "client builds without warnings"
else
	cat "$TMP/build.log"
	not_ok "client builds without warnings"
	suite_end
	exit 1
fi
if grep -q warning "$TMP/build.log"; then
	grep warning "$TMP/build.log"
	not_ok "no compiler warnings"
fi
PYRATE_CLI=$PWD/src/client/pyrate

echo "== servers"
# The replays stamp items with the trace's 1970 timestamps, which the
# background worker would leak as long gone: its leaking is off here.
pg_start client "$PGPORT_C" "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" \
	"listen_addresses = '127.0.0.1'" || exit 1
DSN=$(pg_conninfo client "$PGPORT_C")
psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" || not_ok "CREATE EXTENSION pyrate"
redis_start redis "$REDIS_PORT" || not_ok "redis-server starts on port $REDIS_PORT"
mkdir -p "$TMP/bouncer"
cat >"$TMP/bouncer/pgbouncer.ini" <<INI
[databases]
postgres = host=$TMP/client/sock port=$PGPORT_C dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir = $TMP/bouncer
auth_type = trust
auth_file = $TMP/bouncer/users.txt
pool_mode = transaction
default_pool_size = 2
logfile = $TMP/bouncer/pgbouncer.log
pidfile = $TMP/bouncer/pgbouncer.pid
INI
echo '"postgres" ""' >"$TMP/bouncer/users.txt"
chown -R postgres: "$TMP/bouncer"
as_postgres pgbouncer -d -q "$TMP/bouncer/pgbouncer.ini" || not_ok "pgbouncer starts"
stop_bouncer() {
	[ -f "$TMP/bouncer/pgbouncer.pid" ] && kill "$(cat "$TMP/bouncer/pgbouncer.pid")" 2>/dev/null
	pyrate_cleanup
}
trap stop_bouncer EXIT
BOUNCER_DSN="host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=postgres"
for _ in $(seq 50); do psql -X -q "$BOUNCER_DSN" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

echo "== conformance replay through every client bucket"
replay() {
	local desc=$1
	shift
	test/conformance/replay "$@" "$TRACE" >"$TMP/replay.out" 2>&1
	tail -3 "$TMP/replay.out"
	if grep -qE '^[0-9]+ passed, 0 failed' "$TMP/replay.out"; then ok "replay: $desc"; else not_ok "replay: $desc"; fi
}
replay memory --bucket memory
replay multiprocess --bucket multiprocess
replay sqlite --bucket sqlite --sqlite "$TMP/replay.db"
replay redis --bucket redis --redis "127.0.0.1:$REDIS_PORT"
replay "postgres (table storage)" --bucket postgres --storage table --dsn "$DSN"
replay "postgres (memory storage)" --bucket postgres --storage memory --dsn "$DSN"
replay "postgres through pgbouncer" --bucket postgres --storage table --dsn "$BOUNCER_DSN"

echo "== C tests under valgrind"
run_test() {
	local name=$1
	shift
	valgrind_test "$TMP/$name.out" "$name" "$BIN/$name" "$@"
}
mkdir -p "$TMP/sqlite"
run_test test_local "$TMP/sqlite"
cat >"$TMP/restart-redis.sh" <<SH
. '$PWD/test/lib.sh'
PYRATE_TMP='$TMP'
redis_stop redis
redis_start redis $REDIS_PORT
SH
run_test test_redis 127.0.0.1 "$REDIS_PORT" "bash $TMP/restart-redis.sh"
run_test test_pg "$DSN" \
	"runuser -u postgres -- $PG_BINDIR/pg_ctl -D $TMP/client/data -l $TMP/client/server.log -m fast -w restart >/dev/null" \
	"$BOUNCER_DSN"

echo "== the pyrate CLI"
# the first line of an error: "pyrate: MESSAGE", with the SQLSTATE when the server sent one
first_line() {
	if head -1 "$TMP/cli.err" | grep -q -- "$1"; then ok "cli: the error's first line matches '$1'"; else
		not_ok "cli: the error's first line does not match '$1': $(cat "$TMP/cli.err")"
	fi
}
one_line() { if [ "$(wc -l <"$TMP/cli.err")" = 1 ]; then ok "cli: one-line error"; else not_ok "cli: error is $(wc -l <"$TMP/cli.err") lines"; fi; }

cli 0 "--help" --help
out_has cli.out "acquire NAME"
for c in acquire define status leak; do
	cli 0 "$c --help" "$c" --help
	out_has cli.out "usage: pyrate $c"
done
cli 2 "no command: usage on stderr"; out_has cli.err "usage: pyrate"
cli 2 "unknown command" frobnicate; one_line
cli 2 "unknown option" acquire x --frob; one_line
cli 2 "negative weight" acquire x --weight -1 --dsn "$DSN"; out_has cli.err "weight"
cli 2 "--timeout without --wait" acquire x --timeout 1 --dsn "$DSN"; out_has cli.err "needs --wait"
cli 2 "invalid rate list" define 'cli:*' 5/s 5/m --dsn "$DSN"; one_line
cli 2 "bad storage" define 'cli:*' 5/s --storage disk --dsn "$DSN"; one_line
cli 0 "define" define 'cli:*' 2/s 3/m --dsn "$DSN"
cli 0 "define (memory storage)" define 'clim:*' 1/s --storage memory --dsn "$DSN"
cli 2 "--slots out of range" define 'clis:*' 2/s 30/m --slots 0 --dsn "$DSN"; out_has cli.err "slots must be a whole number from 1 to 1000"
cli 2 "--slots not a number" define 'clis:*' 2/s 30/m --slots x4 --dsn "$DSN"; one_line
cli 2 "--max-buckets out of range" define 'clis:*' 2/s --max-buckets 0 --storage memory --dsn "$DSN"; out_has cli.err "max-buckets must be"
cli 2 "--max-buckets on table storage: the server's error" define 'clis:*' 2/s --max-buckets 5 --storage table --dsn "$DSN"
first_line "max_buckets caps memory buckets only (SQLSTATE 22023)"
cli 2 "acquire takes no --slots" acquire cli:a --slots 3 --dsn "$DSN"; one_line
cli 0 "define with --slots" define 'clis:*' 2/s 30/m --slots 4 --dsn "$DSN"
cli 0 "define with --max-buckets (memory storage)" define 'clic:*' 1/s --storage memory --max-buckets 7 --dsn "$DSN"
if [ "$(psql -X -At "$DSN" -c "SELECT string_agg(pattern || ' ' || storage || ' ' || coalesce(slots::text, '-') || ' ' || coalesce(max_buckets::text, '-'), ', ' ORDER BY pattern) FROM pyrate_definitions WHERE pattern IN ('clis:*', 'clic:*', 'clim:*')")" = \
	"clic:* memory - 7, clim:* memory - -, clis:* table 4 -" ]; then
	ok "cli: the definitions carry slots and max_buckets as given"
else
	not_ok "cli: the definitions carry slots and max_buckets as given"
fi
cli_define_volatile "$DSN"
cli 0 "acquire 1" acquire cli:a --dsn "$DSN"
cli 0 "acquire 2" acquire cli:a --dsn "$DSN"
cli 1 "acquire 3: rejected" acquire cli:a --dsn "$DSN"
out_has cli.out "retry after [0-9]* ms (rate 2/1s)"
cli 1 "weight over every limit" acquire cli:b --weight 5 --dsn "$DSN"; out_has cli.out "can never fit"
start=$(date +%s%N)
cli 0 "--wait: admitted once the window moves" acquire cli:a --wait --dsn "$DSN"
waited=$((($(date +%s%N) - start) / 1000000))
if [ "$waited" -ge 100 ]; then ok "cli: --wait waited ($waited ms)"; else not_ok "cli: --wait returned after $waited ms"; fi
start=$(date +%s%N)
cli 1 "--wait --timeout 1 with 3/1m used up" acquire cli:a --wait --timeout 1 --dsn "$DSN"
waited=$((($(date +%s%N) - start) / 1000000))
out_has cli.out "timed out"
if [ "$waited" -ge 900 ] && [ "$waited" -lt 5000 ]; then ok "cli: --timeout 1 waited until the timeout ($waited ms)"; else
	not_ok "cli: --timeout 1 returned after $waited ms"
fi
cli 0 "memory storage acquire" acquire clim:x --dsn "$DSN"
cli 1 "memory storage rejects" acquire clim:x --dsn "$DSN"
cli 2 "undefined bucket" acquire nothing:here --dsn "$DSN"
first_line '^pyrate: .*no rate limit is defined for bucket "nothing:here" (SQLSTATE 42704)$'
out_has cli.err "^HINT: .*pyrate_define('nothing:here'"
cli 2 "a name too long" acquire "$(printf 'x%.0s' $(seq 1100))" --dsn "$DSN"
first_line '^pyrate: .*too long (SQLSTATE 54000)$'
out_has cli.err "^DETAIL: It is 1100 bytes"
out_has cli.err "^HINT: Hash long keys"
if [ "$(wc -l <"$TMP/cli.err")" = 3 ]; then ok "cli: message, DETAIL and HINT: three lines"; else
	not_ok "cli: the error is $(wc -l <"$TMP/cli.err") lines"
fi
PGHOST=$TMP/client/sock PGPORT=$PGPORT_C PGUSER=postgres PGDATABASE=postgres cli 1 "PG* environment honoured" acquire cli:a
cli 0 "status" status --dsn "$DSN"; out_has cli.out "cli:a"
cli 0 "status NAME" status cli:a --dsn "$DSN"; out_has cli.out "cli:a"
cli 0 "status of a bucket holding nothing" status cli:none --dsn "$DSN"; out_has cli.out 'no bucket named "cli:none"'
cli 2 "status without the extension" status --dsn "$(pg_conninfo client "$PGPORT_C" template1)"
one_line; first_line '^pyrate: postgres: extension "pyrate" is not installed'
cli 2 "status of a database that does not exist" status --dsn "$(pg_conninfo client "$PGPORT_C" nope)"
first_line '^pyrate: postgres: cannot connect: .*database "nope" does not exist'
out_has cli.err "^HINT: .*--dsn"
cli 0 "leak" leak --dsn "$DSN"; out_has cli.out "leaked [0-9]* units"
cli 2 "unreachable database" acquire cli:a --dsn "host=$TMP/nowhere port=1"
first_line '^pyrate: postgres: cannot connect: connection to server on socket'
out_has cli.err "^DETAIL: Is the server running"
out_has cli.err "^HINT: .*--dsn 'host=... dbname=...'.*PGHOST, PGPORT, PGDATABASE and PGUSER"
cli 0 "unreachable database, --fail-open" acquire cli:a --fail-open --dsn "host=$TMP/nowhere port=1"
out_has cli.err "fail-open"

echo "== the pyrate CLI on a server without pyrate preloaded"
if pg_start plain "$PGPORT_PLAIN" && psql -X -q "$(pg_conninfo plain "$PGPORT_PLAIN")" -c "CREATE EXTENSION pyrate"; then
	cli 2 "memory storage without preload" define 'mem:*' 1/s --storage memory --dsn "$(pg_conninfo plain "$PGPORT_PLAIN")"
	first_line '^pyrate: .*memory storage engine is not available (SQLSTATE 55000)$'
	out_has cli.err "^DETAIL: .*pyrate loaded when the server starts"
	out_has cli.err "^HINT: Add pyrate to shared_preload_libraries"
	cli 0 "table storage without preload" define 'tab:*' 1/s --dsn "$(pg_conninfo plain "$PGPORT_PLAIN")"
else
	not_ok "a server without pyrate preloaded starts"
fi
pg_stop plain

echo "== install"
make -s -C src/client install DESTDIR="$TMP/root" PREFIX=/usr/local >/dev/null 2>&1
for f in usr/local/include/pyrate.h usr/local/lib/libpyrate.a usr/local/lib/libpyrate.so \
	usr/local/lib/pkgconfig/pyrate.pc usr/local/bin/pyrate; do
	check "install: $f" test -e "$TMP/root/$f"
done
if PKG_CONFIG_PATH=$TMP/root/usr/local/lib/pkgconfig pkg-config --libs pyrate 2>/dev/null | grep -q -- -lpyrate; then
	ok "pkg-config pyrate"
else
	not_ok "pkg-config pyrate"
fi
# after a build for the default prefix, an install elsewhere describes where it went
make -s -C src/client install DESTDIR="$TMP/opt" PREFIX=/opt/pyrate >/dev/null 2>&1
PC=$TMP/opt/opt/pyrate/lib/pkgconfig/pyrate.pc
check "install PREFIX=/opt/pyrate: pyrate.pc says prefix=/opt/pyrate" grep -qx 'prefix=/opt/pyrate' "$PC"
check "install PREFIX=/opt/pyrate: pyrate.pc says libdir=/opt/pyrate/lib" grep -qx 'libdir=/opt/pyrate/lib' "$PC"
check "install PREFIX=/opt/pyrate: pyrate.pc says includedir=/opt/pyrate/include" \
	grep -qx 'includedir=/opt/pyrate/include' "$PC"

suite_end
