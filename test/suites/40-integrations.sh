#!/usr/bin/env bash
# pyrate behind pgbouncer (transaction pooling) and with pg_cron (throttled
# jobs, and scheduling pyrate_leak() where the worker is not preloaded).
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

# ---- pgbouncer, transaction pooling ------------------------------------
PORT=55441
BOUNCER_PORT=55442
pg_start bouncer $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" ||
	{ echo "0 passed, 1 failed"; exit 1; }
DSN=$(pg_conninfo bouncer $PORT)
psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" \
	-c "SELECT pyrate_define('bouncer:*', '{20/1000,50/10000}')" \
	-c "SELECT pyrate_define('mem:*', '{20/1000,50/10000}', 'memory')" >/dev/null
bdir=$(pyrate_tmp)/pgbouncer
mkdir -p "$bdir"
echo '"postgres" ""' >"$bdir/users.txt"
cat >"$bdir/pgbouncer.ini" <<INI
[databases]
postgres = host=$(pyrate_tmp)/bouncer/sock port=$PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $bdir/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 4
max_client_conn = 100
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
INI
chown -R postgres: "$bdir"
as_postgres pgbouncer -d "$bdir/pgbouncer.ini" >/dev/null 2>&1
for i in $(seq 50); do
	psql -X -At "host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=postgres" -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.1
done
BDSN="host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=postgres"
check "pgbouncer is up in transaction pooling mode" \
	test "$(psql -X -At "host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=pgbouncer" -c "SHOW CONFIG" | awk -F'|' '$1 == "pool_mode" {print $2}')" = transaction

# 16 clients share 4 server connections; every statement may land on a
# different one.  Phase by phase with a frozen clock, they must admit exactly
# what one session admits.
for storage in bouncer mem; do
	echo "SELECT pyrate_put('$storage:k', 1, :at);" >"$bdir/phased.sql"
	good=1
	total=0
	for k in 0 1 2 3; do
		at=$((1000 + k * 1001))
		pgbench -n -c 16 -j 2 -t 20 -f "$bdir/phased.sql" -D at=$at "$BDSN" >"$bdir/pgbench.log" 2>&1 ||
			{ cat "$bdir/pgbench.log"; good=0; }
		got=$(psql -X -At "$DSN" -c "SELECT pyrate_count('$storage:k')")
		want=$(psql -X -At "$DSN" -c "SELECT count(*) FILTER (WHERE pyrate_put('$storage:reference', 1, $at)) FROM generate_series(1, 320)" \
			-c "SELECT pyrate_count('$storage:reference')" | tail -1)
		echo "$storage phase at=$at: through pgbouncer $got in the bucket, one session $want"
		[ "$got" = "$want" ] || good=0
	done
	check "through pgbouncer, $storage buckets admit exactly what the rates allow" test $good = 1
done
echo "SELECT pyrate_try_acquire('bouncer:blocking', 1, true, 5);" >"$bdir/blocking.sql"
pgbench -n -c 8 -j 2 -t 5 -f "$bdir/blocking.sql" "$BDSN" >"$bdir/pgbench.log" 2>&1
check "blocking acquires through pgbouncer all succeed (40 over 20/s and 50/10s)" \
	test "$(psql -X -At "$DSN" -c "SELECT pyrate_count('bouncer:blocking')")" = 40
xacts=$(psql -X -At "host=127.0.0.1 port=$BOUNCER_PORT user=postgres dbname=pgbouncer" -c "SHOW STATS" |
	awk -F'|' '$1 == "postgres" {print $2}')
check "the traffic went through pgbouncer ($xacts transactions)" test "${xacts:-0}" -ge 1000
kill "$(cat "$bdir/pgbouncer.pid")" 2>/dev/null
pg_stop bouncer

# ---- pg_cron: the README's recipe, leaking without the worker and ------
# ---- throttling a job ------------------------------------------------
# Its postgresql.conf lines and its SQL, taken from the README.
PORT=55443
readme() { python3 test/tools/readme.py block README.md "pgbouncer and pg_cron" "$@"; }
mapfile -t conf < <(readme '' | grep -v '^#')
readme sql >"$(pyrate_tmp)/pg_cron-recipe.sql"
pg_start cron $PORT "${conf[@]}" ||
	{ not_ok "server with the README's pg_cron settings"; suite_end; exit; }
DSN=$(pg_conninfo cron $PORT app)
sql() { psql -X -At -q -v ON_ERROR_STOP=1 "$DSN" "$@"; }
psql -X -q "$(pg_conninfo cron $PORT)" -c "CREATE DATABASE app" >/dev/null
check "without pyrate preloaded there is no worker to leak" \
	test "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE '%pyrate%'")" = 0
sql -c "CREATE EXTENSION pyrate" -c "SELECT pyrate_define('old:*', '{5/1s}')" \
	-c "SELECT pyrate_put('old:a', 2, pyrate_now() - 60000), pyrate_put('old:b', 1, pyrate_now() - 60000)" >/dev/null
check "the README's pg_cron recipe runs as written" sql -o /dev/null -f "$(pyrate_tmp)/pg_cron-recipe.sql"
# Within a minute: the report every minute, and scheduled twice.
sql -c "SELECT cron.alter_job(jobid, schedule => '* * * * *') FROM cron.job WHERE jobname = 'report'" \
	-c "SELECT cron.schedule('report-2', '* * * * *', command) FROM cron.job WHERE jobname = 'report'" >/dev/null
echo "waiting up to 75 s for pg_cron's next minute"
for i in $(seq 150); do
	[ "$(sql -c "SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')")" -ge 3 ] && break
	sleep 0.5
done
sql -c "SELECT jobid, status, return_message FROM cron.job_run_details ORDER BY jobid"
check "pg_cron ran pyrate_leak(): the old items are gone" \
	test "$(sql -c "SELECT pyrate_count('old:a') + pyrate_count('old:b')")" = 0
check "the report scheduled twice in the same minute ran once: the other was throttled" \
	test "$(sql -c "SELECT count(*) FROM report_runs")" = 1
check "both throttled jobs finished without error" \
	test "$(sql -c "SELECT count(*) FILTER (WHERE status = 'succeeded') >= 2 AND count(*) FILTER (WHERE status = 'failed') = 0 FROM cron.job_run_details WHERE command LIKE '%job:report%'")" = t
sql -c "SELECT cron.unschedule(jobname) FROM cron.job" >/dev/null
pg_stop cron
suite_end
