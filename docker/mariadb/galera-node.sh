#!/bin/bash
# Entrypoint of a Galera node (telemetria/mariadb-galera, compose/cluster.yml).
#
# Decides at every start, without a hand step, how this node enters the
# cluster:
#   - a peer's server answers (whatever its state): JOIN it, from this
#     node's position (after a crash grastate.dat has lost it: `mariadbd
#     --wsrep-recover` reads it from InnoDB). Galera then catches this node
#     up by IST from the peers' gcache when it can, or by SST (rsync) when
#     this datadir is empty or too far behind; and when the
#     peer is non-primary because the others crashed, the returning members
#     of the last primary component form it again (pc.recovery).
#   - no peer answers: the whole cluster is down (first start, `down` then
#     `up`, a crash of every node). Each node reads its own position (from
#     grastate.dat, or `mariadbd --wsrep-recover` after a crash), publishes
#     it on its status port, and waits until every node has published. The
#     most advanced one (highest seqno; then the one Galera marked
#     safe_to_bootstrap; then the first in GALERA_NODES) bootstraps a new
#     primary component (`--wsrep-new-cluster`, after setting
#     safe_to_bootstrap itself), and the others join it. Every node computes
#     the same choice from the same published positions. On the very first
#     start every datadir is empty: the first node initialises it (the
#     image's docker-entrypoint.sh: root, the database, the accounts from
#     /docker-entrypoint-initdb.d) and bootstraps; the others receive all of
#     it by SST. So accounts are created once, for the cluster.
#   A node that is missing (never started, or its host lost) is waited for:
#   bootstrapping without it could fork the data if it was the most
#   advanced. docs/operations.md says how to start without it.
#
# Status port (GALERA_STATUS_PORT, 9200, backend network only): one line per
# connection, from galera-status: `running STATE CLUSTER_STATUS READY
# LAST_COMMITTED SIZE` while the server answers, else this script's phase
# (`waiting HAS_DATA UUID SEQNO SAFE`, `recovering`, `initializing`,
# `bootstrapping`, `joining`). The proxy's watcher reads it too.
#
# Environment: GALERA_NODE (this node's name on the backend network),
# GALERA_NODES (every node, comma-separated, the same list on each node),
# plus the image's MYSQL_* variables (used only by the first initialisation).
set -eo pipefail
shopt -s nullglob

DATADIR=/var/lib/mysql
PHASE_FILE=/run/mysqld/galera-phase
STATUS_PORT=${GALERA_STATUS_PORT:-9200}

log() { printf '%s [Note] [galera-node] %s\n' "$(date --rfc-3339=seconds)" "$*" >&2; }
die() { printf '%s [ERROR] [galera-node] %s\n' "$(date --rfc-3339=seconds)" "$*" >&2; exit 1; }

[ -n "${GALERA_NODE:-}" ] || die "GALERA_NODE (this node's name) is not set"
[ -n "${GALERA_NODES:-}" ] || die "GALERA_NODES (every node, comma-separated) is not set"
IFS=',' read -ra NODES <<<"${GALERA_NODES// /}"
[[ ",${GALERA_NODES// /}," == *",$GALERA_NODE,"* ]] || die "GALERA_NODE=$GALERA_NODE is not in GALERA_NODES=$GALERA_NODES"

# `command: [--option, ...]` as with the official images.
if [ "${1:0:1}" = - ]; then
	set -- mariadbd "$@"
fi
[ "$1" = mariadbd ] || exec "$@"

if [ "$(id -u)" = 0 ]; then
	# Fresh named volumes are root-owned on some engines.
	mkdir -p "$DATADIR" /run/mysqld
	find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' + 2>/dev/null || true
	exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
fi

set_phase() {
	printf '%s\n' "$*" >"$PHASE_FILE.new"
	mv -f "$PHASE_FILE.new" "$PHASE_FILE"
}

# What a peer says on its status port; empty when it does not answer.
peer_status() {
	timeout 2 socat -T 2 - "TCP:$1:$STATUS_PORT,connect-timeout=1" </dev/null 2>/dev/null | head -n 1 || true
}

# This node's position: HAS_DATA UUID SEQNO SAFE_TO_BOOTSTRAP.
own_position() {
	if [ ! -d "$DATADIR/mysql" ]; then
		echo "0 - -1 0"
		return
	fi
	local uuid=- seqno=-1 safe=0 state=$DATADIR/grastate.dat
	if [ -f "$state" ]; then
		uuid=$(awk '$1 == "uuid:" { print $2 }' "$state")
		seqno=$(awk '$1 == "seqno:" { print $2 }' "$state")
		safe=$(awk '$1 == "safe_to_bootstrap:" { print $2 }' "$state")
	fi
	if [ "${seqno:--1}" = -1 ]; then
		# A crash leaves seqno -1: InnoDB knows the last committed write-set.
		set_phase recovering
		local recovered
		# (The cluster address is required even here, by the rsync SST method.)
		"$@" "${cluster_args[@]}" --wsrep-recover >/run/mysqld/wsrep-recover.log 2>&1 ||
			log "mariadbd --wsrep-recover failed: $(tail -n 3 /run/mysqld/wsrep-recover.log | tr '\n' ' ')"
		recovered=$(sed -n 's/.*WSREP: Recovered position: *\([0-9a-f-]*\):\(-\{0,1\}[0-9]*\).*/\1 \2/p' \
			/run/mysqld/wsrep-recover.log | tail -n 1)
		if [ -n "$recovered" ]; then
			uuid=${recovered% *}
			seqno=${recovered#* }
		fi
		log "recovered position: $uuid:$seqno"
	fi
	echo "1 ${uuid:--} ${seqno:--1} ${safe:-0}"
}

# Prints the node that bootstraps, given "NODE HAS_DATA UUID SEQNO SAFE"
# lines of every node: data first, then the highest seqno, then
# safe_to_bootstrap, then the order of GALERA_NODES.
elect() {
	local index=0 node
	declare -A order
	for node in "${NODES[@]}"; do order[$node]=$index; index=$((index + 1)); done
	while read -r node has_data uuid seqno safe; do
		printf '%s %s %s %s %s\n' "$has_data" "$seqno" "$safe" "$((100 - order[$node]))" "$node"
	done | sort -k1,1nr -k2,2nr -k3,3nr -k4,4nr | head -n 1 | cut -d' ' -f5
}

start_status_port() {
	socat "TCP-LISTEN:$STATUS_PORT,reuseaddr,fork" SYSTEM:"galera-status" &
}

cluster_args=(--wsrep-cluster-address="gcomm://${GALERA_NODES// /}" --wsrep-node-name="$GALERA_NODE")
# A donor is Donor/Desynced while it serves a transfer, and the proxy then
# moves its connections elsewhere. It prefers the first nodes of
# GALERA_NODES as writer, so donors are asked for from the last ones
# (the trailing comma: any other node if those cannot).
donors=
for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
	[ "${NODES[i]}" = "$GALERA_NODE" ] || donors+="${NODES[i]},"
done
cluster_args+=(--wsrep-sst-donor="$donors")
server=("$@")

# After a crash grastate.dat says seqno -1: without the recovered position a
# joiner could not ask for IST (it would get the whole datadir by SST), and a
# bootstrapping node would start a new history (new cluster UUID, seqno 0),
# so that every other node would need SST too.
start_position() {
	local has_data uuid seqno
	read -r has_data uuid seqno _ <<<"$position"
	if [ "$has_data" = 1 ] && [ "$uuid" != - ] && [ "$seqno" != -1 ]; then
		echo "--wsrep-start-position=$uuid:$seqno"
	fi
}

join() { # PEER STATUS
	set_phase joining
	local start
	start=$(start_position)
	log "peer $1 is running ($2): joining from ${start:-no position} (IST when a peer's gcache still holds what this node lacks, else SST)"
	exec "${server[@]}" "${cluster_args[@]}" ${start:+"$start"}
}

set_phase starting
start_status_port

peers=()
for node in "${NODES[@]}"; do
	[ "$node" = "$GALERA_NODE" ] || peers+=("$node")
done

position=$(own_position "${server[@]}")
for peer in "${peers[@]}"; do
	status=$(peer_status "$peer")
	[[ $status != running* ]] || join "$peer" "$status"
done

set_phase "waiting $position"
log "no peer is running; this node's position (has data, uuid, seqno, safe_to_bootstrap): $position; waiting for every node's"

waited=0
while :; do
	positions=("$GALERA_NODE $position")
	missing=()
	for peer in "${peers[@]}"; do
		status=$(peer_status "$peer")
		case "$status" in
		running*) join "$peer" "$status" ;;
		waiting\ *) positions+=("$peer ${status#waiting }") ;;
		*) missing+=("$peer${status:+ ($status)}") ;;
		esac
	done
	if [ "${#missing[@]}" = 0 ]; then
		chosen=$(printf '%s\n' "${positions[@]}" | elect)
		if [ "$chosen" = "$GALERA_NODE" ]; then
			log "every node published its position (${positions[*]}): this node is the most advanced and bootstraps the cluster"
			set_phase bootstrapping
			if [ "${position%% *}" = 0 ]; then
				# First start of the cluster: initialise (accounts, database) once.
				exec docker-entrypoint.sh "${server[@]}" "${cluster_args[@]}" --wsrep-new-cluster
			fi
			# What Galera asks an operator to edit by hand after a full stop.
			sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$DATADIR/grastate.dat" 2>/dev/null || true
			start=$(start_position)
			exec "${server[@]}" "${cluster_args[@]}" --wsrep-new-cluster ${start:+"$start"}
		fi
		[ $((waited % 10)) != 0 ] || log "every node published its position: $chosen bootstraps; waiting for it to run"
	elif [ $((waited % 10)) = 0 ]; then
		log "waiting for the position of: ${missing[*]}"
	fi
	sleep 1
	waited=$((waited + 1))
done
