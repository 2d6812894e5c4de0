# test/client/cli_define.sh — the pyrate CLI's define --volatile (extension
# 1.4): sourced after test/lib.sh and test/client/cli.sh, whose ok/not_ok and
# cli/out_has it uses, it defines cli_define_volatile.  Run by itself,
#   bash test/client/cli_define.sh DSN
# it runs those checks against the database of DSN (the extension created
# there, pyrate preloaded) and prints the suite's "N passed, N failed".

# cli_define_volatile DSN — memory buckets defined volatile show durable f in
# pyrate_definitions, by default t; table storage is refused before any
# connection, and the server's default storage (table) by the server
cli_define_volatile() {
	local dsn=$1 got
	cli 0 "define --help lists --volatile" define --help
	out_has cli.out "--volatile"
	cli 2 "acquire takes no --volatile" acquire cliv:a --volatile --dsn "$dsn"
	out_has cli.err "acquire takes no .*--volatile"
	cli 2 "--volatile with --storage table" define 'cliv:*' 1/s --storage table --volatile --dsn "$dsn"
	out_has cli.err "^pyrate: --volatile is for --storage memory"
	# refused by the CLI: it needs no database to say so
	cli 2 "--volatile with --storage table, no database" define 'cliv:*' 1/s --storage table --volatile \
		--dsn "host=$(pyrate_tmp)/nowhere port=1"
	out_has cli.err "^pyrate: --volatile is for --storage memory"
	cli 2 "--volatile on the server's default storage (table): the server's error" \
		define 'cliv:*' 1/s --volatile --dsn "$dsn"
	out_has cli.err "^pyrate: .*only memory buckets can be volatile (SQLSTATE 22023)$"
	cli 0 "define with --volatile (memory storage)" define 'cliv:*' 2/s 30/m --storage memory --volatile --dsn "$dsn"
	cli 0 "define without --volatile (memory storage)" define 'clid:*' 1/s --storage memory --dsn "$dsn"
	got=$(psql -X -At "$dsn" -c "SELECT string_agg(pattern || ' ' || storage || ' ' || rates::text || ' ' ||
		CASE WHEN durable THEN 't' ELSE 'f' END, ', ' ORDER BY pattern)
		FROM pyrate_definitions WHERE pattern IN ('cliv:*', 'clid:*')")
	if [ "$got" = "clid:* memory {1/1s} t, cliv:* memory {2/1s,30/1m} f" ]; then
		ok "cli: --volatile defines durable f, without it durable t"
	else
		not_ok "cli: --volatile defines durable f, without it durable t: $got"
	fi
	cli 0 "acquire on a volatile bucket" acquire cliv:a --dsn "$dsn"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -u
	cd "$(dirname "$0")/../.."
	. test/lib.sh
	. test/client/cli.sh
	if [ $# != 1 ]; then
		echo "usage: bash test/client/cli_define.sh DSN" >&2
		exit 2
	fi
	PYRATE_TMP=$(mktemp -d /tmp/pyrate-cli.XXXXXX)
	trap 'rm -rf "$PYRATE_TMP"' EXIT
	cli_define_volatile "$1"
	suite_end
fi
