#!/usr/bin/env bash
# A million keys (figures, not pass/fail), on one preloaded server:
#   1. memory engine: 1,000,000 one-item buckets in pyrate.memory_size = 64MB
#      (how many fit, bytes per bucket, time to fill), a full leak with
#      nothing expired and with everything expired, the reclaim of the
#      emptied buckets, and a refill with new names after that churn;
#      acquire latency (p99) on another key, idle and during a full leak.
#   2. table engine: the same keys in transactions of 100,000 with the
#      default max_locks_per_transaction (a transaction keeps a lock for its
#      first 64 keys; its uncommitted items hold the rest), a full leak with
#      nothing expired.
#
#   bash test/bench/million_keys.sh         (as root; PYRATE_BENCH_KEYS=1000000)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

N=${PYRATE_BENCH_KEYS:-1000000}
PER_TX=${PYRATE_BENCH_KEYS_PER_TX:-100000}
PORT=57311
bench_start million $PORT "pyrate.leak_interval = 0" \
	"pyrate.memory_size = '64MB'" "shared_buffers = '256MB'" "max_wal_size = '4GB'"
sql -q -c "CREATE EXTENSION pyrate" \
	-c "SELECT FROM pyrate_define('k:*', '1/1h', 'memory')" \
	-c "SELECT FROM pyrate_define('j:*', '1/1h', 'memory')" \
	-c "SELECT FROM pyrate_define('t:*', '1/1h', 'table')" \
	-c "SELECT FROM pyrate_define('probe', '1000000000/1s', 'memory')" >/dev/null
work=$(pyrate_tmp)/million
mkdir -p "$work"
# the statement's own duration, measured in the server
timed() {
	sql -c "DO \$\$ DECLARE t0 timestamptz; n bigint; BEGIN
		t0 := clock_timestamp();
		$1
		RAISE NOTICE 'elapsed % n %', extract(epoch FROM clock_timestamp() - t0), n;
	END \$\$" 2>&1 | sed -n 's/.*elapsed \([0-9.]*\) n \([0-9]*\).*/\1 \2/p'
}
# p99 latency (ms) of an acquire on one key (probe) over SECS seconds, one client
p99() {
	local secs=$1 key=${2:-probe} dir
	dir=$(mktemp -d "$work/lat.XXXXXX")
	echo "SELECT pyrate_try_acquire('$key', 1, false);" >"$dir/probe.pgbench"
	if ! (cd "$dir" && pgbench_tps -n -M prepared -c 1 -T "$secs" -l -f probe.pgbench "$DSN" >/dev/null); then
		printf "n/a"
		return 1
	fi
	cat "$dir"/pgbench_log.* | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) printf "%.3f", v[int(NR * 0.99)] / 1000; else printf "n/a" }'
}

# leak_beside KEY: one pyrate_leak() (its time in t, its units in n) while
# acquires on KEY run beside it (their p99 in during)
leak_beside() {
	local probe
	p99 4 "$1" >"$work/p99-during" &
	probe=$!
	sleep 1
	read -r t n < <(timed "SELECT pyrate_leak() INTO n;")
	wait $probe
	during=$(cat "$work/p99-during")
}

echo "== load: $(uptime)"
echo "== memory engine, $N keys, pyrate.memory_size = 64MB"
read -r t n < <(timed "SELECT count(*) INTO n FROM generate_series(1, $N) g WHERE pyrate_put('k:' || g);")
st=$(sql -c "SELECT buckets || ' ' || used_bytes || ' ' || full_errors FROM pyrate_memory_status()")
read -r nb used full <<<"$st"
echo "filled: $n of $N one-item buckets admitted in ${t}s ($(awk -v n="$n" -v t="$t" 'BEGIN { printf "%.0f", n / t }')/s); $nb buckets use $used bytes = $(awk -v u="$used" -v b="$nb" 'BEGIN { printf "%.1f", u / b }') B each as accounted; $full refused for memory"
echo "RESULT|memory engine: one-item buckets in 64 MB (of $N)|$nb|$N|$(awk -v a="$nb" -v b="$N" 'BEGIN { printf "%.3f", a / b }')|1.0"
echo "RESULT|memory engine: bytes per one-item bucket (accounted)|$(awk -v u="$used" -v b="$nb" 'BEGIN { printf "%.1f", u / b }')|64|-|<= 64"
idle=$(p99 5)
read -r t n < <(timed "SELECT pyrate_leak() INTO n;")
echo "full leak, nothing expired: ${t}s"
echo "RESULT|memory engine: pyrate_leak() over $nb buckets, nothing expired (s)|$t|1|-|<= 1"
# a one-millisecond window: now every item has expired
sql -q -c "SELECT FROM pyrate_define('k:*', '1/1ms', 'memory')" >/dev/null
leak_beside probe
echo "full leak, everything expired: $n units (the probe key's among them) in ${t}s; acquire p99 on another key: idle ${idle} ms, during the leak ${during} ms"
echo "RESULT|memory engine: acquire p99 during a full leak vs idle (ms)|$during|$idle|$(awk -v a="$during" -v b="$idle" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')|<= 2"
read -r t n < <(timed "SELECT pyrate_leak() INTO n;")
echo "the next leak reclaims the emptied buckets: ${t}s, $(sql -c "SELECT buckets FROM pyrate_memory_status()") buckets left"
read -r t n < <(timed "SELECT count(*) INTO n FROM generate_series(1, $N) g WHERE pyrate_put('j:' || g);")
echo "refill with $N new names after the churn: $n admitted in ${t}s, $(sql -c "SELECT buckets FROM pyrate_memory_status()") buckets"
echo "RESULT|memory engine: refill after churn (buckets admitted of $N)|$n|$N|$(awk -v a="$n" -v b="$N" 'BEGIN { printf "%.3f", a / b }')|1.0"

echo "== table engine, $N keys in transactions of $PER_TX"
fill_table() {
	local per=$1 start end out t n
	TABLE_KEYS=0
	for start in $(seq 1 "$per" "$N"); do
		end=$((start + per - 1))
		out=$(timed "SELECT count(*) INTO n FROM generate_series($start, $end) g WHERE pyrate_put('t:' || g);" 2>&1)
		if [ -z "$out" ]; then
			FILL_ERROR=$(sql -c "SELECT count(*) FROM generate_series($start, $end) g WHERE pyrate_put('t:' || g)" 2>&1 | head -2 | tr '\n' ' ')
			return 1
		fi
		read -r t n <<<"$out"
		TABLE_KEYS=$((TABLE_KEYS + n))
	done
}
FILL_ERROR=
start=$(date +%s.%N)
if fill_table "$PER_TX"; then
	echo "table keys admitted in transactions of $PER_TX: $TABLE_KEYS of $N in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
else
	echo "a transaction of $PER_TX keys fails: $FILL_ERROR"
fi
echo "RESULT|table engine: keys admitted in transactions of $PER_TX (of $N)|$TABLE_KEYS|$N|$(awk -v a="$TABLE_KEYS" -v b="$N" 'BEGIN { printf "%.3f", a / b }')|1.0"
if [ "$TABLE_KEYS" -lt "$N" ]; then
	sql -q -c "SELECT count(*) FROM pyrate_buckets() WHERE name LIKE 't:%'" >/dev/null
	start=$(date +%s.%N)
	fill_table 10000 || echo "a transaction of 10000 keys fails too: $FILL_ERROR"
	echo "filled instead in transactions of 10000: $TABLE_KEYS keys in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
fi
if [ "$TABLE_KEYS" -gt 0 ]; then
	echo "table: $(sql -c "SELECT pg_size_pretty(pg_total_relation_size('pyrate_item_data') + pg_total_relation_size('pyrate_bucket_data'))") for $TABLE_KEYS one-item buckets"
	read -r t n < <(timed "SELECT pyrate_leak() INTO n;")
	echo "full leak over both engines ($(sql -c "SELECT count(*) FROM pyrate_buckets()") buckets), nothing expired: ${t}s"
	echo "RESULT|pyrate_leak() over both engines' buckets, nothing expired (s)|$t|1|-|<= 1"

	# a one-millisecond window: every table item has expired; a full leak,
	# with acquires on another table key measured beside it
	sql -q -c "SELECT FROM pyrate_define('t:*', '1/1ms', 'table')" \
		-c "SELECT FROM pyrate_define('tprobe', '1000000/1h', 'table')" >/dev/null
	idle=$(p99 5 tprobe)
	leak_beside tprobe
	echo "table engine, full leak: $n units in ${t}s; acquire p99 on another table key: idle ${idle} ms, during the leak ${during} ms"
	echo "RESULT|table engine: a full leak of $TABLE_KEYS one-item buckets, one pyrate_leak() (s)|$t|-|-|reported"
	echo "RESULT|table engine: acquire p99 during a full leak vs idle (ms)|$during|$idle|$(awk -v a="$during" -v b="$idle" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')|<= 2"

	# the worker reclaims the emptied buckets (pyrate_leak() reclaims 1000
	# table buckets a call; the worker all of them, 100 to a transaction)
	sql -q -c "ALTER SYSTEM SET pyrate.leak_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
	start=$(date +%s.%N)
	for _ in $(seq 600); do
		[ "$(sql -c "SELECT count(*) FROM pyrate_bucket_data WHERE name LIKE 't:%'")" = 0 ] && break
		sleep 1
	done
	left=$(sql -c "SELECT count(*) FROM pyrate_bucket_data WHERE name LIKE 't:%'")
	t=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	echo "the worker reclaims the emptied table buckets: $left of $TABLE_KEYS left after ${t}s; $(sql -c "SELECT pg_size_pretty(pg_total_relation_size('pyrate_item_data') + pg_total_relation_size('pyrate_bucket_data'))") of tables and indexes"
	echo "RESULT|table engine: emptied one-use buckets left after the worker's passes (of $TABLE_KEYS), in ${t} s|$left|0|-|0"
fi
