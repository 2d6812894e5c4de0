#!/usr/bin/env bash
# Isolation specs (test/isolation/specs): concurrent sessions on one bucket at
# every isolation level.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55421
pg_start isolation $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" "max_prepared_transactions = 10" ||
	{ echo "0 passed, 1 failed"; exit 1; }
specs=$(cd test/isolation/specs && ls *.spec | sed 's/\.spec$//')
out=$(pyrate_tmp)/isolation-out
mkdir -p "$out"
"$PGXS_DIR/test/isolation/pg_isolation_regress" --inputdir=test/isolation --outputdir="$out" \
	--bindir="$PG_BINDIR" --host="$(pyrate_tmp)/isolation/sock" --port=$PORT --user=postgres \
	--dbname=pyrate_isolation --load-extension=pyrate $specs >"$out/log" 2>&1
rc=$?
cat "$out/log"
regress_results "$out/log" isolation $specs
[ $rc != 0 ] && [ -f "$out/regression.diffs" ] && cat "$out/regression.diffs"
suite_end
