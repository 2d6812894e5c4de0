#!/usr/bin/env bash
# 00-standalone — the repository stands on its own: no tracked file reads or
# names anything beside the clone (a user's clone has nothing there), the
# conformance traces the replays need are in the repository, and the
# extension's modules are layered.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh

# The pattern is written so that this file does not match it itself.
outside='\.\./shared'
if git rev-parse --git-dir >/dev/null 2>&1; then
	hits=$(git grep -n -E "$outside" -- . 2>/dev/null)
else
	hits=$(grep -rn -E "$outside" --exclude-dir=.git . 2>/dev/null)
fi
if [ -z "$hits" ]; then
	ok "no tracked file names the directory beside the clone"
else
	echo "$hits" | head -20
	not_ok "tracked files name the directory beside the clone (copy what they need into the repository)"
fi
n=$(ls test/conformance/traces/*.tsv 2>/dev/null | wc -l)
check "the conformance traces are in the repository ($n file(s))" test "$n" -gt 0
for t in test/conformance/traces/*.tsv; do
	check "$(basename "$t") holds scenarios" grep -q '^scenario' "$t"
done
# The extension's modules read bottom-up: each file uses only the files the
# Makefile lists before it (no include circle).
if out=$(python3 test/tools/layering.py .); then
	ok "extension modules are layered bottom-up ($(tail -1 <<<"$out"))"
else
	echo "$out"
	not_ok "extension modules are layered bottom-up"
fi
suite_end
