#!/usr/bin/env bash
# Benchmarks of the memory engine (figures, not pass/fail), side by side in
# one run on one preloaded server:
#   1. pgbench, 2 clients, 1000 keys, all admitted: pyrate_try_acquire on the
#      memory engine against pgbench's SELECT 1, in rounds whose order turns;
#      the figure is the median of the rounds' own ratios.
#   2. one backend: acquires per second on one key
#      (SELECT count(*) FROM generate_series(1, N) WHERE pyrate_put(...)).
#   3. the cost of an acquire with 1,000,000 items in the window against 100.
#   4. memory: bytes per stored item and per idle bucket, as accounted by
#      pyrate_memory_status() and as measured by filling the arena.
#
#   bash test/bench/memory_run.sh            (as root; PYRATE_BENCH_ROUNDS=9,
#                                             PYRATE_BENCH_SECONDS=4 per run)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

SECS=${PYRATE_BENCH_SECONDS:-4}
ROUNDS=${PYRATE_BENCH_ROUNDS:-9}
PORT=57301
bench_start membench $PORT "pyrate.leak_interval = 0" \
	"pyrate.memory_size = '512MB'" "shared_buffers = '128MB'"
sql -q -c "CREATE EXTENSION pyrate" \
	-c "SELECT pyrate_define('b:*', '{2000000000/1w}', 'memory')" >/dev/null
work=$(pyrate_tmp)/bench
mkdir -p "$work"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# ---- 1. pgbench ----------------------------------------------------------
# Three shapes of "all admitted": (a) a 1 s window with the worker leaking
# every second, so each key holds about a second of items, durable buckets
# (each put WAL-logged) and (b) the same volatile (durable => false); (c) a
# one-week window, so every item stays and the rings only grow (the worst
# case for lookups).  Each shape is called two ways: the name as the bind
# parameter, as the client library sends it (SELECT pyrate_try_acquire($1),
# names 1000001.. under '1*', 2000001.. under '2*', 3000001.. under '3*'),
# and the name built in SQL ('s:' || :k), which adds a concatenation and
# its integer-to-text cast to each call.
echo "SELECT 1;" >"$work/select1.pgbench"
tps() { pgbench_tps -n -M prepared -c 2 -j 2 -T "$SECS" -f "$1" "$DSN"; }
sql -q -c "SELECT pyrate_define('s:*', '{1000000000/1s}', 'memory'), pyrate_define('1*', '{1000000000/1s}', 'memory')" \
	-c "SELECT pyrate_define('v:*', '{1000000000/1s}', 'memory', durable => false), pyrate_define('2*', '{1000000000/1s}', 'memory', durable => false)" \
	-c "SELECT pyrate_define('3*', '{2000000000/1w}', 'memory')" \
	-c "ALTER SYSTEM SET pyrate.leak_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
first=1
for shape in s v b; do
	printf '%s\n' "\\set k random(${first}000001, ${first}001000)" "SELECT pyrate_try_acquire(:k);" >"$work/param-$shape.pgbench"
	printf '%s\n' '\set k random(1, 1000)' "SELECT pyrate_try_acquire('$shape:' || :k);" >"$work/sql-$shape.pgbench"
	first=$((first + 1))
	s1=()
	par=()
	acq=()
	rp=()
	rb=()
	for r in $(seq "$ROUNDS"); do
		# each round starts with the next of the three: no one of them
		# always runs first, or always after the same other
		for i in 0 1 2; do
			case $(((r + i) % 3)) in
			0) a=$(tps "$work/select1.pgbench") ;;
			1) p=$(tps "$work/param-$shape.pgbench") ;;
			2) b=$(tps "$work/sql-$shape.pgbench") ;;
			esac
		done
		echo "round $r: SELECT 1 $a tps; memory try_acquire, name the parameter $p tps (ratio $(ratio "$p" "$a")), name built in SQL ($shape:*) $b tps (ratio $(ratio "$b" "$a"))"
		s1+=("$a")
		par+=("$p")
		acq+=("$b")
		rp+=("$(ratio "$p" "$a")")
		rb+=("$(ratio "$b" "$a")")
	done
	m1=$(printf '%s\n' "${s1[@]}" | median)
	mp=$(printf '%s\n' "${par[@]}" | median)
	m2=$(printf '%s\n' "${acq[@]}" | median)
	# the median of each round's own ratio: a round's three runs are
	# seconds apart, so what drifts over minutes (the machine) cancels
	rpm=$(printf '%s\n' "${rp[@]}" | median)
	rbm=$(printf '%s\n' "${rb[@]}" | median)
	what="1 week window, items accumulate, durable"
	[ $shape = s ] && what="1 s window, leaked every second, durable (WAL-logged)"
	[ $shape = v ] && what="1 s window, leaked every second, volatile (durable => false)"
	echo "pgbench 2 clients, 1000 keys, $what ($ROUNDS rounds of ${SECS}s): median of the rounds' ratios to SELECT 1: $rpm with the name the parameter, $rbm with the name built in SQL (target >= 0.8); medians of the tps: SELECT 1 $m1, name the parameter $mp (ratio $(ratio "$mp" "$m1")), built in SQL $m2 (ratio $(ratio "$m2" "$m1"))"
	echo "RESULT|memory try_acquire(\$1) vs SELECT 1, $what (tps, 2 clients, 1000 keys, prepared; median of $ROUNDS rounds' ratios)|${mp%.*}|${m1%.*}|$rpm|>= 0.8"
	echo "RESULT|the same, name built in SQL ('$shape:' concatenated with :k)|${m2%.*}|${m1%.*}|$rbm|reported"
done
sql -q -c "ALTER SYSTEM SET pyrate.leak_interval = 0" -c "SELECT pg_reload_conf()" >/dev/null
echo "  items held by the week-window keys: $(sql -c "SELECT sum(count) FROM pyrate_buckets() WHERE name LIKE 'b:%' OR name LIKE '3%'"), one per call: every call was admitted"

# ---- 2. one backend, one key --------------------------------------------
N=${PYRATE_BENCH_PUTS:-1000000}
sql -q -c "SELECT pyrate_define('one', '{2000000000/1w}', 'memory')" >/dev/null
# time inside the server: the statement's own duration
timed() {
	sql -c "DO \$\$ DECLARE t0 timestamptz; n bigint; BEGIN
		t0 := clock_timestamp();
		$1
		RAISE NOTICE 'elapsed %', extract(epoch FROM clock_timestamp() - t0);
	END \$\$" 2>&1 | sed -n 's/.*elapsed \([0-9.]*\).*/\1/p'
}
base=$(timed "SELECT count(*) INTO n FROM generate_series(1, $N) g WHERE g > 0;")
t=$(timed "SELECT count(*) INTO n FROM generate_series(1, $N) WHERE pyrate_put('one');")
echo "one backend, one key: $N puts in ${t}s = $(awk -v n="$N" -v t="$t" 'BEGIN { printf "%.0f", n / t }') puts/s (target >= 1000000); the bare generate_series/count takes ${base}s"
echo "  items stored: $(sql -c "SELECT pyrate_count('one')")"
echo "RESULT|memory puts per second, one backend, one key|$(awk -v n="$N" -v t="$t" 'BEGIN { printf "%.0f", n / t }')|1000000|$(awk -v n="$N" -v t="$t" 'BEGIN { printf "%.2f", n / t / 1000000 }')|>= 1"

# ---- 3. 1,000,000 items in the window against 100 ---------------------------
K=${PYRATE_BENCH_PROBE:-200000}
sql -q -c "SELECT pyrate_define('w100', '{100/1w}', 'memory'), pyrate_define('w1m', '{1000000/1w}', 'memory')" \
	-c "SELECT pyrate_define('g100', '{2000000000/1w}', 'memory'), pyrate_define('g1m', '{2000000000/1w}', 'memory')" \
	-c "SELECT count(*) FROM generate_series(1, 100) WHERE pyrate_put('w100') AND pyrate_put('g100')" \
	-c "SELECT count(*) FROM generate_series(1, 1000000) WHERE pyrate_put('w1m') AND pyrate_put('g1m')" >/dev/null
for r in 1 2 3; do
	rej100=$(timed "SELECT count(*) INTO n FROM generate_series(1, $K) WHERE pyrate_put('w100');")
	rej1m=$(timed "SELECT count(*) INTO n FROM generate_series(1, $K) WHERE pyrate_put('w1m');")
	echo "rejected acquires on a full window: ${K} take ${rej100}s with 100 items, ${rej1m}s with 1,000,000: ratio $(ratio "$rej1m" "$rej100") (target <= 2)"
done
echo "RESULT|memory rejected put, 10^6 items in the window vs 100 (s for $K; cost ratio, last round)|$rej1m|$rej100|$(ratio "$rej1m" "$rej100")|<= 2"
adm100=$(timed "SELECT count(*) INTO n FROM generate_series(1, $K) WHERE pyrate_put('g100');")
adm1m=$(timed "SELECT count(*) INTO n FROM generate_series(1, $K) WHERE pyrate_put('g1m');")
echo "admitted acquires (items accumulate): ${K} take ${adm100}s from 100 items, ${adm1m}s from 1,000,000: ratio $(ratio "$adm1m" "$adm100") (target <= 2)"
echo "RESULT|memory admitted put, 10^6 items in the window vs 100 (s for $K; cost ratio)|$adm1m|$adm100|$(ratio "$adm1m" "$adm100")|<= 2"

# ---- 4. memory -------------------------------------------------------------
pg_stop membench
dir="$(pyrate_tmp)/membench/data"
echo "pyrate.memory_size = '16MB'" >>"$dir/postgresql.conf"
rm -f "$dir/pyrate_memory.state"
as_postgres "$PG_BINDIR/pg_ctl" -D "$dir" -l "$(pyrate_tmp)/membench/server.log" -w start >/dev/null
sql -q -c "SELECT pyrate_define('idle:*', '{1/1s}', 'memory'), pyrate_define('items', '{2000000000/1w}', 'memory')" >/dev/null
# a ring of exactly 2^18 items: 16 B an item plus one header
sql -q -c "SELECT count(*) FROM generate_series(1, 262144) WHERE pyrate_put('items')" >/dev/null
echo "bytes per stored item (accounted): $(sql -c "SELECT round(used_bytes::numeric / items, 2) FROM pyrate_memory_status()") (one bucket, 262144 items; a ring is a power of two, so a half-full ring costs up to 32 B an item)"
sql -q -c "SELECT pyrate_dispose('items')" >/dev/null
# idle buckets with 10-byte names: fill the arena with one-item buckets, leak them empty
sql -q -c "SELECT count(*) FROM generate_series(1, 100000) i WHERE pyrate_put('idle:' || lpad(i::text, 5, '0'), 1, 1000)" \
	-c "SELECT sum(pyrate_leak('idle:' || lpad(i::text, 5, '0'), 1000000)) FROM generate_series(1, 100000) i" >/dev/null
echo "bytes per idle bucket, 10-byte name (accounted): $(sql -c "SELECT round(used_bytes::numeric / buckets, 2) FROM pyrate_memory_status()")"
# start empty again (disposing 100,000 buckets in one statement would take
# a table-engine lock for each)
pg_stop membench
rm -f "$dir/pyrate_memory.state"
as_postgres "$PG_BINDIR/pg_ctl" -D "$dir" -l "$(pyrate_tmp)/membench/server.log" -w start >/dev/null
# measured: how many one-item buckets fit in 16 MB (errors when full)
sql -q -c "SELECT count(*) FROM generate_series(1, 2000000) i WHERE pyrate_put('idle:' || lpad(i::text, 7, '0'), 1, 1000)" >/dev/null 2>&1
nb=$(sql -c "SELECT buckets FROM pyrate_memory_status()")
echo "measured: $nb buckets of one item (12-byte names) fill 16 MB = $(awk -v n="$nb" 'BEGIN { printf "%.1f", 16 * 1048576 / n }') B each, all overheads included"
echo "RESULT|memory bytes per one-item bucket, all overheads (16 MB filled)|$(awk -v n="$nb" 'BEGIN { printf "%.1f", 16 * 1048576 / n }')|-|-|reported"
