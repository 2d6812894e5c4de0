#!/usr/bin/env bash
# The shared conformance traces replayed through the extension's SQL on every
# engine: zero mismatches.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55411
pg_start conformance $PORT "shared_preload_libraries = 'pyrate'" "pyrate.leak_interval = 0" ||
	{ echo "0 passed, 1 failed"; exit 1; }
DSN=$(pg_conninfo conformance $PORT)
psql -X -q "$DSN" -c "CREATE EXTENSION pyrate" || { echo "0 passed, 1 failed"; exit 1; }
out=$(mktemp)
for storage in table $(psql -X -At "$DSN" -c "SELECT 'memory' WHERE current_setting('pyrate.memory_size', true) IS NOT NULL"); do
	for trace in test/conformance/traces/*.tsv; do
		echo "== $storage engine: $(basename "$trace")"
		test/conformance/replay --bucket sql --storage "$storage" --dsn "$DSN" "$trace" | tee "$out"
		add_counts "$out"
	done
done
check "the replay leaves no bucket or definition behind" \
	test "$(psql -X -At "$DSN" -c "SELECT (SELECT count(*) FROM pyrate_buckets()) + (SELECT count(*) FROM pyrate_definitions)")" = 0
rm -f "$out"
suite_end
