#!/usr/bin/env bash
# The memory engine and the background worker: the TAP tests (worker,
# restart and crash, the engine's limits), the conformance traces on the
# memory engine, and stress on one hot key and on 10,000 keys.
#
#   PYRATE_SKIP_INSTALL=1 bash test/suites/30-memory-worker.sh [tap|conformance|stress]...
#   PYRATE_TAP=002 ... runs only the TAP files whose names contain 002
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap
pyrate_install_deps

want() {
	[ $# -eq 0 ] && return 0
	local w
	for w in "${PARTS[@]}"; do [ "$w" = "$1" ] && return 0; done
	return 1
}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(tap conformance stress)

# ---- TAP: prove runs as postgres, from a copy it owns ---------------------
run_tap() {
	local dir t name out rc passed failed
	dir="$(pyrate_tmp)/tap"
	mkdir -p "$dir"
	cp test/t/*.pl "$dir/"
	chown -R postgres: "$dir"
	for t in "$dir"/*.pl; do
		name=$(basename "$t")
		case "$name" in *"${PYRATE_TAP:-}"*) ;; *) continue ;; esac
		out="$dir/$name.out"
		echo "== TAP $name"
		(cd "$dir" && as_postgres env PATH="$PG_BINDIR:$PATH" \
			PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" TESTDIR="$dir" \
			PG_TEST_TIMEOUT_DEFAULT=60 \
			prove -v -I "$PGXS_DIR/test/perl" "$t") >"$out" 2>&1
		rc=$?
		passed=$(grep -c '^ok ' "$out")
		failed=$(grep -c '^not ok ' "$out")
		grep -E '^(ok|not ok) ' "$out"
		if [ "$rc" != 0 ]; then
			[ "$failed" = 0 ] && failed=1
			echo "-- $name failed; its output and logs are in $dir"
			grep -E '^#' "$out" | tail -30
			tail -15 "$dir/tmp_check/log/regress_log_${name%.pl}"
			PYRATE_KEEP_TMP=1
		fi
		SUITE_PASSED=$((SUITE_PASSED + passed))
		SUITE_FAILED=$((SUITE_FAILED + failed))
	done
}

# ---- one preloaded server for the conformance traces and the stress ------
PORT=57201
server_up=0
server() {
	[ $server_up = 1 ] && return 0
	pg_start memstress $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" \
		"pyrate.memory_size = '64MB'" "max_connections = 120" || return 1
	DSN=$(pg_conninfo memstress $PORT)
	psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" || return 1
	server_up=1
}
sql() { psql -X -At -v ON_ERROR_STOP=1 "$DSN" "$@"; }

run_conformance() {
	local trace out
	out=$(mktemp)
	for trace in test/conformance/traces/*.tsv; do
		echo "== memory engine: $(basename "$trace")"
		test/conformance/replay --bucket sql --storage memory --dsn "$DSN" "$trace" | tail -3 | tee "$out"
		add_counts "$out"
	done
	rm -f "$out"
	check "the replay leaves no memory bucket behind" \
		test "$(sql -c "SELECT count(*) FROM pyrate_buckets() WHERE storage = 'memory'")" = 0
}

# Windows from the stored items of memory buckets named like $1: for every
# item and every rate, the units in [ts - interval, ts] must not exceed the
# limit.  Prints the violations (none is a pass).  Items have weight 1 here.
memory_window_violations() {
	sql -v like="$1" <<'SQL'
SELECT b.name, r AS rate, w.ts, w.units
FROM pyrate_buckets() b
CROSS JOIN LATERAL unnest(b.rates) r
CROSS JOIN LATERAL (
	SELECT p.ts, count(*) OVER (ORDER BY p.ts RANGE BETWEEN pyrate_rate_interval(r) PRECEDING AND CURRENT ROW) AS units
	FROM generate_series(0, b.count::int - 1) i, pyrate_peek(b.name, i) p
) w
WHERE b.storage = 'memory' AND b.name LIKE :'like' AND w.units > pyrate_rate_limit(r)
ORDER BY 1, 3
LIMIT 20;
SQL
}

# Phases at a frozen time: every attempt of a phase has the same timestamp,
# so what is admitted cannot depend on the racers' order; per key it must
# equal what one session admits making the same number of attempts in turn
# on a twin bucket.  Any difference is over-admission or a spurious
# rejection.  run_phases NAME KEYS CLIENTS TX RATES AT...
run_phases() {
	local name=$1 keys=$2 clients=$3 tx=$4 rates=$5
	shift 5
	local work phase=0 at bad total=0 admitted
	work="$(pyrate_tmp)/$name"
	mkdir -p "$work"
	sql -q -c "SELECT pyrate_define('$name:*', '$rates', 'memory'), pyrate_define('ref$name:*', '$rates', 'memory')" >/dev/null
	printf '%s\n' "\\set k random(1, $keys)" \
		"INSERT INTO stress_res SELECT '$name', :phase, :k, (pyrate_acquire('$name:' || :k, 1, :at)).acquired;" \
		>"$work/phase.sql"
	bad=0
	for at in "$@"; do
		phase=$((phase + 1))
		pgbench -n -c "$clients" -j 2 -t "$tx" -f "$work/phase.sql" -D at="$at" -D phase=$phase "$DSN" \
			>"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log"; bad=$((bad + 1)); }
		local mismatches
		mismatches=$(sql -c "
			SELECT count(*) FROM (
				SELECT k, count(*) FILTER (WHERE acquired) AS got, count(*) AS tries
				FROM stress_res WHERE name = '$name' AND phase = $phase GROUP BY k) r
			WHERE got <> (SELECT count(*) FILTER (WHERE g > 0 AND pyrate_put('ref$name:' || r.k, 1, $at))
			              FROM generate_series(1, r.tries) g)")
		admitted=$(sql -c "SELECT count(*) FILTER (WHERE acquired) || '/' || count(*) FROM stress_res WHERE name = '$name' AND phase = $phase")
		echo "$name phase $phase at=$at: admitted $admitted; keys differing from one session: $mismatches"
		[ "$mismatches" = 0 ] || bad=$((bad + 1))
	done
	return $bad
}

run_stress() {
	local work violations
	work="$(pyrate_tmp)/stress-work"
	mkdir -p "$work"
	sql -q -c "CREATE TABLE stress_res (name text, phase int, k int, acquired boolean)"

	# 1. one hot key, two rates, 16 clients, frozen clock phase by phase
	check "16 clients on one hot key with two rates admit exactly what one session does, phase by phase" \
		run_phases hot 1 16 40 '{20/1000,50/10000}' $(seq 1000 1001 13013)
	check "... 100 in all: 20+20+10 in the first 10 s, the same after" \
		test "$(sql -c "SELECT count(*) FROM stress_res WHERE name = 'hot' AND acquired")" = 100

	# 2. 10,000 keys, two rates, 16 clients, frozen clock: 48,000 attempts a phase
	check "16 clients on 10,000 keys admit exactly what one session does, phase by phase" \
		run_phases keys 10000 16 3000 '{3/50,10/1000}' 1000 1020 1060 1110 2100

	# 3. the server clock: 16 clients for 3 s on a hot key with two rates
	sql -q -c "SELECT pyrate_define('clock', '{10/100,50/1000}', 'memory')" >/dev/null
	echo "SELECT pyrate_put('clock');" >"$work/clock.sql"
	pgbench -n -c 16 -j 2 -T 3 -f "$work/clock.sql" "$DSN" >"$work/pgbench.log" 2>&1
	check "pgbench with 16 clients on the clock-timed hot key ran without errors" \
		pgbench_ok "$work/pgbench.log"
	local admitted
	admitted=$(sql -c "SELECT pyrate_count('clock')")
	echo "clock-timed hot key: $admitted admitted in 3 s ($(grep -o 'number of transactions actually processed: [0-9]*' "$work/pgbench.log"))"
	check "the hot key admitted what 3 s of demand allow (100..200)" test "$admitted" -ge 100 -a "$admitted" -le 200

	# 4. the server clock on 10,000 keys
	sql -q -c "SELECT pyrate_define('ck:*', '{2/100,5/1000}', 'memory')" >/dev/null
	printf '%s\n' '\set k random(1, 10000)' "SELECT pyrate_put('ck:' || :k);" >"$work/ck.sql"
	pgbench -n -c 16 -j 2 -T 3 -f "$work/ck.sql" "$DSN" >"$work/pgbench.log" 2>&1
	check "pgbench with 16 clients on 10,000 clock-timed keys ran without errors" \
		pgbench_ok "$work/pgbench.log"

	violations=$( { memory_window_violations 'clock'; memory_window_violations 'ck:%'; memory_window_violations 'hot:%'; memory_window_violations 'keys:%'; } 2>&1)
	if [ -z "$violations" ]; then
		ok "no window of any rate, on any stressed bucket, holds more than its limit"
	else
		echo "$violations"
		not_ok "no window of any rate, on any stressed bucket, holds more than its limit"
	fi
	echo "memory: $(sql -c "SELECT format('%s buckets, %s items, %s of %s bytes', buckets, items, used_bytes, size_bytes) FROM pyrate_memory_status()")"
	check "memory in use stays within pyrate.memory_size" \
		test "$(sql -c "SELECT used_bytes <= size_bytes AND full_errors = 0 FROM pyrate_memory_status()")" = t
	check "no LWLock wait is left behind" \
		test "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'LWLock' AND wait_event LIKE 'pyrate%'")" = 0
}

want tap && run_tap
if want conformance || want stress; then
	if server; then
		want conformance && run_conformance
		want stress && run_stress
	else
		not_ok "a preloaded server for the conformance traces and the stress starts"
	fi
fi
suite_end
