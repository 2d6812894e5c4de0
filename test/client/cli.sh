# test/client/cli.sh — how the client suites run the pyrate command
# (sourced after test/lib.sh, whose ok/not_ok/pyrate_tmp it uses).
# PYRATE_CLI is the command; defaults to the one src/client builds.

PYRATE_CLI=${PYRATE_CLI:-$PYRATE_TOP/src/client/pyrate}

# cli EXPECTED-STATUS DESCRIPTION ARGS... — the command's output in
# $(pyrate_tmp)/cli.out and cli.err; ok when it exits EXPECTED-STATUS
cli() {
	local want=$1 desc=$2 tmp
	shift 2
	tmp=$(pyrate_tmp)
	"$PYRATE_CLI" "$@" >"$tmp/cli.out" 2>"$tmp/cli.err"
	local rc=$?
	if [ "$rc" = "$want" ]; then ok "cli: $desc (exit $rc)"; else
		not_ok "cli: $desc (exit $rc, wanted $want)"
		cat "$tmp/cli.out" "$tmp/cli.err"
	fi
}

# out_has cli.out|cli.err PATTERN — ok when the last run's output matches
out_has() {
	local f
	f="$(pyrate_tmp)/$1"
	if grep -q -- "$2" "$f"; then ok "cli: $1 says '$2'"; else not_ok "cli: $1 lacks '$2': $(cat "$f")"; fi
}
