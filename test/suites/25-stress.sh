#!/usr/bin/env bash
# Stress on the table engine: pgbench clients racing on one key with two
# rates.  Afterwards no window of either rate holds more than its limit, and
# the limiter admitted exactly as many as the rates allow.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55431
CLIENTS=${PYRATE_STRESS_CLIENTS:-8}
pg_start stress $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" "max_connections = 120" ||
	{ echo "0 passed, 1 failed"; exit 1; }
DSN=$(pg_conninfo stress $PORT)
sql() { psql -X -At -v ON_ERROR_STOP=1 "$DSN" "$@"; }
sql -q -c "CREATE EXTENSION pyrate" \
	-c "SELECT pyrate_define('stress:phased', '{20/1000,50/10000}')" \
	-c "SELECT pyrate_define('stress:reference', '{20/1000,50/10000}')" \
	-c "SELECT pyrate_define('stress:clock', '{10/100,50/1000}')" \
	-c "SELECT pyrate_define('stress:key:*', '{3/50,10/1000}')" >/dev/null
work=$(pyrate_tmp)/stress-work
mkdir -p "$work"

# 1. Frozen clock, phase by phase: within a phase every item has the same
#    time, so the number admitted cannot depend on the order of the racers;
#    it must equal what one session admits doing the same attempts in turn.
echo "SELECT pyrate_put('stress:phased', 1, :at);" >"$work/phased.sql"
phase_ok=1
total=0
for k in $(seq 0 12); do
	at=$((1000 + k * 1001))
	pgbench -n -c "$CLIENTS" -j 2 -t 40 -f "$work/phased.sql" -D at=$at "$DSN" >"$work/pgbench.log" 2>&1 ||
		{ cat "$work/pgbench.log"; phase_ok=0; }
	got=$(sql -c "SELECT count(*) FROM pyrate_bucket_data b JOIN pyrate_item_data i ON i.key BETWEEN b.id << 40 AND (b.id << 40) + 1099511627775 WHERE b.name = 'stress:phased' AND i.ts = $at")
	want=$(sql -c "SELECT count(*) FILTER (WHERE pyrate_put('stress:reference', 1, $at)) FROM generate_series(1, $((CLIENTS * 40)))")
	echo "phase at=$at: $CLIENTS clients admitted $got, one session $want"
	[ "$got" = "$want" ] || phase_ok=0
	total=$((total + got))
done
# 20 per second, 50 per 10 s: 20+20+10 in the first 10 s, refilled after
[ "$total" = 100 ] || phase_ok=0
check "racing clients admit exactly what the rates allow, phase by phase" test $phase_ok = 1

# 2. The server clock: $CLIENTS clients for 3 s on one hot key.
echo "SELECT pyrate_put('stress:clock');" >"$work/clock.sql"
pgbench -n -c "$CLIENTS" -j 2 -T 3 -f "$work/clock.sql" "$DSN" >"$work/pgbench.log" 2>&1
check "pgbench on the hot key ran without errors" pgbench_ok "$work/pgbench.log"
admitted=$(sql -c "SELECT pyrate_count('stress:clock')")
echo "hot key: $admitted admitted in 3 s (50 per second at most)"
# 50 per second: 150 over 3 s of demand, up to 200 if the run overshoots
check "the hot key admitted what 3 s of demand allow" test "$admitted" -ge 100 -a "$admitted" -le 200

# 3. Many keys at once: random keys, blocking acquires.
echo "\\set k random(1, 20)
SELECT pyrate_try_acquire('stress:key:' || :k, 1, true, 0.2);" >"$work/keys.sql"
pgbench -n -c "$CLIENTS" -j 2 -T 3 -f "$work/keys.sql" "$DSN" >"$work/pgbench.log" 2>&1
check "pgbench on 20 keys ran without errors" pgbench_ok "$work/pgbench.log"

# The table engine against the memory engine, fed the same random
# operations (timestamps that sometimes step back, leaks, flushes, peeks).
disagreements=$(sql -f test/stress/differential.sql 2>&1 | tail -1)
echo "table vs memory engine: $disagreements disagreements in 20000 operations"
check "the table engine decides exactly as the memory engine" test "$disagreements" = 0

# 4. Buckets coming and going: clients acquire 3000 names while others
#    dispose of them.  Each dispose invalidates every backend's bucket-id
#    cache, also in the middle of another backend's lookup; a backend that
#    emptied its cache there used to crash.
echo "\\set k random(1, 3000)
SELECT pyrate_acquire('stress:churn:' || :k);" >"$work/churn-acquire.sql"
echo "\\set k random(1, 3000)
SELECT pyrate_dispose('stress:churn:' || :k);" >"$work/churn-dispose.sql"
sql -q -c "SELECT pyrate_define('stress:churn:*', '{100/1000}')" >/dev/null
crashes_before=$(grep -c "terminated by signal" "$(pyrate_tmp)/stress/server.log")
pgbench -n -c "$CLIENTS" -j 2 -T 5 -f "$work/churn-acquire.sql@5" -f "$work/churn-dispose.sql@1" "$DSN" \
	>"$work/pgbench.log" 2>&1
check "acquiring and disposing of 3000 names at once: pgbench without errors" \
	pgbench_ok "$work/pgbench.log"
check "... and no backend crashed" \
	test "$(grep -c "terminated by signal" "$(pyrate_tmp)/stress/server.log")" = "$crashes_before"

# 4b. New buckets, written at commit: a new name every quarter
#     millisecond, each taken by about two clients at once, at most 2 an
#     hour.  A put whose lookup missed a bucket row that another
#     transaction then committed took the bucket for empty: its decision
#     admitted past the limit, its write at commit made a second row (a
#     duplicate-key error).
sql -q -c "SELECT pyrate_define('stress:new:*', '{2/3600000}')" >/dev/null
echo "SELECT pyrate_try_acquire('stress:new:' || (extract(epoch FROM clock_timestamp()) * 4000)::bigint, 1, false);" \
	>"$work/new.sql"
pgbench -n -c "$CLIENTS" -j 2 -T 10 -f "$work/new.sql" "$DSN" >"$work/pgbench.log" 2>&1
new_rc=$?
check "clients creating buckets at commit, two or more on each new name: pgbench without errors" \
	test "$new_rc:$(pgbench_ok "$work/pgbench.log" && echo ok)" = 0:ok
attempts=$(pgbench_processed "$work/pgbench.log")
read -r buckets admitted over full < <(sql -F' ' -c "SELECT count(*), sum(count), count(*) FILTER (WHERE count > 2),
	count(*) FILTER (WHERE count = 2) FROM pyrate_buckets() WHERE name LIKE 'stress:new:%'")
echo "new names: ${attempts:-0} attempts, $buckets buckets, $admitted admitted, $full full, $over over 2"
check "... no new bucket admitted more than 2, with names contended (${attempts:-0} attempts, $admitted admitted, $full full)" \
	test "$over" = 0 -a "${attempts:-0}" -gt "$admitted" -a "$full" -gt 0

# 5. Items written at once (pyrate.defer_table_puts off): past
#    max_locks_per_transaction buckets, a transaction's uncommitted items
#    hold its buckets instead of a lock each: clients that first take 70
#    keys of their own race on one hot key, putting twice, and roll back
#    about half their transactions.  The windows are checked below.
sql -q -c "SELECT pyrate_define('stress:own:*', '{1000000/3600000}')" \
	-c "SELECT pyrate_define('stress:past', '{10/100,50/1000}')" >/dev/null
echo "\\set rb random(0, 1)
SET pyrate.defer_table_puts = off;
BEGIN;
SELECT count(*) FILTER (WHERE pyrate_put('stress:own:' || :client_id || ':' || i)) FROM generate_series(1, 70) i;
SELECT pyrate_put('stress:past');
SELECT pyrate_put('stress:past');
\\if :rb
ROLLBACK;
\\else
COMMIT;
\\endif" >"$work/past.sql"
pgbench -n -c "$CLIENTS" -j 2 -T 3 -f "$work/past.sql" "$DSN" >"$work/pgbench.log" 2>&1
check "clients past their lock budget on one hot key, half rolling back: pgbench without errors" \
	pgbench_ok "$work/pgbench.log"
admitted=$(sql -c "SELECT pyrate_count('stress:past')")
echo "past the lock budget: $admitted admitted on the hot key in 3 s (50 per second at most)"
check "... and the hot key admitted something" test "$admitted" -gt 0

# 5b. The same hot key race with items written at commit (the default):
#     nobody waits for another's open transaction, half of them roll back,
#     and puts go on top of items still being committed.
sql -q -c "SELECT pyrate_define('stress:mixed', '{10/100,50/1000}')" >/dev/null
sed -e '/defer_table_puts/d' -e 's/stress:past/stress:mixed/g' "$work/past.sql" >"$work/mixed.sql"
pgbench -n -c "$CLIENTS" -j 2 -T 3 -f "$work/mixed.sql" "$DSN" >"$work/pgbench.log" 2>&1
check "items written at commit, half rolling back, on one hot key: pgbench without errors" \
	pgbench_ok "$work/pgbench.log"
admitted=$(sql -c "SELECT pyrate_count('stress:mixed')")
echo "written at commit: $admitted admitted on the hot key in 3 s (50 per second at most)"
check "... and the hot key admitted something, within what 3 s allow" test "$admitted" -gt 0 -a "$admitted" -le 200

# 6. One transaction takes permits from 100,000 keys with the default
#    max_locks_per_transaction (64), and every one of them holds its permit.
sql -q -c "SELECT pyrate_define('stress:many:*', '{1/3600000}')" >/dev/null
check "max_locks_per_transaction is the default, 64" test "$(sql -c "SHOW max_locks_per_transaction")" = 64
check "one transaction admits 100,000 keys" \
	test "$(sql -c "SELECT count(*) FILTER (WHERE pyrate_put('stress:many:' || i)) FROM generate_series(1, 100000) i")" = 100000
check "... and holds them: a second admits none" \
	test "$(sql -c "SELECT count(*) FILTER (WHERE pyrate_put('stress:many:' || i)) FROM generate_series(1, 100000) i")" = 0
check "... 100,000 buckets of one unit each" \
	test "$(sql -c "SELECT count(*) || ' ' || sum(count) FROM pyrate_buckets() WHERE name LIKE 'stress:many:%'")" = "100000 100000"

# race LABEL SECONDS PUTS LEAKS: $CLIENTS clients run the script PUTS
# beside one session running LEAKS, both for SECONDS; then both pgbench
# runs are checked for errors.
race() {
	pgbench -n -c 1 -T "$2" -f "$4" "$DSN" >"$work/pgbench-$1-leak.log" 2>&1 &
	local leaker=$!
	pgbench -n -c "$CLIENTS" -j 2 -T "$2" -f "$3" "$DSN" >"$work/pgbench-$1.log" 2>&1
	wait $leaker
	check "$1: $5, beside a leaking session: pgbench without errors" \
		pgbench_ok "$work/pgbench-$1.log"
	check "... and the leaking session ran without errors" \
		pgbench_ok "$work/pgbench-$1-leak.log"
}
# windows_over RATES LOG: windows of the true clock, one per logged
# admission and rate, that hold more of the log's admissions of the same
# name than the rate's limit (ts - interval .. ts, inclusive)
windows_over() {
	sql -c "SELECT count(*) FROM unnest('$1'::pyrate_rate[]) r, $2 x,
		LATERAL (SELECT count(*) AS used FROM $2 y WHERE y.name = x.name
			AND y.ts BETWEEN x.ts - pyrate_rate_interval(r) AND x.ts) u
		WHERE u.used > pyrate_rate_limit(r)"
}

# 7. Bounded storage (slots) on a hot table key: clients put, half of them
#    rolling back, while another session leaks the bucket over and over.
#    Every admitted item's stored time goes to a log in the same
#    transaction (a coarse entry's stored time is no item's own): no window
#    of the true clock holds more than its limit, and the bucket never holds
#    more than its bound of entries.  (Not named stress:*: the check of
#    stored items below would count a coarse entry at its newest unit.)
sql -q -c "SELECT pyrate_define('slotted', '{10/100,50/1000,200/5000}', 'table', slots => 3)" \
	-c "CREATE TABLE slot_log (name text NOT NULL DEFAULT 'slotted', ts bigint NOT NULL)" \
	-c "CREATE TABLE slot_entries (n bigint)" >/dev/null
echo "\\set rb random(0, 1)
BEGIN;
WITH p AS MATERIALIZED (SELECT pyrate_put('slotted') AS ok)
INSERT INTO slot_log (ts) SELECT (pyrate_peek('slotted', 0)).ts FROM p WHERE ok;
\\if :rb
ROLLBACK;
\\else
COMMIT;
\\endif" >"$work/slots.sql"
echo "SELECT pyrate_leak('slotted'), pg_sleep(0.02);
INSERT INTO slot_entries SELECT count(*) FROM pyrate_bucket_data b JOIN pyrate_item_data i ON i.key BETWEEN b.id << 40 AND (b.id << 40) + 1099511627775
	WHERE b.name = 'slotted' AND coalesce(i.weight, 1) <> 0;" >"$work/slots-leak.sql"
race slots 4 "$work/slots.sql" "$work/slots-leak.sql" "clients on a hot key, half rolling back"
logged=$(sql -c "SELECT count(*) FROM slot_log")
over=$(windows_over '{10/100,50/1000,200/5000}' slot_log)
echo "slots: $logged admitted and committed; $over windows over their limit"
check "... no window of the true clock over its limit, $logged admitted" test "$logged" -gt 0 -a "$over" = 0
# bound: 10 (the smallest limit) + 2 * 9 + 1; 9 = 1 + (900 - 1) / 333 + 2 + (4000 - 1) / 1665 + 2
entries=$(sql -c "SELECT count(*) || ' ' || max(n) FROM slot_entries")
check "... and the bucket never held more than 29 entries (samples, most: $entries)" \
	test "${entries#* }" -le 29 -a "${entries% *}" -gt 10

# 8. Leaks that reclaim what they empty, beside puts.  100 keys under
#    {2/20,3/50}, each hit about every 50 ms at random: a key often goes
#    unhit past its largest window, a session leaking every bucket every
#    10 ms then drops it (its newest item and row in one step), and the next
#    puts start it again, some of them racing that leak.  Half the putting
#    transactions roll back.  Every admitted and committed item's time goes
#    to a log in its transaction (the buckets' own items leave with them):
#    no window of the true clock holds more than its limit.
sql -q -c "SELECT pyrate_define('churn:*', '{2/20,3/50}', 'table')" \
	-c "CREATE TABLE churn_log (name text NOT NULL, ts bigint NOT NULL)" >/dev/null
first_id=$(sql -c "SELECT last_value FROM pyrate_bucket_id_seq")
echo "\\set rb random(0, 1)
BEGIN;
WITH k AS (SELECT 'churn:' || (random() * 99)::int AS name),
p AS MATERIALIZED (SELECT name, pyrate_put(name) AS ok FROM k)
INSERT INTO churn_log SELECT name, (pyrate_peek(name, 0)).ts FROM p WHERE ok;
\\if :rb
ROLLBACK;
\\else
COMMIT;
\\endif" >"$work/churn.sql"
echo "SELECT pyrate_leak(), pg_sleep(0.01);" >"$work/churn-leak.sql"
race churn 5 "$work/churn.sql" "$work/churn-leak.sql" "clients on 100 keys, half rolling back"
made=$(( $(sql -c "SELECT last_value FROM pyrate_bucket_id_seq") - first_id ))
check "... the leaks dropped idle keys' buckets and puts started them again ($made buckets made for 100 keys)" \
	test "$made" -gt 500
logged=$(sql -c "SELECT count(*) FROM churn_log")
over=$(windows_over '{2/20,3/50}' churn_log)
echo "churn: $logged admitted and committed; $over windows over their limit"
check "... no window of the true clock over its limit, $logged admitted" test "$logged" -gt 1000 -a "$over" = 0

# Every window of every rate, from the stored items.
violations=$(sql -v like='stress:%' -f test/stress/window_check.sql 2>&1) && wc_rc=0 || wc_rc=$?
if [ "$wc_rc" = 0 ] && [ -z "$violations" ]; then
	ok "no window of any rate holds more than its limit"
else
	echo "$violations"
	not_ok "no window of any rate holds more than its limit"
fi
check "no lock is left behind" \
	test "$(sql -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 28786")" = 0
suite_end
