# test/lib.sh — shared helpers for pyrate's scripts (sourced, never run).
#
# Servers run as the postgres OS user in throwaway directories under one
# temp root, on unix sockets (PostgreSQL) or loopback (Redis), on unusual
# ports.  Every server started here is stopped by pyrate_cleanup, which the
# sourcing script installs as its EXIT trap with pyrate_trap.

PYRATE_TOP=${PYRATE_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
export PATH="$PG_BINDIR:$PATH"
PGXS_DIR=${PGXS_DIR:-$(dirname "$(pg_config --pgxs 2>/dev/null || echo /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk)")/..}

PYRATE_TMP=${PYRATE_TMP:-}
PYRATE_PG_DIRS=()
PYRATE_REDIS_DIRS=()

# The packages everything needs, Debian 12.  Never starts Debian's own cluster.
pyrate_install_deps() {
	if [ "${PYRATE_SKIP_INSTALL:-0}" = 1 ]; then return 0; fi
	local pkgs=(build-essential postgresql-15 postgresql-server-dev-15 postgresql-client-15
		libpq-dev libipc-run-perl libhiredis-dev redis-server libsqlite3-dev sqlite3
		pgbouncer postgresql-15-cron valgrind clang libclang-rt-14-dev pkg-config python3 "$@")
	local missing=()
	local p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "== installing: ${missing[*]}"
	mkdir -p /etc/postgresql-common
	[ -f /etc/postgresql-common/createcluster.conf ] ||
		echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian's redis-server package may start its own service; this project
	# uses only the servers it starts itself.
}

pyrate_build() {
	echo "== building and installing pyrate"
	make -C "$PYRATE_TOP" -s PG_CONFIG="$PG_BINDIR/pg_config" >/dev/null &&
		make -C "$PYRATE_TOP" -s PG_CONFIG="$PG_BINDIR/pg_config" install >/dev/null
}

# The temp root of this script's servers (made by pyrate_trap).
pyrate_tmp() {
	echo "$PYRATE_TMP"
}

as_postgres() {
	runuser -u postgres -- "$@"
}

# pg_start NAME PORT [postgresql.conf line...]
#   Cluster in $PYRATE_TMP/NAME, socket directory $PYRATE_TMP/NAME/sock.
pg_start() {
	local name=$1 port=$2
	shift 2
	local dir
	dir="$(pyrate_tmp)/$name"
	mkdir -p "$dir/sock"
	chown -R postgres: "$dir"
	as_postgres "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log"
		return 1
	}
	{
		echo "port = $port"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir/sock'"
		echo "fsync = off"
		echo "max_connections = 100"
		echo "log_line_prefix = '%m [%p] '"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null || {
		cat "$dir/server.log"
		return 1
	}
	PYRATE_PG_DIRS+=("$dir")
}

# pg_conninfo NAME PORT [DB] — a libpq connection string
pg_conninfo() {
	echo "host=$(pyrate_tmp)/$1/sock port=$2 user=postgres dbname=${3:-postgres}"
}

pg_stop() {
	local dir
	dir="$(pyrate_tmp)/$1"
	[ -f "$dir/data/postmaster.pid" ] &&
		as_postgres "$PG_BINDIR/pg_ctl" -D "$dir/data" -m "${2:-fast}" -w stop >/dev/null 2>&1
	return 0
}

# bench_start NAME PORT [postgresql.conf line...] — a benchmark's server,
#   pyrate preloaded (the script exits when it does not start); sets DSN,
#   and sql runs psql there: unaligned, tuples only, quiet, stopping at the
#   first error.
bench_start() {
	local name=$1 port=$2
	shift 2
	pg_start "$name" "$port" "shared_preload_libraries = 'pyrate'" "$@" || exit 1
	DSN=$(pg_conninfo "$name" "$port")
}
sql() { psql -X -At -q -v ON_ERROR_STOP=1 "$DSN" "$@"; }
# median: the median of the numbers on stdin, one a line (the lower of the
#   middle two when they are even in count)
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# pgbench_tps PGBENCH-ARGS...: the run's tps as pgbench prints it.  A run
#   that failed (a client aborted on an error, say) prints 0, and pgbench's
#   first error on stderr: an aborted run's tps counts only the transactions
#   before the abort, and must never pass for a figure.
pgbench_tps() {
	local out rc
	out=$(pgbench "$@" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] || ! pgbench_ok <(printf '%s\n' "$out"); then
		echo "pgbench failed (exit $rc): $(grep -m1 -i "error" <<<"$out")" >&2
		echo 0
		return 1
	fi
	sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1
}

# redis_start NAME PORT — false (its log shown) when it does not answer.
#   Ports below 32768: above, a loopback client's ephemeral port may hold it.
redis_start() {
	local name=$1 port=$2 dir
	dir="$(pyrate_tmp)/$name"
	mkdir -p "$dir"
	chown -R postgres: "$dir"
	as_postgres redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
		--save '' --appendonly no >/dev/null
	local i
	PYRATE_REDIS_DIRS+=("$dir:$port")
	for i in $(seq 50); do
		redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "# redis-server on port $port did not answer; its log:"
	tail -5 "$dir/redis.log" 2>/dev/null | sed 's/^/# /'
	return 1
}

redis_stop() {
	local dir
	dir="$(pyrate_tmp)/$1"
	if [ -f "$dir/redis.pid" ]; then
		local pid
		pid=$(cat "$dir/redis.pid")
		kill "$pid" 2>/dev/null
		local i
		for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		rm -f "$dir/redis.pid"
	fi
}

pyrate_cleanup() {
	local d
	for d in "${PYRATE_PG_DIRS[@]}"; do
		[ -f "$d/data/postmaster.pid" ] &&
			as_postgres "$PG_BINDIR/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1
	done
	for d in "${PYRATE_REDIS_DIRS[@]}"; do
		local pidf="${d%%:*}/redis.pid"
		[ -f "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null
	done
	if [ -n "$PYRATE_TMP" ] && [ "${PYRATE_KEEP_TMP:-0}" != 1 ]; then
		rm -rf "$PYRATE_TMP"
	fi
}

# Make the temp root and stop everything started here on exit.
pyrate_trap() {
	if [ -z "$PYRATE_TMP" ]; then
		PYRATE_TMP=$(mktemp -d /tmp/pyrate.XXXXXX)
		chmod 755 "$PYRATE_TMP"
		chown postgres: "$PYRATE_TMP"
	fi
	trap pyrate_cleanup EXIT
	trap 'exit 130' INT TERM
}

# Counting for suites: ok/not_ok print a line each; suite_end prints the
# "N passed, N failed" line the runner adds up, and sets the exit status.
SUITE_PASSED=0
SUITE_FAILED=0
ok() {
	SUITE_PASSED=$((SUITE_PASSED + 1))
	echo "ok - $*"
}
not_ok() {
	SUITE_FAILED=$((SUITE_FAILED + 1))
	echo "not ok - $*"
}
# pgbench_ok LOG: the pgbench run whose output LOG holds ran to its end
#   without an error: it reported its transactions, none failed, and no
#   client aborted.  ("number of failed transactions: 0" alone proves
#   nothing: pgbench prints it when every client aborted on an error.)
pgbench_ok() {
	local out
	out=$(cat "$1")
	grep -q "^number of transactions actually processed: " <<<"$out" &&
		grep -q "^number of failed transactions: 0 " <<<"$out" &&
		! grep -q "aborted" <<<"$out"
}
# pgbench_processed LOG: the transactions a pgbench run's log says it processed
pgbench_processed() {
	sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1"
}
# check DESCRIPTION COMMAND... — ok when the command succeeds
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# add the counts of a tool's own "N passed, N failed" line (from a file)
add_counts() {
	local line
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
	if [ -z "$line" ]; then
		SUITE_FAILED=$((SUITE_FAILED + 1))
		return
	fi
	SUITE_PASSED=$((SUITE_PASSED + $(echo "$line" | awk '{print $1}')))
	SUITE_FAILED=$((SUITE_FAILED + $(echo "$line" | awk '{print $3}')))
}
# client_build LOG TEST... — libpyrate and the replay tool, then each
# test/client/TEST.c built into $(pyrate_tmp)/bin/TEST with the suites'
# flags (warnings are errors); compiler output goes to LOG
client_build() {
	local log=$1 t
	shift
	mkdir -p "$(pyrate_tmp)/bin"
	make -s -C "$PYRATE_TOP/src/client" >"$log" 2>&1 &&
		make -s -C "$PYRATE_TOP" test/conformance/replay >>"$log" 2>&1 || return 1
	for t in "$@"; do
		gcc -O1 -g -Wall -Wextra -Werror -std=gnu99 -I"$PYRATE_TOP/src/client" -I"$(pg_config --includedir)" \
			-o "$(pyrate_tmp)/bin/$t" "$PYRATE_TOP/test/client/$t.c" "$PYRATE_TOP/src/client/libpyrate.a" \
			-L"$(pg_config --libdir)" -lpq -lhiredis -lsqlite3 -lpthread -lm 2>>"$log" || return 1
	done
}

# pg_waits DSN APPLICATION_NAME WAIT_EVENT_TYPE [TENTHS] — whether a session
# of that application name comes to wait on that event type within TENTHS
# tenths of a second (default 100)
pg_waits() {
	local q="SELECT count(*) FROM pg_stat_activity WHERE application_name = '$2' AND wait_event_type = '$3'"
	local i
	for i in $(seq "${4:-100}"); do
		[ "$(psql -X -At "$1" -c "$q")" = 1 ] && return 0
		sleep 0.1
	done
	return 1
}

# regress_results LOGFILE KIND TEST... — an ok/not_ok line per test of a
# pg_regress or isolation run, from its log
regress_results() {
	local log=$1 kind=$2 t
	shift 2
	for t in "$@"; do
		if grep -Eq "^(test |ok [0-9]+ +- | +)?$t +\.\.\. ok|^ok [0-9]+ +- +$t " "$log"; then
			ok "$kind $t"
		else
			not_ok "$kind $t"
		fi
	done
}
suite_end() {
	echo "$SUITE_PASSED passed, $SUITE_FAILED failed"
	[ "$SUITE_FAILED" -eq 0 ]
}
