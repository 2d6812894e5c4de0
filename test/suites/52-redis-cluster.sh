#!/usr/bin/env bash
# 52-redis-cluster — libpyrate's Redis bucket on a Redis Cluster of three
# masters with a replica each (six redis-server processes, as the postgres
# user, on six free loopback ports, 26701-26706 if free, each with its bus
# port 10 above): the conformance replay with its key on
# each master; routing, ASK, MOVED and NOSCRIPT per node; then, 16 clients
# hammering a hot key and 32 others under valgrind, a reshard of 2000 slots,
# a clean failover and two unclean ones (what they lost is measured and
# printed), and last the fail modes once no node serves a key and once the
# cluster is down.  Every server is stopped by its pid file.
set -u
cd "$(dirname "$0")/../.."
. test/lib.sh
. test/client/valgrind.sh
pyrate_trap
pyrate_install_deps

TMP=$(pyrate_tmp)
BIN=$TMP/bin
TRACE=${PYRATE_TRACE:-$PWD/test/conformance/traces/sliding_window_log.tsv}
# Six client ports and six cluster-bus ports, all free and all below the
# kernel's ephemeral range: Redis's default bus port (port + 10000) would be
# 36701-36706, inside that range, where any outgoing connection of the run
# may hold it and the node fails to bind (seen once in CI).
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }
PORTS=()
for base in 26701 26721 26741 26761 26781 25701 25721 25741; do
	PORTS=()
	for i in 0 1 2 3 4 5; do
		port_free $((base + i)) && port_free $((base + 10 + i)) || continue 2
		PORTS+=($((base + i)))
	done
	break
done
NODE_TIMEOUT=5000
mkdir -p "$BIN"

echo "== building libpyrate, the replay tool and the test"
if client_build "$TMP/build.log" test_redis_cluster; then
	ok "cluster test builds without warnings"
else
	cat "$TMP/build.log"
	not_ok "cluster test builds without warnings"
	suite_end
	exit 1
fi

echo "== the cluster"
node_dir() { echo "$TMP/cluster/$1"; }
node_start() {
	local port=$1 dir
	dir=$(node_dir "$port")
	mkdir -p "$dir"
	chown -R postgres: "$dir"
	as_postgres redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
		--pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no \
		--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-port $((port + 10)) \
		--cluster-node-timeout "$NODE_TIMEOUT" --enable-debug-command local >/dev/null
	# pyrate_cleanup stops it by its pid file
	PYRATE_REDIS_DIRS+=("$dir:$port")
	for _ in $(seq 100); do
		timeout 30 redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "# redis-server on port $port did not answer; its log:"
	tail -n 20 "$dir/redis.log" 2>/dev/null | sed 's/^/# /'
	return 1
}
# stop.sh PORT [SIGNAL] — a node by its pid file, waiting (10 s at most) for it to go
cat >"$TMP/stop.sh" <<SH
pidf=$TMP/cluster/\$1/redis.pid
[ -f "\$pidf" ] || exit 0
pid=\$(cat "\$pidf")
kill "-\${2:-TERM}" "\$pid" 2>/dev/null
for _ in \$(seq 100); do
	kill -0 "\$pid" 2>/dev/null || break
	sleep 0.1
done
rm -f "\$pidf"
SH
node_stop() { bash "$TMP/stop.sh" "$@"; }
# SEED: a live node the helpers ask (every redis-cli call has a timeout)
SEED=${PORTS[0]}
nodes_of() { timeout 30 redis-cli -p "$SEED" CLUSTER NODES | tr -d '\r'; }
node_id() { timeout 30 redis-cli -p "$1" CLUSTER MYID | tr -d '\r'; }
# the port of the master serving slot $1
slot_owner() {
	nodes_of | awk -v s="$1" '$3 ~ /master/ && $3 !~ /fail/ {
		for (i = 9; i <= NF; i++) {
			if ($i ~ /^\[/) continue
			n = split($i, r, "-"); if (n == 1) r[2] = r[1]
			if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) { split($2, a, "[:@]"); print a[2] }
		}
	}'
}
# the port of a live replica of the master at port $1
replica_of() {
	nodes_of | awk -v m="$(node_id "$1")" '$3 ~ /slave/ && $3 !~ /fail/ && $4 == m { split($2, a, "[:@]"); print a[2]; exit }'
}
# the first slot range "FROM-TO" the master at port $1 serves
first_range() {
	nodes_of | awk -v id="$(node_id "$1")" '$1 == id { for (i = 9; i <= NF; i++) if ($i !~ /^\[/) { print $i; exit } }'
}
# cluster_ok: every live node says cluster_state:ok and knows every slot (60 s at most)
cluster_ok() {
	local p deadline=$((SECONDS + 60))
	while [ $SECONDS -lt $deadline ]; do
		local good=1
		for p in "$@"; do
			timeout 30 redis-cli -p "$p" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok' || good=0
		done
		[ $good = 1 ] && return 0
		sleep 0.2
	done
	return 1
}

started=1
for p in "${PORTS[@]}"; do node_start "$p" || started=0; done
check "six cluster-enabled redis-server processes start (ports ${PORTS[*]}, bus +10)" test $started = 1
hosts=()
for p in "${PORTS[@]}"; do hosts+=("127.0.0.1:$p"); done
timeout 120 redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$TMP/create.log" 2>&1 ||
	cat "$TMP/create.log"
check "the cluster is up: cluster_state:ok on every node" cluster_ok "${PORTS[@]}"
# the replicas follow their masters a moment later (60 s at most)
for _ in $(seq 300); do
	[ "$(nodes_of | awk '$3 ~ /slave/' | wc -l)" = 3 ] && break
	sleep 0.2
done
M1=$(slot_owner 0)
M2=$(slot_owner 8000)
M3=$(slot_owner 16383)
R1=$(replica_of "$M1")
R2=$(replica_of "$M2")
R3=$(replica_of "$M3")
echo "# masters $M1 $M2 $M3, their replicas $R1 $R2 $R3"
# M2 lives to the end (a replica after its failover): the node everything asks
SEED=$M2
if [ -z "$M1$M2$M3" ] || [ -z "$R1" ] || [ -z "$R2" ] || [ -z "$R3" ]; then
	nodes_of
	not_ok "three masters with a replica each"
	suite_end
	exit 1
fi

echo "== conformance replay, its key on each master in turn"
# The replay's key is pyrate:conformance:<its pid>.  A subshell whose pid puts
# that key on the master wanted execs the replay (keeping the pid); another
# exits 3 and the next one tries (60 at most: each lands on a given master a
# third of the time).  The replay starts from another node than the key's.
replay_on() {
	local master=$1 via=$2 try rc
	for try in $(seq 60); do
		(
			slot=$(timeout 30 redis-cli -p "$SEED" CLUSTER KEYSLOT "pyrate:conformance:$BASHPID" | tr -d '\r')
			[ "$(slot_owner "$slot")" = "$master" ] || exit 3
			echo "key pyrate:conformance:$BASHPID, slot $slot, on $master; first node asked: $via"
			exec test/conformance/replay --bucket redis --redis "127.0.0.1:$via" "$TRACE"
		) >"$TMP/replay.out" 2>&1
		rc=$?
		[ $rc = 3 ] || break
	done
	head -1 "$TMP/replay.out"
	tail -n +2 "$TMP/replay.out" | tail -3
	if [ $rc = 0 ] && grep -qE '^[0-9]+ passed, 0 failed' "$TMP/replay.out"; then
		ok "replay: key on master $master, through $via"
	else
		not_ok "replay: key on master $master, through $via (after $try tries)"
	fi
}
replay_on "$M1" "$M2"
replay_on "$M2" "$R3"
replay_on "$M3" "$M1"

echo "== C tests under valgrind"
# run_test DESCRIPTION ARGS... — test_redis_cluster ARGS under valgrind
run_test() {
	local desc=$1
	shift
	valgrind_test "$TMP/test.out" "$desc" "$BIN/test_redis_cluster" "$@"
}
run_test "routing, redirections, NOSCRIPT, one key per name" "$SEED" basics
check "the cluster is sound after the slot moved by hand" cluster_ok "${PORTS[@]}"

# waits (30 s at most) for the node at port $1 to say role $2
cat >"$TMP/role.sh" <<'SH'
for _ in $(seq 300); do
	[ "$(timeout 30 redis-cli -p "$1" ROLE 2>/dev/null | head -1 | tr -d '\r')" = "$2" ] && exit 0
	sleep 0.1
done
echo "node $1 never became $2" >&2
exit 1
SH

echo "== 16 clients while 2000 slots move from $M1 to $M3"
cat >"$TMP/reshard.sh" <<SH
timeout 300 redis-cli --cluster reshard 127.0.0.1:$M1 --cluster-from $(node_id "$M1") \
	--cluster-to $(node_id "$M3") --cluster-slots 2000 --cluster-yes >"$TMP/reshard.log" 2>&1
SH
run_test "16 clients across a reshard" "$SEED" load pyrate:reshard: 0-1999 "bash $TMP/reshard.sh"
check "slot 0 is on $M3 now" test "$(slot_owner 0)" = "$M3"
check "the cluster is sound after the reshard" cluster_ok "${PORTS[@]}"

echo "== 16 clients while $M2 fails over to its replica $R2 (CLUSTER FAILOVER)"
cat >"$TMP/failover.sh" <<SH
timeout 30 redis-cli -p $R2 CLUSTER FAILOVER | grep -q OK && bash $TMP/role.sh $R2 master && bash $TMP/role.sh $M2 slave
SH
run_test "16 clients across a clean failover" "$SEED" load pyrate:failover: "$(first_range "$M2")" \
	"bash $TMP/failover.sh"
check "$R2 is the master of slot 8000 now" test "$(slot_owner 8000)" = "$R2"
check "the cluster is sound after the failover" cluster_ok "${PORTS[@]}"

echo "== 16 clients while $M3 sleeps (DEBUG SLEEP 4) and its replica $R3 takes over"
# The master answers nobody for 4 s; its replica takes its slots without
# its consent (TAKEOVER); then the old master wakes up, answers the puts
# that waited for it and only later learns it is a replica: what it stored
# meanwhile is lost when it follows the new master.
cat >"$TMP/sleep-takeover.sh" <<SH
timeout 30 redis-cli -p $M3 DEBUG SLEEP 4 >/dev/null &
sleep 1
timeout 30 redis-cli -p $R3 CLUSTER FAILOVER TAKEOVER | grep -q OK && bash $TMP/role.sh $R3 master || exit 1
wait
bash $TMP/role.sh $M3 slave
SH
run_test "16 clients across a takeover from a sleeping master" "$SEED" load pyrate:sleep: \
	"$(first_range "$M3")" "bash $TMP/sleep-takeover.sh" lossy
grep '^# measured' "$TMP/test.out" | sed 's/^# measured/# DEBUG SLEEP + TAKEOVER, measured/'
check "the cluster is sound after the takeover" cluster_ok "$M1" "$R1" "$M2" "$R2" "$M3" "$R3"

echo "== 16 clients while $M1 is killed (SIGKILL) and its replica $R1 takes over"
cat >"$TMP/kill-takeover.sh" <<SH
bash $TMP/stop.sh $M1 KILL
timeout 30 redis-cli -p $R1 CLUSTER FAILOVER TAKEOVER | grep -q OK && bash $TMP/role.sh $R1 master
SH
run_test "16 clients across a takeover from a killed master" "$SEED" load pyrate:kill: \
	"$(first_range "$M1")" "bash $TMP/kill-takeover.sh" lossy
grep '^# measured' "$TMP/test.out" | sed 's/^# measured/# SIGKILL + TAKEOVER, measured/'
check "the cluster is sound after the takeover" cluster_ok "$R1" "$M2" "$R2" "$M3" "$R3"

echo "== no node for a key, then CLUSTERDOWN: the fail modes"
# R1 serves M1's old slots alone now: stopping it leaves them to nobody
run_test "a master gone, then the cluster down" "$SEED" down "$R1" "bash $TMP/stop.sh $R1"

for p in "${PORTS[@]}"; do node_stop "$p"; done
suite_end
