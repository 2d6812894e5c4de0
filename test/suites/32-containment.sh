#!/usr/bin/env bash
# Containment of the memory engine's shared memory: a login role that fills
# it with new buckets cannot make the next item of a bucket that exists fail
# (the reserve, pyrate.memory_reserve), and a database kept to its share
# (pyrate.memory_database_share, set by a superuser) cannot crowd out the
# others; a definition with max_buckets holds a crowd of new names to its
# cap, across a restart.  A small arena: 2 MB, 128 kB of it reserved.  And
# the table engine's pending permits: a transaction that holds thousands of
# keys' permits cannot take every entry of pyrate.table_pending_buckets, so
# other sessions' permits still wait for their commit holding no lock, and a
# call that never waits does not wait for them.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55451
pg_start contain $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" \
	"pyrate.memory_size = '2MB'" "pyrate.memory_reserve = '128kB'" "pyrate.table_pending_buckets = 2000" ||
	{ echo "0 passed, 1 failed"; exit 1; }
# sql_as ROLE DB psql-args...: psql as that role, errors included in the output
sql_as() { local role=$1 db=$2; shift 2; psql -X -At "$(pg_conninfo contain $PORT "$db") user=$role" "$@" 2>&1; }
super() { sql_as postgres "$@"; }
super postgres -q -c "CREATE DATABASE victim" -c "CREATE DATABASE filler" -c "CREATE ROLE stranger LOGIN" >/dev/null
for db in victim filler; do
	super $db -q -c "CREATE EXTENSION pyrate" -c "SELECT FROM pyrate_define('v:*', '100/1h', 'memory')" \
		-c "SELECT FROM pyrate_define('f:*', '100/1h', 'memory')" >/dev/null
done
# a loop of new buckets until the first error; prints "count|SQLSTATE|message"
# (a name the length of the last ones the loop tried lands in the same
# block size of the allocator, full by then: 'f:more:00')
fill() {
	sql_as stranger "$1" -c "DO \$\$ DECLARE i int := 0; BEGIN
		LOOP i := i + 1; PERFORM pyrate_put('f:$2:' || i); END LOOP;
	EXCEPTION WHEN others THEN RAISE NOTICE 'fill|%|%|%', i - 1, SQLSTATE, SQLERRM; END \$\$" |
		sed -n 's/.*NOTICE:  fill|//p'
}

# 1. The reserve.
check "the victim's 50 buckets take their first item" \
	test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:' || i)) FROM generate_series(1, 50) i")" = 50
out=$(fill filler a)
echo "a stranger's new buckets in another database: $out"
check "a stranger fills the arena with new buckets until 53200" grep -q '^[0-9]*|53200|' <<<"$out"
check "... told that the arena is full" grep -q "|pyrate's shared memory is full\$" <<<"$out"
check "... less what is kept in reserve for buckets that exist" \
	grep -qE 'DETAIL:.* 128 kB kept in reserve for buckets that exist' <<<"$(sql_as stranger filler -c "SELECT pyrate_put('f:more:00')")"
for round in 2 3 4; do
	check "each of the victim's buckets that exist takes item $round (it grows into the reserve)" \
		test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:' || i)) FROM generate_series(1, 50) i")" = 50
done
check "the victim's buckets hold every item" \
	test "$(super victim -c "SELECT sum(pyrate_count('v:' || i)) FROM generate_series(1, 50) i")" = 200
err=$(super victim -c "SELECT pyrate_put('v:new')")
check "while the reserve is in use, a new bucket is refused, in every database" \
	grep -q "ERROR:  pyrate's shared memory is full for new buckets" <<<"$err"
check "... the error says the reserve kept for buckets that exist is in use" \
	grep -q 'DETAIL:.*reserve kept for buckets that exist (pyrate.memory_reserve) is in use' <<<"$err"
check "... and when new buckets come back, and what to change" grep -q 'HINT:.*pyrate.memory_size' <<<"$err"
n=${out%%|*}
super filler -c "SELECT count(pyrate_dispose('f:a:' || i)) FROM generate_series(1, $n) i" >/dev/null
check "once the stranger's buckets go, new buckets are admitted again (the reserve is set aside anew)" \
	test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:new:' || i)) FROM generate_series(1, 100) i")" = 100

# 2. A database's share.
check "a login role cannot raise its database's share" \
	grep -q 'permission denied to set parameter "pyrate.memory_database_share"' \
	<<<"$(sql_as stranger filler -c "SET pyrate.memory_database_share = 100")"
super postgres -q -c "ALTER DATABASE filler SET pyrate.memory_database_share = 25" >/dev/null
out=$(fill filler b)
echo "the stranger again, its database held to 25%: $out"
check "the stranger's database stops at its share" \
	grep -q 'database "filler" has used its share of pyrate.s shared memory' <<<"$out"
check "... which the error tells, with the setting to raise" \
	grep -q 'HINT:.*pyrate.memory_database_share' <<<"$(super filler -c "SET pyrate.memory_database_share = 25" -c "SELECT pyrate_put('f:more2')")"
n=${out%%|*}
bytes=$(super victim -c "SELECT used_bytes FROM pyrate_memory_status()")
echo "the stranger's database made $n buckets; the arena holds $bytes bytes of buckets in all"
check "... within 25% of the 2 MB arena as accounted" test "$bytes" -le $((2 * 1024 * 1024 / 4 + 64 * 1024))
check "the victim still creates new buckets" \
	test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:more:' || i)) FROM generate_series(1, 1000) i")" = 1000
check "and its buckets that exist still grow" \
	test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:' || i)) FROM generate_series(1, 50) i")" = 50

# 3. A definition's cap.  The stranger's names now route to 'c:*', capped
#    at 500 memory buckets; the victim's own definition is not.
super victim -q -c "SELECT FROM pyrate_define('c:*', '100/1h', 'memory', max_buckets => 500)" >/dev/null
out=$(sql_as stranger victim -c "DO \$\$ DECLARE i int := 0; BEGIN
		LOOP i := i + 1; PERFORM pyrate_put('c:' || i); END LOOP;
	EXCEPTION WHEN others THEN RAISE NOTICE 'fill|%|%|%', i - 1, SQLSTATE, SQLERRM; END \$\$" |
	sed -n 's/.*NOTICE:  fill|//p')
echo "a stranger's new names under a definition capped at 500: $out"
check "the stranger stops at the cap with 53400, naming the definition" \
	test "$out" = '500|53400|definition "c:*" has all the memory buckets its max_buckets allows (500)'
check "... its buckets that exist still take items" \
	test "$(sql_as stranger victim -c "SELECT count(*) FILTER (WHERE pyrate_put('c:' || i)) FROM generate_series(1, 500) i")" = 500
check "... and the victim's other definitions still create new buckets" \
	test "$(super victim -c "SELECT count(*) FILTER (WHERE pyrate_put('v:cap:' || i)) FROM generate_series(1, 100) i")" = 100
as_postgres "$PG_BINDIR/pg_ctl" -D "$(pyrate_tmp)/contain/data" -l "$(pyrate_tmp)/contain/server.log" \
	-w -t 60 -m fast restart >/dev/null
check "after a clean restart the cap still counts the 500 restored buckets" \
	grep -q 'ERROR:  definition "c:\*" has all the memory buckets' <<<"$(sql_as stranger victim -c "SELECT pyrate_put('c:501')")"
super victim -q -c "SELECT count(pyrate_dispose('c:' || i)) FROM generate_series(1, 100) i" >/dev/null
check "disposing of 100 makes room for 100 new ones, no more" \
	test "$(sql_as stranger victim -c "DO \$\$ DECLARE i int := 1000; BEGIN
		LOOP i := i + 1; PERFORM pyrate_put('c:' || i); END LOOP;
	EXCEPTION WHEN others THEN RAISE NOTICE 'made %', i - 1001; END \$\$" | sed -n 's/.*NOTICE:  made //p')" = 100

# 4. Pending table permits.  2000 entries; each backend's share is 2000 /
#    (2 x MaxBackends), the rest first come, first served up to what the
#    shares leave.  The stranger holds 3000 keys' permits in one open
#    transaction (past the entries it may take, its puts write their items
#    at once); the victim's permit then still waits for its commit, holding
#    nothing, and a caller that never waits answers at once.
super victim -q -c "SELECT FROM pyrate_define('t:*', '100/1h', 'table')" >/dev/null
psql -X -At "$(pg_conninfo contain $PORT victim) user=stranger application_name=hoarder" \
	-c "BEGIN" -c "SELECT count(*) FILTER (WHERE pyrate_put('t:s:' || i)) FROM generate_series(1, 3000) i" \
	-c "SELECT pg_sleep(20)" -c "COMMIT" >"$(pyrate_tmp)/hoarder.out" 2>&1 &
hoarder=$!
check "a stranger holds 3000 table keys' permits in an open transaction" \
	pg_waits "$(pg_conninfo contain $PORT victim)" hoarder Timeout 300
psql -X -At "$(pg_conninfo contain $PORT victim) user=postgres application_name=holder" \
	-c "BEGIN" -c "SELECT pyrate_put('t:v')" -c "SELECT pg_sleep(20)" -c "COMMIT" >/dev/null 2>&1 &
holder=$!
check "the victim takes a permit in an open transaction too" \
	pg_waits "$(pg_conninfo contain $PORT victim)" holder Timeout 300
check "... which holds the bucket's lock for no one: a call that never waits answers at once, counting it" \
	test "$(super victim -q -c "SET statement_timeout = '3s'" -c "SELECT pyrate_try_acquire('t:v', 100, false)")" = f
check "... and a weight that fits is admitted at once" \
	test "$(super victim -q -c "SET statement_timeout = '3s'" -c "SELECT pyrate_try_acquire('t:v', 99, false)")" = t
super victim -q -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name IN ('hoarder', 'holder')" >/dev/null
wait $hoarder $holder
check "every one of the stranger's 3000 puts was admitted" grep -qx 3000 "$(pyrate_tmp)/hoarder.out"
suite_end
