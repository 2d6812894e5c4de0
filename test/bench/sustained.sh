#!/usr/bin/env bash
# A sustained run (figures, not pass/fail): table-engine acquires on
# PYRATE_SUSTAINED_KEYS keys (1000) for PYRATE_SUSTAINED_SECONDS (200) with
# the worker leaking every PYRATE_SUSTAINED_INTERVAL ms (1000) and
# autovacuum at its defaults.
# Every 10 s it records the acquires' throughput and p99 latency, the size
# of pyrate's tables and indexes, the items stored, and the worker's last
# pass.  Goals: the size levels off once the largest window is full (the
# leaks keep pace and autovacuum sees their deletes), every leak pass takes
# less than its interval, and no 10 s interval's p99 is more than twice the
# run's median p99.
#
#   bash test/bench/sustained.sh     (as root)
#   PYRATE_SUSTAINED_KEYS=100000 PYRATE_SUSTAINED_INTERVAL=10000 bash test/bench/sustained.sh
#                                    (many keys, the worker's default interval)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

SECS=${PYRATE_SUSTAINED_SECONDS:-200}
KEYS=${PYRATE_SUSTAINED_KEYS:-1000}
INTERVAL=${PYRATE_SUSTAINED_INTERVAL:-1000}
CLIENTS=${PYRATE_SUSTAINED_CLIENTS:-4}
PORT=57331
bench_start sustained $PORT "shared_buffers = '256MB'" \
	"max_wal_size = '4GB'" "synchronous_commit = off" "pyrate.leak_interval = $INTERVAL"
# 5 per second and 20 per 30 s per key: the largest window is 30 s, so the
# stored items level off after about 30 s and the worker's passes leak what
# left it
sql -q -c "CREATE EXTENSION pyrate" -c "SELECT FROM pyrate_define('s:*', '5/1s, 20/30s', 'table')" >/dev/null
work=$(pyrate_tmp)/sustained
mkdir -p "$work"
echo "\\set k random(1, $KEYS)
SELECT pyrate_try_acquire('s:' || :k, 1, false);" >"$work/acquire.pgbench"
echo "== load: $(uptime)"
echo "== $CLIENTS clients, $KEYS keys, {5/1s, 20/30s}, table engine, synchronous_commit = off, the worker every $INTERVAL ms, $SECS s"
(cd "$work" && pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -l --log-prefix=tx \
	-f acquire.pgbench "$DSN" >"$work/pgbench.out" 2>&1) &
bench=$!
: >"$work/samples"
t=0
while kill -0 "$bench" 2>/dev/null && [ "$t" -lt "$SECS" ]; do
	sleep 10
	t=$((t + 10))
	sql -F ' ' -c "SELECT $t, pg_total_relation_size('pyrate_item_data') + pg_total_relation_size('pyrate_bucket_data'),
		(SELECT count(*) FROM pyrate_item_data), coalesce(last_leak_ms, 0), leak_runs,
		pg_relation_size('pyrate_item_data'), pg_indexes_size('pyrate_item_data'),
		(SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'pyrate_item_data')
		FROM pyrate_worker_status() LIMIT 1" >>"$work/samples"
done
wait "$bench"
brc=$?
tail -4 "$work/pgbench.out"
if [ $brc -ne 0 ] || ! pgbench_ok "$work/pgbench.out"; then
	echo "pgbench failed (exit $brc): $(grep -m1 -i error "$work/pgbench.out"); no figures from this run" >&2
	exit 1
fi
# per 10 s of the transaction log: acquires and p99 latency (ms)
cat "$work"/tx.* | awk '{ print int($5 / 10), $3 / 1000 }' | sort -n -k1,1 -k2,2n |
	awk '{ n[$1]++; lat[$1, n[$1]] = $2 }
		END { for (w in n) { i = int(n[w] * 0.99); if (i < 1) i = 1; printf "%d %d %.3f\n", w, n[w], lat[w, i] } }' |
	sort -n >"$work/windows"
first=$(head -1 "$work/windows" | cut -d' ' -f1)
echo
echo "  t (s) | acquires/s | p99 (ms) | tables + indexes | items: heap, index | items stored | worker's last pass (ms) | passes | autovacuums of items"
join <(awk -v f="$first" '{ printf "%d %d %s\n", ($1 - f + 1) * 10, $2 / 10, $3 }' "$work/windows") \
	<(sort -n "$work/samples") |
	awk '{ printf "  %5d | %10d | %8s | %13.1f MB | %6.1f, %6.1f MB | %12d | %23.0f | %6d | %d\n", $1, $2, $3, $4 / 1048576, $8 / 1048576, $9 / 1048576, $5, $6, $7, $10 }' | tee "$work/table"
# p99 over the whole 10 s windows sampled, the first (warming up) left out
awk -F'|' 'NR > 1 { gsub(/ /, "", $3); print $3 }' "$work/table" | sort -n >"$work/p99s"
median_p99=$(awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }' "$work/p99s")
max_p99=$(tail -1 "$work/p99s")
# the size from 60 s on (two largest windows), first and last sample
# flat: the largest size sampled in the run's second half against the
# largest from 60 s (two largest windows in) to half-way
half=$((SECS / 2))
size60=$(awk -v h="$half" '$1 >= 60 && $1 <= h && $2 > m { m = $2 } END { print m + 0 }' "$work/samples")
size_end=$(awk -v h="$half" '$1 > h && $2 > m { m = $2 } END { print m + 0 }' "$work/samples")
max_pass=$(awk '{ print $4 }' "$work/samples" | sort -n | tail -1)
echo
echo "p99 per 10 s (from the second window on): median $median_p99 ms, worst $max_p99 ms; largest size from 60 s to half-way $((size60 / 1024)) kB, in the second half $((size_end / 1024)) kB; longest leak pass ${max_pass} ms"
echo "RESULT|sustained ${SECS} s, ${KEYS} keys: worst 10 s p99 vs the median 10 s p99 (ms)|$max_p99|$median_p99|$(awk -v a="$max_p99" -v b="$median_p99" 'BEGIN { printf "%.2f", a / b }')|<= 2"
echo "RESULT|sustained ${SECS} s, ${KEYS} keys: largest tables + indexes in the second half vs from 60 s to half-way (kB)|$((size_end / 1024))|$((size60 / 1024))|$(awk -v a="$size_end" -v b="$size60" 'BEGIN { printf "%.2f", a / b }')|flat"
echo "RESULT|sustained ${SECS} s, ${KEYS} keys: longest leak pass vs the interval (ms)|$max_pass|$INTERVAL|$(awk -v a="$max_pass" -v b="$INTERVAL" 'BEGIN { printf "%.3f", a / b }')|< 1"
pg_stop sustained
