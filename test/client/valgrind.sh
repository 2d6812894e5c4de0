# test/client/valgrind.sh — how the client suites run a C test under
# valgrind (sourced after test/lib.sh, whose ok/not_ok/add_counts it uses).

VALGRIND=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
	--child-silent-after-fork=yes)

# valgrind_test OUT DESCRIPTION PROGRAM ARGS... — PROGRAM under valgrind, its
# output in OUT: prints the lines that are not "ok", adds the program's own
# "N passed, N failed" to the suite's and says whether valgrind was clean.
valgrind_test() {
	local out=$1 desc=$2
	shift 2
	"${VALGRIND[@]}" "$@" >"$out" 2>&1
	local rc=$?
	grep -v '^ok' "$out"
	add_counts "$out"
	if [ $rc = 99 ]; then
		not_ok "$desc: valgrind reported errors"
	elif [ $rc -gt 128 ]; then
		not_ok "$desc: died by signal $((rc - 128))"
	else
		ok "$desc: valgrind clean"
	fi
}
