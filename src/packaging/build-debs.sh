#!/usr/bin/env bash
# build-debs.sh — pyrate's Debian packages from this tree.
#
#   src/packaging/build-debs.sh [OUTDIR]
#
# Copies the tree (tracked and new files, not build products) to a temporary
# directory, puts src/packaging/debian there as debian/, runs
# `dpkg-buildpackage -us -uc -b` and moves the .deb files to OUTDIR (default:
# a new /tmp/pyrate-debs.XXXXXX; debug symbols in OUTDIR/debug), then prints
# the paths of the four packages.  The build runs the regression tests on a
# throwaway cluster (pg_virtualenv; PGPORT picks its port);
# DEB_BUILD_OPTIONS=nocheck skips them.  Build dependencies (Debian 12):
#   apt-get install build-essential debhelper postgresql-server-dev-all \
#       postgresql-15 libpq-dev libhiredis-dev libsqlite3-dev
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$(mktemp -d /tmp/pyrate-debs.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d /tmp/pyrate-debbuild.XXXXXX)
trap 'rm -rf "$work"' EXIT
# readable by all: the build's test server (the postgres user) loads the
# extension from the package being built
chmod 755 "$work"
src="$work/pyrate"
mkdir "$src"

# The files of the tree: git's list when this is a checkout (tracked files as
# they are now, plus new files that are not ignored), else everything but
# build products.
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf -) | tar -xf - -C "$src"
else
	tar -C "$top" --exclude=.git -cf - . | tar -xf - -C "$src"
	make -C "$src" -s clean >/dev/null 2>&1 || true
fi
cp -a "$src/src/packaging/debian" "$src/debian"

(cd "$src" && dpkg-buildpackage -us -uc -b)

# The packages to install in OUTDIR, their debug symbols in OUTDIR/debug (so
# that `apt-get install ./*.deb` there installs just the four).
shopt -s nullglob
dbgsym=("$work"/*-dbgsym_*.deb)
if [ ${#dbgsym[@]} -gt 0 ]; then
	mkdir -p "$out/debug"
	mv "${dbgsym[@]}" "$out/debug/"
fi
debs=("$work"/*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "build-debs.sh: no .deb built" >&2; exit 1; }
mv "${debs[@]}" "$out"/
for d in "${debs[@]}"; do echo "$out/$(basename "$d")"; done
