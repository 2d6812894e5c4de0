#!/usr/bin/env bash
# pg_regress over the SQL surface (sql/ + expected/), on a server with pyrate
# preloaded; then the few checks that need a server without it.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55401
tests=$(make -s -f Makefile print-regress 2>/dev/null)
pg_start regress $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" || {
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
while read -r t; do
	if grep -Eq "^(test |ok [0-9]+ +- | +)?$t +\.\.\. ok|^ok [0-9]+ +- +$t " "$out/pg_regress.log"; then
		ok "regress $t"
	else
		not_ok "regress $t"
	fi
done < <(printf '%s\n' $tests)
if [ $rc != 0 ] && [ -f "$out/regression.diffs" ]; then
	echo "== regression.diffs"
	cat "$out/regression.diffs"
fi
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
pg_stop plain
suite_end
