#!/usr/bin/env bash
# The Debian packages and the PGXN distribution, used the way a DBA uses
# them: build the .debs from a copy of the tree (src/packaging/build-debs.sh,
# which runs the regression tests on a throwaway cluster), install them with
# apt-get, run `make installcheck` on a fresh Debian cluster that preloads
# pyrate, use the packaged pyrate command, link a program against
# libpyrate-dev through pkg-config; then drop the cluster, purge the packages
# and check nothing of them remains.  The tree's own build is taken out for
# the test and installed again at the end (later suites use it), whatever
# happens.  `make dist`'s META.json is checked against the PGXN spec.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

PORT=55901		# the packaged extension's cluster
VENV_PORT=55902	# the build's own regression cluster (pg_virtualenv)
CLUSTER=pyratepkg
PKGS=(postgresql-15-pyrate libpyrate0 libpyrate-dev pyrate-cli)
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300)
SOCK=/var/run/postgresql
DSN="host=$SOCK port=$PORT user=postgres dbname=postgres"
T=$(pyrate_tmp)
EXTVERSION=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" pyrate.control)
case $EXTVERSION in *.*.*) DISTVERSION=$EXTVERSION ;; *) DISTVERSION=$EXTVERSION.0 ;; esac

# Debian's packages must never create a "main" cluster behind our back:
# test/lib.sh writes the setting when the file is missing, this covers a
# createcluster.conf that is already there.
if [ -f /etc/postgresql-common/createcluster.conf ] &&
	[ "$(pg_conftool /etc/postgresql-common/createcluster.conf show -bs create_main_cluster 2>/dev/null)" != off ]; then
	pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster false
fi
pyrate_install_deps debhelper postgresql-server-dev-all fakeroot dpkg-dev jq unzip python3 || {
	echo "0 passed, 1 failed"
	exit 1
}
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
clusters_before=$(pg_lsclusters -h | awk '{print $1 "/" $2}' | sort)

# --- whatever happens: no cluster left, no package left, the tree installed
tree_removed=0
tree_restored=0
pkg_teardown() {
	if pg_lsclusters -h 15 "$CLUSTER" >/dev/null 2>&1; then
		pg_dropcluster --stop 15 "$CLUSTER"
	fi
	local p installed=()
	for p in "${PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed\|config-files' && installed+=("$p")
	done
	[ ${#installed[@]} -eq 0 ] || "${APT[@]}" purge "${installed[@]}" >"$T/purge.log" 2>&1
}
on_exit() {
	pkg_teardown
	if [ $tree_removed = 1 ] && [ $tree_restored = 0 ]; then
		pyrate_build
	fi
	pyrate_cleanup
}
trap on_exit EXIT

# --- PGXN: make dist, META.json at the root of the distribution
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# of HEAD, as a release is made: a clone keeps the tree untouched
	git clone -q "$PWD" "$T/dist-src" &&
		make -s -C "$T/dist-src" dist >"$T/dist.log" 2>&1
	zip="$T/dist-src/pyrate-$DISTVERSION.zip"
	check "make dist writes pyrate-$DISTVERSION.zip" test -f "$zip"
	if [ -f "$zip" ]; then
		roots=$(unzip -Z1 "$zip" | cut -d/ -f1 | sort -u)
		check "the zip holds one directory, pyrate-$DISTVERSION/" test "$roots" = "pyrate-$DISTVERSION"
		unzip -q -d "$T/dist" "$zip"
		meta="$T/dist/pyrate-$DISTVERSION/META.json"
		check "META.json at the distribution's root" test -f "$meta"
		check "META.json is JSON (python3 -m json.tool)" python3 -m json.tool "$meta" /dev/null
		# The PGXN Meta Spec 1.0: required keys, nothing unknown, semantic
		# versions equal to pyrate.control's, a license of the spec's list,
		# PostgreSQL 15 only (what src/compat.h accepts).
		meta_spec() { jq -e --arg v "$DISTVERSION" --arg e "$EXTVERSION" '
			def semver: test("^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$");
			(["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"] - keys == [])
			and ((keys - ["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec",
				"description", "generated_by", "tags", "no_index", "prereqs", "release_status", "resources"])
				| all(test("^[xX]_")))
			and .name == "pyrate" and (.abstract | length > 0) and (.maintainer | length > 0)
			and (.version | semver) and .version == $v
			and (.license | IN("agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
				"freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
				"mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun",
				"zlib", "open_source", "restricted", "unrestricted", "unknown"))
			and (.provides.pyrate.version | semver) and .provides.pyrate.version == $v
			and (.provides.pyrate.file | test("^sql/pyrate--[0-9.]+\\.sql$"))
			and (."meta-spec".version | test("^1\\.0\\.[0-9]+$"))
			and .prereqs.runtime.requires.PostgreSQL == ">= 15.0.0, < 16.0.0"
			and (.release_status | IN("stable", "testing", "unstable"))' "$meta" >/dev/null; }
		check "META.json follows the PGXN Meta Spec 1.0, version $DISTVERSION (else update src/packaging/META.json)" meta_spec
		f=$(jq -r .provides.pyrate.file "$meta")
		check "the provided install script $f is in the distribution" test -f "$T/dist/pyrate-$DISTVERSION/$f"
		check "the docfile is in the distribution" test -f "$T/dist/pyrate-$DISTVERSION/$(jq -r .provides.pyrate.docfile "$meta")"
	else
		cat "$T/dist.log"
	fi
else
	echo "# make dist: not a git checkout, skipped"
fi

# --- debian/control is what pg_buildext makes of control.in + pgversions
mkdir -p "$T/ctl" && cp -a src/packaging/debian "$T/ctl/debian"
(cd "$T/ctl" && pg_buildext updatecontrol >/dev/null 2>&1)
check "src/packaging/debian/control is up to date with control.in" \
	diff -u src/packaging/debian/control "$T/ctl/debian/control"

# --- build
echo "== building the packages (src/packaging/build-debs.sh)"
start=$(date +%s)
if PGPORT=$VENV_PORT src/packaging/build-debs.sh "$T/debs" >"$T/build.log" 2>&1; then
	ok "the packages build ($(($(date +%s) - start)) s)"
else
	tail -80 "$T/build.log"
	not_ok "the packages build (log above)"
	suite_end
	exit
fi
check "the build ran the regression tests on a preloaded throwaway cluster" \
	grep -q '^### End 15 installcheck ###$' "$T/build.log"
for p in "${PKGS[@]}"; do
	check "package $p built, version $DISTVERSION (else add an entry to src/packaging/debian/changelog)" \
		test "$(dpkg-deb -f "$T"/debs/"${p}"_*.deb Version 2>/dev/null)" = "$DISTVERSION"
done
check "four packages to install, debug symbols apart in debug/" \
	test "$(find "$T/debs" -maxdepth 1 -name '*.deb' | wc -l) $(find "$T/debs/debug" -name '*-dbgsym_*.deb' | wc -l)" = "4 3"

contents() { dpkg-deb -c "$T"/debs/"$1"_*.deb | awk '{print $6 ($7 ? " " $7 " " $8 : "")}' | sed 's|^\./|/|'; }
ext=$(contents postgresql-15-pyrate)
missing=$(for f in /usr/lib/postgresql/15/lib/pyrate.so /usr/share/postgresql/15/extension/pyrate.control \
	$(ls sql/pyrate--*.sql | sed 's|^sql/|/usr/share/postgresql/15/extension/|'); do
	grep -qx "$f" <<<"$ext" || echo "$f"
done)
check "postgresql-15-pyrate holds pyrate.so, the control file and every script${missing:+; not: $missing}" \
	test -z "$missing"
check "postgresql-15-pyrate holds nothing of the client" \
	bash -c '! grep -E "^/usr/(bin|include|local|lib/'"$MA"')/" <<<"$1"' _ "$ext"
check "postgresql-15-pyrate depends on postgresql-15" \
	grep -q 'postgresql-15' <<<"$(dpkg-deb -f "$T"/debs/postgresql-15-pyrate_*.deb Depends)"
check "libpyrate0 holds libpyrate.so.0" grep -q "^/usr/lib/$MA/libpyrate.so.0 -> " <<<"$(contents libpyrate0)"
dev=$(contents libpyrate-dev)
check "libpyrate-dev holds pyrate.h, libpyrate.so, libpyrate.a and pyrate.pc" \
	bash -c 'grep -qx /usr/include/pyrate.h <<<"$1" && grep -q "^/usr/lib/$2/libpyrate.so -> libpyrate.so.0$" <<<"$1" &&
		grep -qx /usr/lib/$2/libpyrate.a <<<"$1" && grep -qx /usr/lib/$2/pkgconfig/pyrate.pc <<<"$1"' _ "$dev" "$MA"
check "pyrate-cli holds /usr/bin/pyrate and its man page" \
	bash -c 'grep -qx /usr/bin/pyrate <<<"$1" && grep -qx /usr/share/man/man1/pyrate.1.gz <<<"$1"' _ "$(contents pyrate-cli)"
# every file the packages hold, to check after the purge
for p in "${PKGS[@]}"; do contents "$p"; done | awk '{print $1}' | grep -v '/$' | sort -u >"$T/files"

# --- the tree's own build out, the packages in
echo "== taking the tree's own installation out for the test"
tree_removed=1
make -s uninstall >/dev/null 2>&1
make -s -C src/client uninstall >/dev/null 2>&1
ldconfig
check "no pyrate left outside the packages before installing them" \
	bash -c '! ls /usr/lib/postgresql/15/lib/pyrate.so /usr/local/bin/pyrate /usr/local/lib/libpyrate.so* 2>/dev/null | grep -q .'
echo "== apt-get install ./*.deb"
if (cd "$T/debs" && DEBIAN_FRONTEND=noninteractive "${APT[@]}" install ./*.deb) >"$T/install.log" 2>&1; then
	ok "apt-get install ./*.deb"
else
	cat "$T/install.log"
	not_ok "apt-get install ./*.deb"
fi
for p in "${PKGS[@]}"; do
	check "$p installed" bash -c "dpkg-query -W -f='\${Status}' $p | grep -q 'install ok installed'"
done
check "libpyrate's SONAME is libpyrate.so.0" \
	bash -c "objdump -p /usr/lib/$MA/libpyrate.so.0 | grep -Eq 'SONAME +libpyrate\.so\.0$'"
check "man pyrate finds the page, and it renders without warnings" \
	bash -c 'test "$(man -w pyrate)" = /usr/share/man/man1/pyrate.1.gz &&
		test -z "$(LC_ALL=C.UTF-8 MANROFFSEQ= MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z /usr/share/man/man1/pyrate.1.gz 2>&1 >/dev/null)"'

# --- a fresh Debian cluster that preloads pyrate
echo "== pg_createcluster 15 $CLUSTER -p $PORT"
if pg_createcluster 15 "$CLUSTER" -p $PORT --locale C.UTF-8 \
	-o "shared_preload_libraries=pyrate" -o "listen_addresses=" -o fsync=off >"$T/cluster.log" 2>&1 &&
	pg_ctlcluster 15 "$CLUSTER" start >>"$T/cluster.log" 2>&1; then
	ok "cluster 15/$CLUSTER created and started on port $PORT"
else
	cat "$T/cluster.log" /var/log/postgresql/postgresql-15-$CLUSTER.log 2>/dev/null
	not_ok "cluster 15/$CLUSTER created and started on port $PORT"
	suite_end
	exit
fi
sql() { as_postgres psql -X -At -q "$DSN" "$@"; }
check "CREATE EXTENSION pyrate (version $EXTVERSION)" \
	test "$(sql -c "CREATE EXTENSION pyrate" -c "SELECT extversion FROM pg_extension WHERE extname = 'pyrate'")" = "$EXTVERSION"
for i in $(seq 50); do
	[ "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'")" = 1 ] && break
	sleep 0.1
done
check "the preloaded library runs its leaker" \
	test "$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pyrate leaker'")" = 1

# make installcheck of the tree against it, as the postgres user
mkdir -p "$T/tree"
cp -a Makefile pyrate.control sql expected src "$T/tree/"
cp -a src/packaging/debian "$T/tree/debian"
chown -R postgres: "$T/tree"
as_postgres env PGHOST=$SOCK PGPORT=$PORT PGUSER=postgres \
	make -C "$T/tree" installcheck PG_CONFIG="$PG_BINDIR/pg_config" >"$T/installcheck.log" 2>&1
rc=$?
cat "$T/installcheck.log"
[ $rc = 0 ] || cat "$T/tree/regression.diffs" 2>/dev/null
summary=$(grep -Eo 'All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed' "$T/installcheck.log")
check "make installcheck against the packaged extension (${summary:-no summary}; $(make -s print-regress 2>/dev/null | wc -w) in REGRESS)" \
	test $rc = 0 -a "$summary" = "All $(make -s print-regress 2>/dev/null | wc -w) tests passed"

# The autopkgtest (debian/tests), as Debian's CI runs it on installed
# packages: pg_buildext installcheck on a throwaway preloaded cluster.
(cd "$T/tree" && PGPORT=$VENV_PORT debian/tests/installcheck) >"$T/autopkgtest.log" 2>&1
rc=$?
[ $rc = 0 ] || tail -60 "$T/autopkgtest.log"
check "the autopkgtest (debian/tests/installcheck) passes on the installed packages" test $rc = 0

# --- the packaged pyrate command against the cluster
cli() {
	local want=$1 desc=$2
	shift 2
	as_postgres /usr/bin/pyrate "$@" --dsn "$DSN" >"$T/cli.out" 2>"$T/cli.err"
	local rc=$?
	if [ $rc = "$want" ]; then ok "pyrate $desc: exit $rc"; else
		cat "$T/cli.out" "$T/cli.err"
		not_ok "pyrate $desc: exit $rc, wanted $want"
	fi
}
check "/usr/bin/pyrate --version" grep -qx 'pyrate [0-9.]*' <<<"$(/usr/bin/pyrate --version)"
cli 2 "acquire with no definition is an error" acquire pkg:cli
check "... said on stderr with the server's SQLSTATE" grep -q '^pyrate: .*(SQLSTATE 42704)$' "$T/cli.err"
cli 0 "define 'pkg:*' 1/h" define 'pkg:*' 1/h
cli 0 "acquire pkg:cli (admitted)" acquire pkg:cli
cli 1 "acquire pkg:cli again (rejected)" acquire pkg:cli
check "... printing the retry-after and the rate" grep -Eq '^rejected: retry after [0-9]+ ms \(rate 1/1h\)$' "$T/cli.out"
cli 1 "acquire --wait --timeout 0.2 (times out)" acquire pkg:cli --wait --timeout 0.2
cli 0 "status pkg:cli" status pkg:cli
check "... shows the bucket, its definition and one unit" test "$(awk -F '\t' '
	NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	$col["name"] == "pkg:cli" { print $col["pattern"], $col["storage"], $col["rates"], $col["count"] }' "$T/cli.out")" = "pkg:* table {1/1h} 1"
cli 0 "leak" leak
cli 2 "an unknown option" acquire pkg:cli --bogus

# --- a program built with pkg-config against libpyrate-dev
cat >"$T/app.c" <<'EOF'
#include <pyrate.h>
#include <stdio.h>

/* Two acquires on one bucket through the packaged extension: 1 then 0. */
int
main(int argc, char **argv)
{
	pyrate_pg_options o = {argv[1], NULL, NULL, 0, PYRATE_PG_FASTPATH};
	pyrate_error e = {0};
	pyrate_decision d1, d2;
	pyrate_bucket *b;

	if (argc != 2 || !(b = pyrate_pg_bucket_new(&o, &e)) ||
		pyrate_pg_acquire(b, "pkg:app", 1, PYRATE_NOW, &d1, &e) != PYRATE_OK ||
		pyrate_pg_acquire(b, "pkg:app", 1, PYRATE_NOW, &d2, &e) != PYRATE_OK)
	{
		fprintf(stderr, "app: %s\n", e.message);
		return 2;
	}
	printf("%s %d %d\n", PYRATE_VERSION, d1.acquired, d2.acquired);
	pyrate_close(b);
	return 0;
}
EOF
# Only what the packages installed: /usr/local hidden, for a make install
# there (another user's, even meanwhile) would shadow the package's header,
# library and pyrate.pc.
packaged_only() { unshare -m sh -c 'mount -t tmpfs none /usr/local && exec "$@"' sh "$@"; }
pc=$(packaged_only pkg-config --path pyrate)
check "pkg-config reads $pc: prefix /usr, libdir /usr/lib/$MA" \
	test "$pc $(packaged_only pkg-config --variable=prefix pyrate) $(packaged_only pkg-config --variable=libdir pyrate)" = \
	"/usr/lib/$MA/pkgconfig/pyrate.pc /usr /usr/lib/$MA"
check "cc app.c \$(pkg-config --cflags --libs pyrate)" \
	packaged_only sh -c 'cc -Wall -Werror -o "$1" "$2" $(pkg-config --cflags --libs pyrate)' sh "$T/app" "$T/app.c"
lib=$(packaged_only ldd "$T/app" | awk '$1 == "libpyrate.so.0" { print $3 }')
check "the program loads $lib, the package's" grep -Eqx "(/usr)?/lib/$MA/libpyrate\.so\.0" <<<"$lib"
out=$(packaged_only runuser -u postgres -- "$T/app" "$DSN" 2>&1)
check "the program takes a permit, then is refused ($out)" grep -Eq '^[0-9.]+ 1 0$' <<<"$out"

# --- cluster gone, packages purged, nothing left
pg_dropcluster --stop 15 "$CLUSTER"
check "pg_dropcluster --stop: 15/$CLUSTER is gone" \
	bash -c "! pg_lsclusters -h | grep -q ' $CLUSTER ' && ! test -e $SOCK/.s.PGSQL.$PORT"
if "${APT[@]}" purge "${PKGS[@]}" >"$T/purge.log" 2>&1; then ok "apt-get purge"; else
	cat "$T/purge.log"
	not_ok "apt-get purge"
fi
for p in "${PKGS[@]}"; do
	check "$p purged (dpkg -L knows it no more)" bash -c "! dpkg -L $p >/dev/null 2>&1"
done
check "/usr/lib/postgresql/15/lib/pyrate.so is gone" test ! -e /usr/lib/postgresql/15/lib/pyrate.so
left=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done <"$T/files")
check "none of the packages' $(wc -l <"$T/files") files remains${left:+: $left}" test -z "$left"

# --- the tree's own build back, for later suites and everyone else
pyrate_build
tree_restored=1
check "make install restored the tree's build (pyrate.so, /usr/local/bin/pyrate)" \
	test -f /usr/lib/postgresql/15/lib/pyrate.so -a -x /usr/local/bin/pyrate
check "no cluster made or left behind (Debian's main cluster included)" \
	test "$(pg_lsclusters -h | awk '{print $1 "/" $2}' | sort)" = "$clusters_before"
suite_end
