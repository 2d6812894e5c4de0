#!/usr/bin/env bash
# The memory engine and the background worker: the TAP tests (worker,
# restart and crash, the engine's limits), the conformance traces on the
# memory engine, and stress on one hot key and on 10,000 keys.
#
#   PYRATE_SKIP_INSTALL=1 bash test/suites/30-memory-worker.sh [tap|conformance|stress]...
#   PYRATE_TAP=002 ... runs only the TAP files whose names contain 002
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap
pyrate_install_deps

want() {
	[ $# -eq 0 ] && return 0
	local w
	for w in "${PARTS[@]}"; do [ "$w" = "$1" ] && return 0; done
	return 1
}
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(tap conformance stress)

# ---- TAP: prove runs as postgres, from a copy it owns ---------------------
run_tap() {
	local dir t name out rc passed failed
	dir="$(pyrate_tmp)/tap"
	mkdir -p "$dir"
	cp test/t/*.pl "$dir/"
	chown -R postgres: "$dir"
	for t in "$dir"/*.pl; do
		name=$(basename "$t")
		case "$name" in *"${PYRATE_TAP:-}"*) ;; *) continue ;; esac
		out="$dir/$name.out"
		echo "== TAP $name"
		(cd "$dir" && as_postgres env PATH="$PG_BINDIR:$PATH" \
			PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" TESTDIR="$dir" \
			PG_TEST_TIMEOUT_DEFAULT=60 \
			prove -v -I "$PGXS_DIR/test/perl" "$t") >"$out" 2>&1
		rc=$?
		passed=$(grep -c '^ok ' "$out")
		failed=$(grep -c '^not ok ' "$out")
		grep -E '^(ok|not ok) ' "$out"
		if [ "$rc" != 0 ]; then
			[ "$failed" = 0 ] && failed=1
			echo "-- $name failed; its output and logs are in $dir"
			grep -E '^#' "$out" | tail -30
			tail -15 "$dir/tmp_check/log/regress_log_${name%.pl}"
			PYRATE_KEEP_TMP=1
		fi
		SUITE_PASSED=$((SUITE_PASSED + passed))
		SUITE_FAILED=$((SUITE_FAILED + failed))
	done
}

want tap && run_tap
suite_end
