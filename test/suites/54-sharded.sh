#!/usr/bin/env bash
# 54-sharded — bucket names partitioned across several PostgreSQL primaries
# by libpyrate (pyrate_pg_sharded_factory_new): three servers with pyrate
# preloaded and the same definitions.  test/client/test_sharded.c, under
# valgrind, holds the hash to fixed vectors, spreads names, takes one key to
# its exact limit from several limiters and threads, co-locates hash tags,
# stops one server (its names answer by the fail mode within the deadline,
# the others' are served) and starts it again.  Then psql reads each server
# directly and a hash written here in Python says where every name must
# be; and the pyrate command with --shards.
#
#   PYRATE_SKIP_INSTALL=1 bash test/suites/54-sharded.sh
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
. test/client/valgrind.sh
. test/client/cli.sh
pyrate_trap
pyrate_install_deps

TMP=$(pyrate_tmp)
BIN=$TMP/bin
PORTS=(56451 56452 56453)
NSHARDS=${#PORTS[@]}
DOWN=1
mkdir -p "$BIN"

echo "== building libpyrate, the CLI and test_sharded"
if client_build "$TMP/build.log" test_sharded; then
	ok "test_sharded builds without warnings"
else
	cat "$TMP/build.log"
	not_ok "test_sharded builds without warnings"
	suite_end
	exit 1
fi

echo "== $NSHARDS primaries, the same definitions on each"
DSNS=()
for i in $(seq 0 $((NSHARDS - 1))); do
	pg_start "shard$i" "${PORTS[$i]}" "shared_preload_libraries = 'pyrate'" || exit 1
	DSNS+=("$(pg_conninfo "shard$i" "${PORTS[$i]}")")
	check "shard $i: the extension and the definitions" psql -X -q -o /dev/null -v ON_ERROR_STOP=1 "${DSNS[$i]}" \
		-c "CREATE EXTENSION pyrate" \
		-c "SELECT pyrate_define('spread:*', '{100/1h}', 'table'), pyrate_define('exact:*', '{20/1h}', 'table'),
		           pyrate_define('tag:*', '{100/1h}', 'table'), pyrate_define('down:*', '{1000/1h}', 'table')"
done
LIST=$(IFS=';'; echo "${DSNS[*]}")

# shard DOWN's server, stopped and started again by the test
cat >"$TMP/stop.sh" <<SH
exec runuser -u postgres -- '$PG_BINDIR/pg_ctl' -D '$TMP/shard$DOWN/data' -m fast -w stop >/dev/null
SH
cat >"$TMP/start.sh" <<SH
exec runuser -u postgres -- '$PG_BINDIR/pg_ctl' -D '$TMP/shard$DOWN/data' -l '$TMP/shard$DOWN/server.log' -w -t 60 start >/dev/null
SH

echo "== test_sharded"
valgrind_test "$TMP/test_sharded.out" test_sharded \
	"$BIN/test_sharded" "$DOWN" "bash $TMP/stop.sh" "bash $TMP/start.sh" "${DSNS[@]}"

# The shard of a name as pyrate.h documents it, written again here: 64-bit
# FNV-1a of the name's bytes (of its non-empty {hash tag} alone) mod n.
cat >"$TMP/shard.py" <<'PY'
import os
import sys

def shard_hash(name):
    b = os.fsencode(name)
    open_ = b.find(b"{")
    if open_ >= 0:
        close = b.find(b"}", open_ + 1)
        if close > open_ + 1:
            b = b[open_ + 1:close]
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) % 2**64
    return h

def shard_of(name, n):
    return shard_hash(name) % n

if __name__ == "__main__":
    n = int(sys.argv[1])
    for name in sys.argv[2:]:
        print(shard_of(name, n))
PY
shard_py() { python3 "$TMP/shard.py" "$@"; }

echo "== where the names are, read on each server with psql"
# name and the units the test put under it
EXPECT=()
for k in $(seq 0 59); do EXPECT+=("spread:$k=1"); done
EXPECT+=("exact:hot=20")
for s in api upload login export report admin; do EXPECT+=("tag:{team7}:$s=1"); done
EXPECT+=("tag:{}:a=1")
names=()
for x in "${EXPECT[@]}"; do names+=("${x%=*}"); done
mapfile -t homes < <(shard_py "$NSHARDS" "${names[@]}")
for i in $(seq 0 $((NSHARDS - 1))); do
	want=$TMP/want.$i
	got=$TMP/got.$i
	: >"$want"
	values=
	for j in "${!names[@]}"; do
		units=${EXPECT[$j]##*=}
		[ "${homes[$j]}" = "$i" ] || units=0
		printf '%s|%s\n' "${names[$j]}" "$units" >>"$want"
		values+="${values:+,}('${names[$j]}')"
	done
	psql -X -At "${DSNS[$i]}" -c "SELECT n, pyrate_count(n) FROM (VALUES $values) v(n)" >"$got" 2>&1
	held=$(grep -c '|[1-9]' "$want")
	if diff -u "$want" "$got" >"$TMP/diff.$i"; then
		ok "shard $i holds what the hash says: $held of ${#names[@]} names, nothing of the others"
	else
		head -20 "$TMP/diff.$i"
		not_ok "shard $i holds what the hash says"
	fi
done
mapfile -t tag_homes < <(shard_py "$NSHARDS" tag:team7:api tag:team7:upload tag:team7:login team7 'tag:{team7}:api')
check "Python agrees: tag:{team7}:* live with \"team7\" (shard ${tag_homes[3]}), untagged they would spread" \
	test "${tag_homes[4]}" = "${tag_homes[3]}" -a \
	"$(printf '%s\n' "${tag_homes[@]:0:3}" | sort -u | wc -l)" -ge 2

echo "== the pyrate command with --shards"
count_on() { psql -X -At "${DSNS[$1]}" -c "SELECT pyrate_count('$2')"; }

cli 0 "shard --help" shard --help; out_has cli.out "usage: pyrate shard NAME --shards"
cli 0 "--help lists shard" --help; out_has cli.out "shard NAME"
for name in cli:a 'user:{42}:api' 42 'caf'$'\xc3\xa9' 'x{}{y}'; do
	cli 0 "shard $name" shard "$name" --shards "$LIST"
	want=$(shard_py "$NSHARDS" "$name")
	check "cli: shard $name prints shard $want (Python's) and its DSN" \
		test "$(cat "$TMP/cli.out")" = "$want"$'\t'"${DSNS[$want]}"
done
cli 2 "shard without --shards" shard cli:a --dsn "${DSNS[0]}"; out_has cli.err "needs the list of shards"
cli 2 "--dsn and --shards together" acquire cli:a --dsn "${DSNS[0]}" --shards "$LIST"; out_has cli.err "not both"
cli 2 "an empty DSN in the list" acquire cli:a --shards "${DSNS[0]};;${DSNS[1]}"; out_has cli.err "DSN 2 of the list is empty"
cli 0 "blanks around the DSNs are trimmed" shard cli:a --shards " ${DSNS[0]} ; ${DSNS[1]} "
check "cli: ... and the DSN printed is trimmed" grep -qx "[01]"$'\t'"host=[^ ].*postgres" "$TMP/cli.out"

cli 0 "define on every shard" define 'cli:*' 3/h --shards "$LIST"
for i in $(seq 0 $((NSHARDS - 1))); do
	check "cli: shard $i has the definition" \
		test "$(psql -X -At "${DSNS[$i]}" -c "SELECT rates FROM pyrate_definitions WHERE pattern = 'cli:*'")" = "{3/1h}"
done
home=$(shard_py "$NSHARDS" cli:a)
for k in 1 2 3; do cli 0 "acquire cli:a $k of 3" acquire cli:a --shards "$LIST"; done
cli 1 "acquire cli:a: the 4th rejected" acquire cli:a --shards "$LIST"; out_has cli.out "rate 3/1h"
for i in $(seq 0 $((NSHARDS - 1))); do
	want=0
	[ "$i" = "$home" ] && want=3
	check "cli: shard $i holds $want units of cli:a (psql)" test "$(count_on "$i" cli:a)" = "$want"
done
cli 0 "status cli:a: from its shard" status cli:a --shards "$LIST"; out_has cli.out "^cli:a	cli:\*	table	{3/1h}	3	3$"
cli 0 "status: every shard" status --shards "$LIST"
check "cli: status lists every shard's buckets under one header" \
	test "$(grep -c '^spread:[0-9]' "$TMP/cli.out")" = 60 -a "$(grep -c '^name' "$TMP/cli.out")" = 1
cli 0 "leak: every shard" leak --shards "$LIST"; out_has cli.out "^leaked [0-9]* units$"
cli 0 "leak cli:a: its shard" leak cli:a --shards "$LIST"; out_has cli.out "^leaked 0 units$"

echo "== the pyrate command with shard $DOWN stopped"
bash "$TMP/stop.sh"
candidates=(cli:b cli:c cli:d cli:e cli:f cli:g cli:h)
mapfile -t down_homes < <(shard_py "$NSHARDS" "${candidates[@]}")
on_down=
elsewhere=
for j in "${!candidates[@]}"; do
	if [ "${down_homes[$j]}" = "$DOWN" ]; then
		on_down=${on_down:-${candidates[$j]}}
	else
		elsewhere=${elsewhere:-${candidates[$j]}}
	fi
done
if [ -n "$on_down" ] && [ -n "$elsewhere" ]; then
	cli 2 "acquire $on_down: its shard is down" acquire "$on_down" --shards "$LIST"
	check "cli: the error names shard $DOWN" grep -q "^pyrate: shard $DOWN: postgres: cannot connect" "$TMP/cli.err"
	out_has cli.err "^HINT: The shard is the one of that number in --shards"
	cli 0 "acquire $on_down --fail-open" acquire "$on_down" --fail-open --shards "$LIST"
	out_has cli.err "fail-open): shard $DOWN: "
	cli 0 "acquire $elsewhere: its shard is up" acquire "$elsewhere" --shards "$LIST"
	cli 2 "define: stops at the shard that is down" define 'cli2:*' 1/s --shards "$LIST"
	out_has cli.err "^pyrate: shard $DOWN: "
	cli 2 "status: the shard that is down" status --shards "$LIST"; out_has cli.err "^pyrate: shard $DOWN: "
else
	not_ok "names on and off shard $DOWN among cli:b..cli:h"
fi
bash "$TMP/start.sh"
[ -n "$on_down" ] && cli 0 "acquire $on_down: its shard is back" acquire "$on_down" --shards "$LIST"

for i in $(seq 0 $((NSHARDS - 1))); do pg_stop "shard$i"; done
suite_end
