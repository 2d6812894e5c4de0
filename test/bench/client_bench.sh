#!/usr/bin/env bash
# client_bench.sh — libpyrate's speed beside baselines measured in the same
# run, one client thread each (issue 5's "Speed" list):
#   in-memory bucket vs 10,000,000 acquires/s (and a clock read + mutex loop);
#                    the operations measured are described in client_bench.c
#   Redis bucket     vs redis-benchmark -c 1 -t set
#   Postgres bucket  vs pgbench -c 1 -M prepared running SELECT 1,
#                    on the memory engine, unnamed and prepared statements
# Not a test: prints figures.  SECONDS (default 5) per measurement.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap
SECS=${1:-5}
TMP=$(pyrate_tmp)

make -s -C src/client >/dev/null || exit 1
gcc -O2 -g -Wall -Wextra -std=gnu99 -Isrc/client -o "$TMP/client_bench" test/bench/client_bench.c \
	src/client/libpyrate.a -L"$(pg_config --libdir)" -lpq -lhiredis -lsqlite3 -lpthread -lm || exit 1
pg_start bench 56411 "shared_preload_libraries = 'pyrate'" >/dev/null || exit 1
DSN=$(pg_conninfo bench 56411)
psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" || exit 1
redis_start bench-redis 56462

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== in-memory bucket, one thread (5 interleaved rounds of $SECS/5 s per case; median [min..max] ops/s)"
echo "   *_now: pyrate_put() with PYRATE_NOW, the bucket reads CLOCK_MONOTONIC per put"
echo "   *_stamped: pyrate_put() of caller-stamped items (the caller reads the clock once per 1000 puts)"
echo "   limiter_try_acquire_now: pyrate_try_acquire() on Limiter(in-memory bucket), a clock read per call"
"$TMP/client_bench" memory "$SECS" >"$TMP/mem.out" || exit 1
base=$(awk '/^baseline_clock_mutex/ {print $2}' "$TMP/mem.out")
while read -r what ops lo hi; do
	if [ "$what" = baseline_clock_mutex ]; then
		echo "  $what: $ops/s [$lo..$hi] (a clock read + an uncontended mutex, nothing else)"
		continue
	fi
	echo "  $what: $ops/s [$lo..$hi] = $(ratio "$ops" 10000000) x the 10M/s target, $(ratio "$ops" "$base") x clock+mutex"
done <"$TMP/mem.out"

echo "== Redis bucket"
set_rps=$(redis-benchmark -p 56462 -c 1 -t set -n $((SECS * 30000)) -q 2>/dev/null | tr '\r' '\n' |
	awk '/requests per second/ {v=$2} END {print v}')
echo "  redis-benchmark -c 1 -t set: $set_rps/s"
put=$("$TMP/client_bench" redis 127.0.0.1 56462 "$SECS" | awk '{print $2}')
echo "  redis bucket put: $put/s = $(ratio "$put" "$set_rps") x SET (target >= 0.70)"

echo "== Postgres bucket, memory engine"
echo 'SELECT 1;' >"$TMP/select1.sql"
chmod 644 "$TMP/select1.sql"
tps=$(as_postgres "$PG_BINDIR/pgbench" -h "$TMP/bench/sock" -p 56411 -U postgres -n -c 1 -M prepared \
	-f "$TMP/select1.sql" -T "$SECS" postgres 2>/dev/null | awk '/^tps/ {print $3}')
echo "  pgbench -c 1 -M prepared SELECT 1: $tps/s"
for mode in unnamed prepared; do
	put=$("$TMP/client_bench" postgres "$DSN" "$SECS" "$mode" | awk '{print $2}')
	echo "  postgres bucket put ($mode statements): $put/s = $(ratio "$put" "$tps") x pgbench (target >= 0.80)"
done
