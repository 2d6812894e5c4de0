#!/usr/bin/env bash
# make bench — every benchmark, each against baselines measured side by side
# in the same run, then one table of the results (RESULT lines of each
# script) and the scaling plots.  Starts and stops its own servers.
#
#   make bench                    (PYRATE_BENCH_SECONDS: seconds per measurement)
#   make bench-short              (PYRATE_BENCH_SHORT=1: every part but the
#                                  scaling plots, short measurements; under 5
#                                  minutes; the table goes to summary-short.md)
#   test/bench/run-all.sh table memory slots client scaling    (a subset)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_install_deps gnuplot-nox
OUT=${PYRATE_BENCH_OUT:-test/bench/results}
mkdir -p "$OUT"
summary=$OUT/summary.md
parts=("$@")
if [ "${PYRATE_BENCH_SHORT:-0}" = 1 ]; then
	# the same measures, each shorter: fewer seconds, rounds, rows and keys
	export PYRATE_BENCH_SECONDS=${PYRATE_BENCH_SECONDS:-2} PYRATE_BENCH_ROUNDS=1 \
		PYRATE_BENCH_PUTS=200000 PYRATE_BENCH_PROBE=50000 PYRATE_BENCH_ROWS=5000 \
		PYRATE_BENCH_KEYS=200000 PYRATE_BENCH_KEYS_PER_TX=100000 PYRATE_BENCH_SLOTS_PUTS=100000
	summary=$OUT/summary-short.md
	[ ${#parts[@]} -eq 0 ] && parts=(table table-sync memory hot million slots client)
fi
[ ${#parts[@]} -eq 0 ] && parts=(table table-sync memory hot million slots client scaling)
log=$(mktemp -d /tmp/pyrate-bench.XXXXXX)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
for part in "${parts[@]}"; do
	echo "== $part"
	case $part in
		table) bash test/bench/run-table.sh "${PYRATE_BENCH_SECONDS:-10}" ;;
		table-sync) PYRATE_BENCH_SYNC=on bash test/bench/run-table.sh "${PYRATE_BENCH_SECONDS:-10}" ;;
		memory) bash test/bench/memory_run.sh ;;
		hot) bash test/bench/hot_key.sh ;;
		million) bash test/bench/million_keys.sh ;;
		slots) bash test/bench/slots.sh ;;
		client) bash test/bench/client_bench.sh "${PYRATE_BENCH_SECONDS:-5}" ;;
		scaling) bash test/bench/scaling.sh ;;
		*) echo "unknown part $part" >&2; exit 2 ;;
	esac 2>&1 | tee "$log/$part.log"
done
{
	echo "Measured $(date -u '+%Y-%m-%d') on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $(postgres --version 2>/dev/null || "$PG_BINDIR/postgres" --version); \`make bench$([ "${PYRATE_BENCH_SHORT:-0}" = 1 ] && echo -short)\`; load average at the start: $LOAD."
	echo
	echo "| measure | pyrate | baseline | ratio | goal |"
	echo "|---|---|---|---|---|"
	for part in "${parts[@]}"; do
		grep '^RESULT|' "$log/$part.log" | cut -d'|' -f2- | sed 's/^/| /; s/$/ |/'
	done
} >"$summary"
echo
cat "$summary"
echo "(logs in $log; plots in $OUT)"
