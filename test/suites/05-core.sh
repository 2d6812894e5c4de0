#!/usr/bin/env bash
# The algorithm module on its own: unit tests (ASan + UBSan) and the shared
# conformance traces replayed straight through it.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh

make -s test/unit/test_core test/conformance/replay >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
out=$(mktemp)
test/unit/test_core | tee "$out"
add_counts "$out"
for trace in test/conformance/traces/*.tsv; do
	test/conformance/replay --bucket core "$trace" | tee "$out"
	add_counts "$out"
done
rm -f "$out"
suite_end
