#!/usr/bin/env bash
# pg_regress over the SQL surface (sql/ + expected/), on a server with pyrate
# preloaded; then the few checks that need a server without it.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55401
tests=$(make -s -f Makefile print-regress 2>/dev/null)
pg_start regress $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" \
	"log_line_prefix = '[%e] '" "log_min_error_statement = error" || {
	echo "0 passed, 1 failed"
	exit 1
}
out=$(pyrate_tmp)/regress-out
mkdir -p "$out"
"$PGXS_DIR/test/regress/pg_regress" --inputdir=. --outputdir="$out" \
	--bindir="$PG_BINDIR" --host="$(pyrate_tmp)/regress/sock" --port=$PORT --user=postgres \
	--dbname=pyrate_regression --load-extension=pyrate $tests >"$out/pg_regress.log" 2>&1
rc=$?
cat "$out/pg_regress.log"
regress_results "$out/pg_regress.log" regress $tests
if [ $rc != 0 ] && [ -f "$out/regression.diffs" ]; then
	echo "== regression.diffs"
	cat "$out/regression.diffs"
fi

# The README's SQL tour is the readme test: its statements, and the outputs
# it shows, are sql/readme.sql's and expected/readme.out's.
if python3 test/tools/readme.py tour README.md sql/readme.sql expected/readme.out; then
	ok "the README's SQL tour is sql/readme.sql, and shows what expected/readme.out holds"
else
	not_ok "the README's SQL tour differs from sql/readme.sql or expected/readme.out"
fi

# test/bad-inputs.md: every failing statement of the regression tests with
# its SQLSTATE, error and hint, from the server's log.
awk -f test/tools/bad-inputs.awk "$(pyrate_tmp)/regress/server.log" >"$out/bad-inputs.md"
if diff -u test/bad-inputs.md "$out/bad-inputs.md" >"$out/bad-inputs.diff"; then
	ok "test/bad-inputs.md is up to date ($(grep -c '^| `' "$out/bad-inputs.md") bad inputs)"
else
	cat "$out/bad-inputs.diff"
	not_ok "test/bad-inputs.md is out of date: copy $out/bad-inputs.md over it"
fi

# On the same server: what pg_regress cannot show.
DSN=$(pg_conninfo regress $PORT)
sql() { psql -X -At -q "$DSN" "$@"; }
sql -c "CREATE EXTENSION IF NOT EXISTS pyrate" -c "SELECT pyrate_define('wait:*', '{1/1h}')" >/dev/null

# A blocking acquire is interruptible: pg_cancel_backend ends it at once.
sql -c "SELECT pyrate_try_acquire('wait:cancel')" >/dev/null
start=$(date +%s%N)
psql -X -At "$DSN" -c "SET application_name = 'pyrate-waiter'" -c "SELECT pyrate_try_acquire('wait:cancel')" \
	>"$(pyrate_tmp)/waiter.out" 2>&1 &
waiter=$!
check "a blocking acquire waits with wait_event_type Extension" \
	pg_waits "$DSN" pyrate-waiter Extension 50
sql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pyrate-waiter'" >/dev/null
wait $waiter
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
check "pg_cancel_backend ends a blocking acquire (${elapsed_ms} ms)" \
	grep -q "canceling statement due to user request" "$(pyrate_tmp)/waiter.out"
check "the cancelled waiter held no bucket lock" \
	test "$(sql -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 28786")" = 0

# The pyrate.* prefix is reserved: a misspelt setting is an error, not a no-op.
err=$(psql -X -q "$DSN" -c "SET pyrate.bufer_ms = 10" 2>&1)
check "a misspelt pyrate.* setting is refused" grep -q 'invalid configuration parameter name "pyrate.bufer_ms"' <<<"$err"

# pg_dump keeps the definitions (user configuration), not the items.
sql -c "CREATE DATABASE dumped" -c "SELECT pyrate_put('wait:dump')" >/dev/null
pg_dump -Fc -f "$(pyrate_tmp)/pyrate.dump" "$DSN" &&
	pg_restore -d "$(pg_conninfo regress $PORT dumped)" "$(pyrate_tmp)/pyrate.dump"
check "pg_dump and pg_restore carry the definitions" \
	test "$(psql -X -At "$(pg_conninfo regress $PORT dumped)" -c "SELECT rates FROM pyrate_definitions WHERE pattern = 'wait:*'")" = "{1/1h}"
check "a restored database starts with empty buckets" \
	test "$(psql -X -At "$(pg_conninfo regress $PORT dumped)" -c "SELECT pyrate_count('wait:dump')")" = 0

# pyrate_stats_reset resets this database only: the other database's rows
# keep their counts and their reset time.
D2=$(pg_conninfo regress $PORT dumped)
sql -c "SELECT pyrate_define('st:*', '{100/h}')" -c "SELECT pyrate_stats_reset()" >/dev/null
psql -X -At -q "$D2" -c "SELECT pyrate_define('st:*', '{100/h}')" -c "SELECT pyrate_stats_reset()" \
	-c "SELECT pyrate_try_acquire('st:a', 1, false)" >/dev/null
sql -c "SELECT pyrate_try_acquire('st:a', 1, false)" >/dev/null
before=$(psql -X -At "$D2" -c "SELECT acquired || ' ' || stats_reset FROM pyrate_stats WHERE pattern = 'st:*'")
sleep 0.05
sql -c "SELECT pyrate_stats_reset()" >/dev/null
check "pyrate_stats_reset in one database leaves another's counts and reset time ($before)" \
	test "$(psql -X -At "$D2" -c "SELECT acquired || ' ' || stats_reset FROM pyrate_stats WHERE pattern = 'st:*'")" = "$before"
check "... and empties its own" \
	test "$(sql -c "SELECT count(*) FROM pyrate_stats WHERE pattern = 'st:*'")" = 0

# Each backend counts into slots of its own, which outlive it: sessions
# taking turns in two databases (a new session mostly gets the PGPROC the
# last one left, with its slots bound to the other database's row) lose no
# count and count none twice; a session that counted before a reset counts
# after it from zero.
sql -c "SELECT pyrate_define('sc:*', '{1000000/h}')" -c "SELECT pyrate_stats_reset()" >/dev/null
psql -X -At -q "$D2" -c "SELECT pyrate_define('sc:*', '{1000000/h}')" -c "SELECT pyrate_stats_reset()" >/dev/null
for r in 1 2 3; do
	sql -c "SELECT pyrate_try_acquire('sc:a', 1, false)" >/dev/null
	psql -X -At -q "$D2" -c "SELECT pyrate_try_acquire('sc:a', 1, false), pyrate_try_acquire('sc:b', 1, false)" >/dev/null
done
check "sessions taking turns in two databases: every count kept, none twice (3 and 6)" \
	test "$(sql -c "SELECT acquired FROM pyrate_stats WHERE pattern = 'sc:*'") $(psql -X -At "$D2" -c "SELECT acquired FROM pyrate_stats WHERE pattern = 'sc:*'")" = "3 6"
check "a session counting across a reset counts from zero after it" \
	test "$(sql -c "SELECT pyrate_try_acquire('sc:a', 1, false)" -c "SELECT pyrate_stats_reset()" \
		-c "SELECT pyrate_try_acquire('sc:a', 1, false)" \
		-c "SELECT acquired || ' ' || rejected FROM pyrate_stats WHERE pattern = 'sc:*'" | tail -1)" = "1 0"
# 4 clients count while a session reads pyrate_stats over and over: the
# reads never go down, and the last is every transaction's count.
sql -c "SELECT pyrate_stats_reset()" >/dev/null
echo "\\set k random(1, 100)
SELECT pyrate_try_acquire('sc:' || :k, 1, false);" >"$out/stats-count.sql"
echo "INSERT INTO stats_seen SELECT clock_timestamp(), coalesce(sum(acquired), 0) FROM pyrate_stats WHERE pattern = 'sc:*';" \
	>"$out/stats-read.sql"
sql -c "CREATE TABLE stats_seen (at timestamptz, n bigint)" >/dev/null
pgbench -n -c 1 -T 3 -f "$out/stats-read.sql" "$DSN" >"$out/stats-read.log" 2>&1 &
reader=$!
pgbench -n -c 4 -j 2 -T 3 -f "$out/stats-count.sql" "$DSN" >"$out/stats-count.log" 2>&1
wait $reader
counted=$(pgbench_processed "$out/stats-count.log")
check "pyrate_stats read beside 4 counting clients never goes down ($(sql -c "SELECT count(*) FROM stats_seen") reads)" \
	test "$(sql -c "SELECT count(*) FROM (SELECT n < lag(n) OVER (ORDER BY at) AS down FROM stats_seen) s WHERE down")" = 0
check "... and counts every transaction (${counted:-none})" \
	test "$(sql -c "SELECT acquired FROM pyrate_stats WHERE pattern = 'sc:*'")" = "${counted:-none}"
sql -c "DROP TABLE stats_seen" -c "SELECT pyrate_stats_reset()" >/dev/null

# ALTER EXTENSION pyrate UPDATE on a database in use: definitions, items of
# both engines, a grant on pyrate_define and a session holding a permit all
# come through, and the new version's functions work.
U=$(pg_conninfo regress $PORT upgraded)
sql -c "CREATE DATABASE upgraded" >/dev/null
usql() { psql -X -At -q -v ON_ERROR_STOP=1 "$U" "$@"; }
usql -c "CREATE EXTENSION pyrate VERSION '1.0'" \
	-c "SELECT pyrate_define('up:t:*', '{3/1h}', 'table'), pyrate_define('up:m:*', '{3/1h}', 'memory')" \
	-c "SELECT pyrate_put('up:t:a', 2), pyrate_put('up:m:a', 2)" \
	-c "CREATE ROLE pyrate_definer" \
	-c "GRANT EXECUTE ON FUNCTION pyrate_define(text, pyrate_rate[], text, boolean) TO pyrate_definer" \
	-c "GRANT EXECUTE ON FUNCTION pyrate_buckets() TO pyrate_definer" >/dev/null
check "the new library leaks a 1.0 database (no due column: every bucket read)" \
	test "$(usql -c "SELECT pyrate_leak() >= 0")" = t
check "before the update the database is at 1.0" \
	test "$(usql -c "SELECT extversion FROM pg_extension WHERE extname = 'pyrate'")" = 1.0
# a session in the middle of a transaction that took a table permit
coproc HOLDER { psql -X -At -q "$U"; }
# bash forgets a coprocess's pid and descriptors once it exits: keep them
holder_pid=$HOLDER_PID
holder_in=${HOLDER[1]}
echo "BEGIN; SELECT pyrate_put('up:t:b', 1); SELECT 'held';" >&"$holder_in"
read -r -t 10 held <&"${HOLDER[0]}"; read -r -t 10 held <&"${HOLDER[0]}"
check "a session holds a table permit in an open transaction ($held)" test "$held" = held
# the update adds a column to pyrate_bucket_data, which the holder wrote: it
# waits for the holder's commit, as any ALTER TABLE would
usql -c "SET application_name = 'pyrate-update'" -c "ALTER EXTENSION pyrate UPDATE" >/dev/null &
updater=$!
check "the update waits for the transaction that holds a permit" \
	pg_waits "$U" pyrate-update Lock
echo "COMMIT;" >&"$holder_in"
exec {holder_in}>&-
wait "$holder_pid" 2>/dev/null
wait "$updater"
check "... and completes once it commits" test $? = 0
check "ALTER EXTENSION pyrate UPDATE reaches the default version" \
	test "$(usql -c "SELECT extversion FROM pg_extension WHERE extname = 'pyrate'")" = "$(sed -n "s/^default_version = '\(.*\)'/\1/p" pyrate.control)"
check "the definitions come through the update" \
	test "$(usql -c "SELECT string_agg(pattern || ' ' || rates::text || ' ' || storage, ', ' ORDER BY pattern) FROM pyrate_definitions")" = "up:m:* {3/1h} memory, up:t:* {3/1h} table"
check "so do the items of both engines, and the permit taken across it" \
	test "$(usql -c "SELECT pyrate_count('up:t:a'), pyrate_count('up:m:a'), pyrate_count('up:t:b')")" = "2|2|1"
check "the limits still hold on both engines" \
	test "$(usql -c "SELECT pyrate_put('up:t:a'), pyrate_put('up:t:a'), pyrate_put('up:m:a'), pyrate_put('up:m:a')")" = "t|f|t|f"
check "after the update table buckets are numbered from 1, and their id sequence cycles below 2^23 - 1 (1.5)" \
	test "$(usql -c "SELECT string_agg(name || '=' || id, ',' ORDER BY id) FROM pyrate_bucket_data" \
		-c "SELECT max_value || ' ' || cycle FROM pg_sequences WHERE sequencename = 'pyrate_bucket_id_seq'" | tr '\n' ' ')" = "up:t:a=1,up:t:b=2 8388606 true "
usql -c "SELECT pyrate_put('up:t:b')" >/dev/null
check "... items are (key, ts, weight), key = bucket << 40 | cum, a weight of 1 NULL: the items moved there, and one put after it; they count and peek as before (1.5)" \
	test "$(usql -c "SELECT string_agg((key >> 40) || ':' || (key & 1099511627775) || ':' || coalesce(weight::text, 'null'), ',' ORDER BY key) FROM pyrate_item_data" \
		-c "SELECT pyrate_count('up:t:b'), (pyrate_peek('up:t:b', 0)).weight, (pyrate_peek('up:t:b', 1)).weight, pyrate_put('up:t:b', 2)" | tr '\n' ' ')" = "1:2:2,1:3:null,2:1:null,2:2:null 2|1|1|f "
check "the role granted pyrate_define keeps it, for both forms" \
	test "$(usql -c "SET ROLE pyrate_definer" -c "SELECT (pyrate_define('up:r', '{1/s}')).storage, (pyrate_define('up:s', '2/s')).rates" -c "RESET ROLE")" = "table|{2/1s}"
check "PUBLIC still may not define" \
	test "$(usql -c "SELECT has_function_privilege('public', 'pyrate_define(text, text, text, boolean, integer, bigint, boolean)', 'EXECUTE')")" = f
check "after the update memory definitions are durable, table ones too, and a memory one may be volatile (1.4)" \
	test "$(usql -c "SELECT (pyrate_define('up:v:*', '{3/1h}', 'memory', durable => false)).durable" \
		-c "SELECT string_agg(pattern || '=' || durable, ',' ORDER BY pattern) FROM pyrate_definitions WHERE pattern LIKE 'up:_:*'" | tr '\n' ' ')" = \
	"f up:m:*=true,up:t:*=true,up:v:*=false "
check "... and the durable memory bucket put before the update still holds its items, the volatile one takes its own (1.4)" \
	test "$(usql -c "SELECT pyrate_count('up:m:a'), pyrate_put('up:v:a', 3), pyrate_put('up:v:a')")" = "3|t|f"
check "... and pyrate_buckets(), which gained a column (1.3)" \
	test "$(usql -c "SET ROLE pyrate_definer" -c "SELECT count, entries FROM pyrate_buckets() WHERE name = 'up:t:a'" -c "RESET ROLE")" = "3|2"
usql -c "SELECT pyrate_define('up:t:*', '{2/1s,6/10s}', 'table', slots => 2), pyrate_define('up:m:*', '{2/1s,6/10s}', 'memory', slots => 2)" \
	-c "SELECT pyrate_put(b, 1, t) FROM unnest(ARRAY['up:t:c', 'up:m:c']) b, unnest(ARRAY[1000, 1500, 2100, 2600]) t" >/dev/null
check "after the update a definition takes slots, on both engines, and its buckets merge old items (1.3)" \
	test "$(usql -c "SELECT string_agg(p.slots || ':' || b.count || ':' || b.entries, ',' ORDER BY b.name) FROM pyrate_buckets() b JOIN pyrate_definitions p USING (pattern) WHERE b.name LIKE 'up:_:c'")" = "2:4:3,2:4:3"
check "after the update a memory definition takes max_buckets, and holds its buckets (up:m:a, c and d) to it (1.3)" \
	test "$(usql -c "SELECT max_buckets FROM pyrate_define('up:m:*', '{2/1s,6/10s}', 'memory', max_buckets => 3)" \
		-c "SELECT pyrate_put('up:m:d')" -c "SELECT pyrate_put('up:m:e')" 2>&1 | tr '\n' ' ')" = \
	"3 t ERROR:  definition \"up:m:*\" has all the memory buckets its max_buckets allows (3) DETAIL:  Bucket \"up:m:e\" would be a new one. HINT:  Dispose of its buckets no longer needed, let leaks reclaim idle ones, or raise max_buckets with pyrate_define(). "
check "after the update table items keep one index, their primary key (1.2)" \
	test "$(usql -c "SELECT string_agg(indexrelid::regclass::text, ',') FROM pg_index WHERE indrelid = 'pyrate_item_data'::regclass")" = pyrate_item_data_pkey
check "after the update a table bucket records when it is next due" \
	test "$(usql -c "SELECT count(*) FROM pyrate_bucket_data WHERE due IS NULL")" = 0
check "the updated database matches a fresh install, object by object" \
	test "$(usql -c "SELECT count(*) FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pyrate') AND deptype = 'e'")" = \
	"$(sql -c "SELECT count(*) FROM pg_depend WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pyrate') AND deptype = 'e'")"
usql -c "SELECT pyrate_dispose('up:m:a'), pyrate_dispose('up:m:c'), pyrate_dispose('up:m:d'), pyrate_dispose('up:v:a')" -c "DROP EXTENSION pyrate" -c "DROP ROLE pyrate_definer" >/dev/null

# The update to 1.5 packs each item's bucket and cum into one key, cum in 40
# bits: a bucket whose items span more than 2^39 units stops it, with what
# to do; once leaked, its cums are moved down and it counts as before.
G=$(pg_conninfo regress $PORT packing)
sql -c "CREATE DATABASE packing" >/dev/null
gsql() { psql -X -At -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$G" "$@"; }
gsql -c "CREATE EXTENSION pyrate VERSION '1.4'" -c "SELECT pyrate_define('big', '{2147483647/1s}', 'table')" \
	-c "SET pyrate.defer_table_puts = off" \
	-c "DO \$\$ BEGIN FOR i IN 1..257 LOOP PERFORM pyrate_put('big', 2147483647, i * 2000); END LOOP; END \$\$" >/dev/null
err=$(gsql -c "ALTER EXTENSION pyrate UPDATE" 2>&1)
check "an update to 1.5 stops at a bucket whose items span more than 2^39 units, with 54000 and what to do" \
	grep -q 'ERROR:  54000: table bucket "big" holds too many units to move to pyrate 1.5' <<<"$err"
check "... (the hint)" grep -q 'HINT:  Leak its old items (pyrate_leak) or flush it (pyrate_flush), then update again.' <<<"$err"
check "... and changes nothing" \
	test "$(gsql -c "SELECT extversion FROM pg_extension WHERE extname = 'pyrate'" -c "SELECT count(*) || ' ' || max(cum) FROM pyrate_item_data" | tr '\n' ' ')" = "1.4 257 551903297279 "
gsql -c "SELECT pyrate_leak('big', 514000)" -c "ALTER EXTENSION pyrate UPDATE" >/dev/null
check "once leaked the bucket moves, its cums less the units below its oldest item, and counts as before" \
	test "$(gsql -c "SELECT extversion FROM pg_extension WHERE extname = 'pyrate'" -c "SELECT (key >> 40) || ':' || (key & 1099511627775) || ':' || weight FROM pyrate_item_data" \
		-c "SELECT pyrate_count('big'), pyrate_put('big', 1, 514000), pyrate_put('big', 2147483647, 516000), pyrate_count('big')" | tr '\n' ' ')" = \
	"1.5 1:2147483648:2147483647 2147483647|f|t|4294967294 "

pg_stop regress

# Without shared_preload_libraries: everything but the memory engine works,
# and choosing it says what to add.
PORT=55402
pg_start plain $PORT || { not_ok "server without preload"; suite_end; exit; }
DSN=$(pg_conninfo plain $PORT)
psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" -c "SELECT pyrate_define('k', '{1/s}')" >/dev/null 2>&1
check "table engine works without preload" \
	test "$(psql -X -At "$DSN" -c "SELECT pyrate_put('k'), pyrate_put('k')")" = "t|f"
err=$(psql -X -q "$DSN" -c "SELECT pyrate_define('m', '{1/s}', 'memory')" 2>&1)
check "memory storage without preload is refused with a hint" \
	grep -q "HINT:  Add pyrate to shared_preload_libraries" <<<"$err"
err=$(psql -X -q "$DSN" -c "SELECT * FROM pyrate_stats" 2>&1)
check "pyrate_stats without preload says what to add" \
	grep -q "HINT:  Add pyrate to shared_preload_libraries" <<<"$err"
pg_stop plain
suite_end
