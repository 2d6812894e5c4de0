#!/usr/bin/env bash
# A short libFuzzer run of each target (PYRATE_FUZZ_SECONDS each, default
# 15): the rate parser, and the log against the naive model.  A finding is a
# failure; its input is left in the work directory and printed.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh

SECS=${PYRATE_FUZZ_SECONDS:-15}
make -s fuzz >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
work=$(mktemp -d)
for target in rate log; do
	corpus="$work/corpus-$target"
	mkdir -p "$corpus"
	[ -d "test/fuzz/corpus/$target" ] && cp test/fuzz/corpus/$target/* "$corpus/"
	if (cd "$work" && "$OLDPWD/test/fuzz/fuzz_$target" -max_total_time="$SECS" -print_final_stats=1 "$corpus") >"$work/$target.log" 2>&1; then
		ok "fuzz_$target: $(grep -o 'Done [0-9]* runs' "$work/$target.log") without a finding"
	else
		tail -30 "$work/$target.log"
		ls "$work"/crash-* "$work"/leak-* 2>/dev/null
		not_ok "fuzz_$target found a failing input"
	fi
done
rm -rf "$work"
suite_end
