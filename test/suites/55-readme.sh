#!/usr/bin/env bash
# The README's client examples, taken from the README and run as a new user
# would: the C example and the pyrate command's examples, on a server set up
# as "Install into an existing PostgreSQL" says (pyrate installed by make
# install, not preloaded), compared with the outputs the README shows.
# (The SQL tour is the regression test readme: suite 10-regress.)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55551
readme() { python3 test/tools/readme.py "$@"; }
pg_start readme $PORT || { echo "0 passed, 1 failed"; exit 1; }
sql() { psql -X -At -q -v ON_ERROR_STOP=1 "$(pg_conninfo readme $PORT "${DB:-postgres}")" "$@"; }
sql -c "CREATE EXTENSION pyrate" -c "CREATE ROLE app LOGIN" -c "CREATE DATABASE app OWNER app" >/dev/null
DB=app sql -c "CREATE EXTENSION pyrate" >/dev/null
export PGHOST="$(pyrate_tmp)/readme/sock" PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres

# "A short example": app.c from the README, built and run by the README's commands.
work=$(pyrate_tmp)/readme-work
mkdir -p "$work"
readme block README.md "A short example" c >"$work/app.c"
check "the README's C example builds and prints what the README shows" \
	bash -c 'cd "$1" && python3 "$2/test/tools/readme.py" console "$2/README.md" "A short example"' _ "$work" "$PWD"

# "The pyrate command": its transcripts, as the owner, in the database app.
check "the README's pyrate command examples print what the README shows" \
	env PGDATABASE=app python3 test/tools/readme.py console README.md 'The `pyrate` command'

# status is the owner's until granted, as the README says, with its GRANT.
grant=$(grep -o 'GRANT EXECUTE ON FUNCTION pyrate_buckets() TO app;' README.md | head -1)
out=$(PGUSER=app PGDATABASE=app pyrate status export:acme 2>&1)
rc=$?
check "pyrate status as another role: permission denied (exit $rc)" \
	grep -q "permission denied for function pyrate_buckets" <<<"$out"
DB=app sql -c "$grant" >/dev/null
check "... and after the README's $grant it lists the bucket" \
	test "$(PGUSER=app PGDATABASE=app pyrate status export:acme | cut -f1,5 | tail -1)" = "$(printf 'export:acme\t10')"

# The crontab line, under cron's PATH and nothing else of this environment:
# the database unreachable (fail open), then reachable (5 an hour).
line=$(readme block README.md 'The `pyrate` command' crontab)
cmd=$(cut -d' ' -f6- <<<"$line")
printf '#!/bin/sh\necho report ran\n' >"$work/report"
chmod 755 "$work/report"
cmd=${cmd//\/usr\/local\/bin\/report/$work/report}
cron() { env -i PATH=/usr/bin:/bin sh -c "$1" 2>&1; }
out=$(cron "$cmd")
check "the crontab line with the database unreachable: fails open, the report runs" \
	test "$(tail -1 <<<"$out")" = "report ran"
grep -q "admitted without a check" <<<"$out" || echo "$out"
DB=app sql -c "SELECT pyrate_define('cron:*', '{5/h}')" >/dev/null
reached=${cmd/PGHOST=db.internal/PGHOST=$PGHOST PGPORT=$PORT}
runs=0
for i in 1 2 3 4 5 6; do
	cron "$reached" | grep -q "^report ran$" && runs=$((runs + 1))
done
check "the crontab line run 6 times with cron:* at 5/h: the report ran $runs times" test $runs = 5

pg_stop readme
suite_end
