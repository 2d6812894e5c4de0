#!/usr/bin/env bash
# make bench — every benchmark, each against baselines measured side by side
# in the same run, then one table of the results (RESULT lines of each
# script) and the scaling plots.  Starts and stops its own servers.
#
#   make bench                    (PYRATE_BENCH_SECONDS: seconds per measurement)
#   test/bench/run-all.sh table memory client scaling    (a subset)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_install_deps gnuplot-nox
OUT=${PYRATE_BENCH_OUT:-test/bench/results}
mkdir -p "$OUT"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(table table-sync memory client scaling)
log=$(mktemp -d /tmp/pyrate-bench.XXXXXX)
for part in "${parts[@]}"; do
	echo "== $part"
	case $part in
		table) bash test/bench/run-table.sh "${PYRATE_BENCH_SECONDS:-10}" ;;
		table-sync) PYRATE_BENCH_SYNC=on bash test/bench/run-table.sh "${PYRATE_BENCH_SECONDS:-10}" ;;
		memory) bash test/bench/memory_run.sh ;;
		client) bash test/bench/client_bench.sh "${PYRATE_BENCH_SECONDS:-5}" ;;
		scaling) bash test/bench/scaling.sh ;;
		*) echo "unknown part $part" >&2; exit 2 ;;
	esac 2>&1 | tee "$log/$part.log"
done
{
	echo "Measured $(date -u '+%Y-%m-%d') on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $(postgres --version 2>/dev/null || "$PG_BINDIR/postgres" --version); \`make bench\`."
	echo
	echo "| measure | pyrate | baseline | ratio | goal |"
	echo "|---|---|---|---|---|"
	for part in "${parts[@]}"; do
		grep '^RESULT|' "$log/$part.log" | cut -d'|' -f2- | sed 's/^/| /; s/$/ |/'
	done
} >"$OUT/summary.md"
echo
cat "$OUT/summary.md"
echo "(logs in $log; plots in $OUT)"
