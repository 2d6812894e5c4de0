#!/usr/bin/env bash
# Table-engine benchmarks, side by side in one run (ratios, not absolutes):
#  1. pgbench, 2 clients, 1000 keys, synchronous_commit = off:
#     pyrate_try_acquire (table and memory engines) vs a bare single-row
#     INSERT vs a PL/pgSQL limiter.
#  2. one backend: acquire cost with 100,000 items in the window vs 100.
# "steady" runs again after giving every key 1000 items in its hour window.
# Usage: test/bench/run-table.sh [seconds per run, default 10]
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

SECS=${1:-10}
PORT=55451
# the memory engine's windows keep every item of the run (about 60,000 puts
# a second for an hour window, 16 B each in rings up to twice their fill):
# the default 32 MB fills and its acquires fail before the steady rounds end
bench_start bench $PORT "pyrate.leak_interval = 0" "pyrate.memory_size = '512MB'" \
	"fsync = on" "synchronous_commit = ${PYRATE_BENCH_SYNC:-off}" "shared_buffers = '512MB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" "autovacuum = off"
sql -c "CREATE EXTENSION pyrate" -f test/bench/plpgsql_limiter.sql \
	-c "SELECT pyrate_define('bench:*', '{100/s,100000/h}')" \
	-c "SELECT pyrate_define('mbench:*', '{100/s,100000/h}', 'memory')" \
	-c "SELECT pyrate_define('window:*', '{10000000/h}')" >/dev/null

tps() { # script [extra pgbench args]
	local f=$1
	shift
	local t
	t=$(pgbench_tps -n -M "${PYRATE_BENCH_MODE:-simple}" -c 2 -j 2 -T "$SECS" -f "$f" "$@" "$DSN")
	echo "${t%.*}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# best of two rounds of each script, interleaved
declare -A best
run_round() { # label
	local round s t
	for round in 1 2; do
		for s in bare_insert table_acquire memory_acquire plpgsql_acquire; do
			t=$(tps test/bench/$s.pgbench)
			echo "$1 round $round  $s: $t tps"
			[ "${best[$1:$s]:-0}" -lt "${t:-0}" ] && best[$1:$s]=${t:-0}
		done
	done
}
echo "== 1. pgbench -c 2 -M ${PYRATE_BENCH_MODE:-simple}, 1000 keys, synchronous_commit = ${PYRATE_BENCH_SYNC:-off}, ${SECS}s per run"
run_round fresh
# A steady state: 1000 items per key in the hour window (one request per
# 3.6 s per key), the same for both limiters, none in the 1 s window.  The
# fresh rounds' items go first: an item older than a bucket's newest is
# stored as the newest, so the fill would all fall into that one second,
# which 100/s refuses; and each limiter then starts from the same.
sql -c "SELECT count(pyrate_flush(p || k)) FROM generate_series(1, 1000) k, unnest(ARRAY['bench:', 'mbench:']) p" \
	-c "TRUNCATE plpgsql_items" >/dev/null
sql -c "SELECT 'steady: table items put ' || count(*) FROM generate_series(1, 1000) k, generate_series(1, 1000) i
        WHERE pyrate_put('bench:' || k, 1, pyrate_now() - 3000000 + i * 2000)" \
	-c "SELECT 'steady: memory items put ' || count(*) FROM generate_series(1, 1000) k, generate_series(1, 1000) i
        WHERE pyrate_put('mbench:' || k, 1, pyrate_now() - 3000000 + i * 2000)"
sql -c "INSERT INTO plpgsql_items SELECT 'bench:' || k, clock_timestamp() - interval '3000 s' + i * interval '2 s', 1
        FROM generate_series(1, 1000) k, generate_series(1, 1000) i" \
	-c "VACUUM ANALYZE" >/dev/null
run_round steady

echo "== 2. one backend, one key: 100 vs 100,000 items in the window"
# Admitted puts: each round starts from exactly 100 or 100,000 items and adds
# 5,000.  Rejected puts: windows held full at 100 and 100,000 items.
sql -c "SELECT pyrate_define('full:small', '{100/h}'), pyrate_define('full:big', '{100000/h}')" >/dev/null
declare -A win
for b in small big; do
	echo "SELECT pyrate_put('window:$b');" >"$(pyrate_tmp)/put_$b.pgbench"
	echo "SELECT pyrate_put('full:$b');" >"$(pyrate_tmp)/full_$b.pgbench"
done
sql -c "SELECT count(*) FROM generate_series(1, 100) WHERE pyrate_put('full:small')" \
	-c "SELECT count(*) FROM generate_series(1, 100000) WHERE pyrate_put('full:big')" >/dev/null
for round in 1 2; do
	for b in small big; do
		n=100
		[ $b = big ] && n=100000
		sql -c "SELECT pyrate_flush('window:$b')" \
			-c "SELECT count(*) FROM generate_series(1, $n) WHERE pyrate_put('window:$b')" >/dev/null
		t=$(pgbench_tps -n -c 1 -t 5000 -f "$(pyrate_tmp)/put_$b.pgbench" "$DSN")
		t=${t%.*}
		echo "round $round  admitted, $n items: $t tps"
		[ "${win[put:$b]:-0}" -lt "${t:-0}" ] && win[put:$b]=${t:-0}
		t=$(pgbench_tps -n -c 1 -T "$SECS" -f "$(pyrate_tmp)/full_$b.pgbench" "$DSN")
		t=${t%.*}
		echo "round $round  rejected, $n items: $t tps"
		[ "${win[full:$b]:-0}" -lt "${t:-0}" ] && win[full:$b]=${t:-0}
	done
done
echo
for state in fresh steady; do
	a=${best[$state:table_acquire]:-0}
	echo "RESULT|table acquire vs bare INSERT, $state, synchronous_commit ${PYRATE_BENCH_SYNC:-off} (tps, 2 clients, 1000 keys, ${PYRATE_BENCH_MODE:-simple} protocol)|$a|${best[$state:bare_insert]:-0}|$(ratio "$a" "${best[$state:bare_insert]:-0}")|>= 0.6"
	echo "RESULT|table acquire vs PL/pgSQL limiter, $state, synchronous_commit ${PYRATE_BENCH_SYNC:-off}, ${PYRATE_BENCH_MODE:-simple} protocol (tps)|$a|${best[$state:plpgsql_acquire]:-0}|$(ratio "$a" "${best[$state:plpgsql_acquire]:-0}")|>= 3"
	m=${best[$state:memory_acquire]:-0}
	echo "RESULT|memory acquire vs PL/pgSQL limiter, $state, synchronous_commit ${PYRATE_BENCH_SYNC:-off}, ${PYRATE_BENCH_MODE:-simple} protocol (tps)|$m|${best[$state:plpgsql_acquire]:-0}|$(ratio "$m" "${best[$state:plpgsql_acquire]:-0}")|reported"
done
echo "RESULT|table admitted put, 100k items in the window vs 100 (tps; cost ratio)|${win[put:big]}|${win[put:small]}|$(ratio "${win[put:small]}" "${win[put:big]}")|<= 2"
echo "RESULT|table rejected put, 100k items in the window vs 100 (tps; cost ratio)|${win[full:big]}|${win[full:small]}|$(ratio "${win[full:small]}" "${win[full:big]}")|<= 2"
