#!/usr/bin/env bash
# Hot keys at full durability, and what an acquire writes (figures, not
# pass/fail), side by side in one run on one server with fsync on and
# synchronous_commit = on:
#   1. 8 clients on ONE table-engine key against 8 clients doing a bare
#      single-row INSERT into (k text, ts bigint) with one index on (k, ts);
#      the same with 1 client; the same with 8 clients on distinct keys.
#   2. WAL bytes per admitted acquire against the bare INSERT, one backend.
#   3. bytes of tables and indexes per stored unit, fresh and after churn
#      (items leaked and put again), against the bare INSERT's table.
#
#   bash test/bench/hot_key.sh              (as root; PYRATE_BENCH_SECONDS=10)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

SECS=${PYRATE_BENCH_SECONDS:-10}
N=${PYRATE_BENCH_ROWS:-20000}
PORT=57321
bench_start hotkey $PORT "pyrate.leak_interval = 0" \
	"fsync = on" "synchronous_commit = on" "shared_buffers = '256MB'" "max_wal_size = '4GB'" \
	"checkpoint_timeout = '30min'" "autovacuum = off"
sql -c "CREATE EXTENSION pyrate" \
	-c "CREATE TABLE bare (k text NOT NULL, ts bigint NOT NULL)" \
	-c "CREATE INDEX ON bare (k, ts)" \
	-c "SELECT FROM pyrate_define('hot', '2000000000/1w', 'table')" \
	-c "SELECT FROM pyrate_define('key:*', '2000000000/1w', 'table')" >/dev/null
work=$(pyrate_tmp)/hotkey
mkdir -p "$work"
echo "INSERT INTO bare VALUES ('hot', (extract(epoch FROM clock_timestamp()) * 1000)::bigint);" >"$work/bare.pgbench"
echo "SELECT pyrate_try_acquire('hot', 1, false);" >"$work/hot.pgbench"
printf '%s\n' '\set k random(1, 1000)' "SELECT pyrate_try_acquire('key:' || :k, 1, false);" >"$work/keys.pgbench"
tps() { # clients script
	local t
	t=$(pgbench_tps -n -M prepared -c "$1" -j "$1" -T "$SECS" -f "$2" "$DSN")
	echo "${t%.*}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo "== load: $(uptime)"
for c in 8 1; do
	b=$(tps "$c" "$work/bare.pgbench")
	h=$(tps "$c" "$work/hot.pgbench")
	echo "$c client(s), synchronous_commit = on: one hot key $h tps, bare INSERT $b tps: $(ratio "$h" "$b")"
	echo "RESULT|table engine, one hot key, $c client(s), synchronous_commit = on, vs a bare INSERT (tps)|$h|$b|$(ratio "$h" "$b")|$([ "$c" = 8 ] && echo '>= 0.8' || echo reported)"
done
b=$(tps 8 "$work/bare.pgbench")
k=$(tps 8 "$work/keys.pgbench")
echo "8 clients, 1000 distinct keys: $k tps, bare INSERT $b tps: $(ratio "$k" "$b")"
echo "RESULT|table engine, 1000 keys, 8 clients, synchronous_commit = on, vs a bare INSERT (tps)|$k|$b|$(ratio "$k" "$b")|reported"

# ---- 2. WAL per admitted acquire -------------------------------------------
sql -c "TRUNCATE bare" -c "SELECT count(pyrate_dispose(name)) FROM pyrate_buckets()" \
	-c "VACUUM FULL pyrate_item_data" -c "VACUUM FULL pyrate_bucket_data" -c "CHECKPOINT" >/dev/null
wal() { # statement run N times, one transaction each
	local before after
	before=$(sql -c "SELECT pg_current_wal_insert_lsn()")
	printf '%s\n' "$1" >"$work/wal.pgbench"
	pgbench_tps -n -M prepared -c 1 -t "$N" -f "$work/wal.pgbench" "$DSN" >/dev/null || exit 1
	after=$(sql -c "SELECT pg_current_wal_insert_lsn()")
	sql -c "SELECT round(pg_wal_lsn_diff('$after', '$before') / $N)"
}
wb=$(wal "INSERT INTO bare VALUES ('hot', (extract(epoch FROM clock_timestamp()) * 1000)::bigint);")
wp=$(wal "SELECT pyrate_try_acquire('hot', 1, false);")
echo "WAL per row: admitted acquire $wp B, bare INSERT $wb B: $(ratio "$wp" "$wb") (each its own transaction; checkpoints' full-page images included)"
echo "RESULT|WAL bytes per admitted acquire vs a bare INSERT|$wp|$wb|$(ratio "$wp" "$wb")|<= 1.0"

# ---- 3. bytes per stored unit ----------------------------------------------
size() { sql -c "SELECT $1"; }
pb=$(size "pg_total_relation_size('pyrate_item_data')")
bb=$(size "pg_total_relation_size('bare')")
units=$(sql -c "SELECT pyrate_count('hot')")
rows=$(sql -c "SELECT count(*) FROM bare")
echo "at rest: pyrate $(ratio "$pb" "$units") B per unit ($units units), bare INSERT $(ratio "$bb" "$rows") B per row"
echo "RESULT|table + indexes per stored unit, at rest, vs a bare INSERT's row (B)|$(ratio "$pb" "$units")|$(ratio "$bb" "$rows")|$(ratio "$(ratio "$pb" "$units")" "$(ratio "$bb" "$rows")")|<= 100 B"
# churn_rounds [SQL...]: five times, leak everything but the newest,
# VACUUM (as autovacuum does after a leak's deletes), run the SQL given,
# put as many again; sets per_round (B per unit after each round), pc and
# units.  Flat means the space of leaked items is used again, round after
# round.
churn_rounds() {
	local r q
	per_round=""
	for r in 1 2 3 4 5; do
		sql -c "SELECT pyrate_leak('hot', pyrate_now() + 604800001)" >/dev/null
		sql -c "VACUUM pyrate_item_data" >/dev/null
		for q in "$@"; do sql -c "$q" >/dev/null; done
		pgbench_tps -n -M prepared -c 1 -t "$N" -f "$work/hot.pgbench" "$DSN" >/dev/null || exit 1
		pc=$(size "pg_total_relation_size('pyrate_item_data')")
		units=$(sql -c "SELECT pyrate_count('hot')")
		per_round="$per_round $(ratio "$pc" "$units")"
	done
}
churn_rounds
echo "after each of five leaks, VACUUMs and refills: B per unit:$per_round ($units units)"
echo "RESULT|table + indexes per stored unit, after five leak/VACUUM/refill rounds (B)|$(ratio "$pc" "$units")|-|-|<= 100 B, flat"
# The same churn where the space a VACUUM frees can be used again before
# the refill, as on a server where anything else writes.  A btree page that
# VACUUM empties and deletes goes to the free space map only once no
# snapshot can need it, judged at the end of that VACUUM (PostgreSQL 14 and
# later) or by the next one; with nothing running between them, as above,
# no transaction id has gone by, so the refill cannot have those pages and
# the index file ends up twice the size it needs.  Here one transaction id
# goes by and a second VACUUM records the pages, on a fresh extension
# (files never shrink).
sql -q -c "DROP EXTENSION pyrate" -c "CREATE EXTENSION pyrate" \
	-c "SELECT FROM pyrate_define('hot', '2000000000/1w', 'table')" >/dev/null
pgbench_tps -n -M prepared -c 1 -t "$N" -f "$work/hot.pgbench" "$DSN" >/dev/null || exit 1
at_rest=$(ratio "$(size "pg_total_relation_size('pyrate_item_data')")" "$(sql -c "SELECT pyrate_count('hot')")")
churn_rounds "SELECT pg_current_xact_id()" "VACUUM pyrate_item_data"
echo "the same, one transaction id and a second VACUUM before each refill: B per unit: $at_rest at rest;$per_round ($units units)"
echo "RESULT|table + indexes per stored unit, five rounds as above with the freed index pages recorded before each refill (B)|$(ratio "$pc" "$units")|-|-|<= 100 B, flat"
