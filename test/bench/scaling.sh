#!/usr/bin/env bash
# Scaling curves of an acquire, both engines, on one server:
#   items in the window   10^2 .. 10^6 (one backend, one key, 5000 admitted puts)
#   keys                  1 .. 10^6 (2 clients, random keys, admitted)
#   concurrent clients    1, 2, 4, 8, 16, 32 on one hot key and on distinct keys
# Writes TSV data and PNG plots (gnuplot) to $PYRATE_BENCH_OUT (default
# test/bench/results) and prints one "RESULT|..." line per curve's end points.
#
#   bash test/bench/scaling.sh          (PYRATE_BENCH_SECONDS per point, default 3)
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
pyrate_trap

SECS=${PYRATE_BENCH_SECONDS:-3}
OUT=${PYRATE_BENCH_OUT:-test/bench/results}
MAX_KEYS=${PYRATE_BENCH_MAX_KEYS:-1000000}
mkdir -p "$OUT"
PORT=55461
bench_start scaling $PORT "pyrate.leak_interval = 0" \
	"pyrate.memory_size = '1GB'" "synchronous_commit = off" "shared_buffers = '512MB'" \
	"max_wal_size = '4GB'" "max_connections = 100" "max_locks_per_transaction = 256"
sql -c "CREATE EXTENSION pyrate" \
	-c "SELECT pyrate_define('table_*', '{2000000000/1w}', 'table')" \
	-c "SELECT pyrate_define('memory_*', '{2000000000/1w}', 'memory')" \
	-c "SELECT pyrate_define('hot_*', '{2000000000/1w}', 'table')" \
	-c "SELECT pyrate_define('mhot_*', '{2000000000/1w}', 'memory')"
work=$(pyrate_tmp)/scaling
# (pgbench reads :name as a variable even inside a string literal, so the
# bucket names here have no ':')
mkdir -p "$work"

tps() { # script clients
	local t
	t=$(pgbench_tps -n -M prepared -c "$2" -j "$(($2 < 2 ? 1 : 2))" -T "$SECS" -f "$1" "$DSN")
	echo "${t%.*}"
}
us() { awk -v t="$1" 'BEGIN { printf "%.2f", (t > 0 ? 1e6 / t : 0) }'; }

# ---- items in the window ------------------------------------------------
echo "# items	table_us	memory_us" >"$OUT/items.tsv"
for n in 100 1000 10000 100000 1000000; do
	row="$n"
	for engine in table memory; do
		b="${engine}_items$n"
		sql -c "SELECT count(*) FROM generate_series(1, $n) WHERE pyrate_put('$b')" >/dev/null
		[ "$engine" = table ] && sql -c "VACUUM ANALYZE pyrate_item_data"
		echo "SELECT pyrate_put('$b');" >"$work/items.pgbench"
		# a fixed number of puts, so the window grows by at most 5000
		t=$(pgbench_tps -n -M prepared -c 1 -t 5000 -f "$work/items.pgbench" "$DSN")
		t=${t%.*}
		row="$row	$(us "$t")"
	done
	echo "$row" | tee -a "$OUT/items.tsv"
done

# ---- number of keys --------------------------------------------------------
echo "# keys	table_us	memory_us" >"$OUT/keys.tsv"
made=0
for k in 1 100 10000 100000 1000000; do
	[ "$k" -gt "$MAX_KEYS" ] && break
	# keys that exist already hold one item each
	# in batches: each new table bucket holds a lock to the end of its transaction
	for ((lo = made + 1; lo <= k; lo += 10000)); do
		sql -c "SELECT count(*) FROM generate_series($lo, $((lo + 9999 < k ? lo + 9999 : k))) g
		        WHERE pyrate_put('table_k' || g) AND pyrate_put('memory_k' || g)" >/dev/null
	done
	made=$k
	row="$k"
	for engine in table memory; do
		printf '%s\n' "\\set k random(1, $k)" "SELECT pyrate_put('${engine}_k' || :k);" >"$work/keys.pgbench"
		t=$(tps "$work/keys.pgbench" 2)
		row="$row	$(us "$t")"
	done
	echo "$row" | tee -a "$OUT/keys.tsv"
done

# ---- concurrent clients -------------------------------------------------------
echo "# clients	table_hot_tps	table_distinct_tps	memory_hot_tps	memory_distinct_tps" >"$OUT/clients.tsv"
printf '%s\n' "SELECT pyrate_put('hot_one');" >"$work/table-hot.pgbench"
printf '%s\n' "\\set k random(1, 100000)" "SELECT pyrate_put('hot_k' || :k);" >"$work/table-distinct.pgbench"
printf '%s\n' "SELECT pyrate_put('mhot_one');" >"$work/memory-hot.pgbench"
printf '%s\n' "\\set k random(1, 100000)" "SELECT pyrate_put('mhot_k' || :k);" >"$work/memory-distinct.pgbench"
for c in 1 2 4 8 16 32; do
	row="$c"
	for s in table-hot table-distinct memory-hot memory-distinct; do
		row="$row	$(tps "$work/$s.pgbench" "$c")"
	done
	echo "$row" | tee -a "$OUT/clients.tsv"
done

# ---- plots ----------------------------------------------------------------
if command -v gnuplot >/dev/null; then
	gnuplot <<GP
set terminal pngcairo size 800,500 font ",10" noenhanced
set datafile separator "\t"
set grid
set key left top
set logscale x
set output "$OUT/items.png"
set title "Cost of an admitted put vs items in the window (one backend, prepared)"
set xlabel "items in the window"
set ylabel "microseconds per put"
set yrange [0:*]
plot "$OUT/items.tsv" using 1:2 with linespoints title "table engine", \
     "" using 1:3 with linespoints title "memory engine"
set output "$OUT/keys.png"
set title "Cost of an admitted put vs number of keys (2 clients, prepared)"
set xlabel "keys"
plot "$OUT/keys.tsv" using 1:2 with linespoints title "table engine", \
     "" using 1:3 with linespoints title "memory engine"
set output "$OUT/clients.png"
set title "Puts per second vs concurrent clients (2 cores)"
set xlabel "clients"
set ylabel "puts per second"
set logscale x 2
plot "$OUT/clients.tsv" using 1:2 with linespoints title "table, one hot key", \
     "" using 1:3 with linespoints title "table, distinct keys", \
     "" using 1:4 with linespoints title "memory, one hot key", \
     "" using 1:5 with linespoints title "memory, distinct keys"
GP
fi

first_last() { # file column -> "first last"
	awk -v c="$2" '!/^#/ { if (f == "") f = $c; l = $c } END { print f, l }' "$1"
}
read -r a b < <(first_last "$OUT/items.tsv" 2)
echo "RESULT|table put, 10^6 items in the window vs 10^2 (cost, us)|$b|$a|$(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.2f", a / b }')|<= 2"
read -r a b < <(first_last "$OUT/items.tsv" 3)
echo "RESULT|memory put, 10^6 items in the window vs 10^2 (cost, us)|$b|$a|$(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.2f", a / b }')|<= 2"
read -r a b < <(first_last "$OUT/keys.tsv" 2)
echo "RESULT|table put, most keys vs 1 key (cost, us)|$b|$a|$(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.2f", a / b }')|flat"
read -r a b < <(first_last "$OUT/keys.tsv" 3)
echo "RESULT|memory put, most keys vs 1 key (cost, us)|$b|$a|$(awk -v a="$b" -v b="$a" 'BEGIN { printf "%.2f", a / b }')|flat"
