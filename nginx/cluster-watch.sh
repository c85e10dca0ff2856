#!/bin/bash
# Cluster mode of nginx-proxy (compose/cluster.yml): runs beside nginx in the
# proxy's container and decides which Galera node takes the connections.
#
# Open-source nginx has no active health checks, and its `server` lines in
# an upstream are resolved once, when the configuration is loaded (`resolve`
# is not in this version). So every GALERA_WATCH_INTERVAL seconds (1) this
# loop asks each node of GALERA_NODES, by its name through Docker's DNS, for
# its status line (port 9200, docker/mariadb/galera-status). A node may take
# traffic only when it answers `running Synced Primary ON`. The writer is
# kept while it may; otherwise the first node of GALERA_NODES that may
# becomes the writer; if none may, connections are refused at once (the
# sites see an outage and spool) rather than sent to a node that would
# refuse or stall them. One writer at a time: Galera would accept writes on
# every node, but one avoids certification conflicts.
#
# The upstream is written with the writer's address, into
# /run/telemetria/upstream.conf (inside the container: not a bind-mounted
# file, whose inode a rewrite would not replace), and nginx reloads only when
# that file changes: a new writer, or the writer at a new address (a
# recreated container). Connections still open to the previous writer are
# closed by the old workers within worker_shutdown_timeout (nginx.conf).
# /run/telemetria/writer names the writer (empty: none), for the healthcheck.
#
#   cluster-watch.sh render NAME ADDRESS   print the upstream for a writer
#   cluster-watch.sh render                ... for no writer
#   cluster-watch.sh                        the loop (start.sh runs it)
set -uo pipefail

UPSTREAM=/run/telemetria/upstream.conf
WRITER_FILE=/run/telemetria/writer
STATUS_PORT=${GALERA_STATUS_PORT:-9200}
INTERVAL=${GALERA_WATCH_INTERVAL:-1}

log() { printf 'cluster-watch: %s\n' "$*" >&2; }

render() { # [NAME ADDRESS]
	echo "# Written by nginx/cluster-watch.sh; the one Galera node that takes traffic."
	echo "upstream galera_writer {"
	if [ -n "${1:-}" ]; then
		printf '    server %s:3306;  # %s: Synced, Primary, ready\n' "$2" "$1"
	else
		echo "    # No node is Synced and in the primary component: refuse at once."
		echo "    server 127.0.0.1:9;"
	fi
	echo "}"
	echo 'map $server_port $db_upstream { default galera_writer; }'
}

# The node's status line; empty when it does not answer within a second.
node_status() { # ADDRESS
	timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1" && head -n 1 <&3' "$1" "$STATUS_PORT" 2>/dev/null
}

if [ "${1:-}" = render ]; then
	shift
	render "$@"
	exit 0
fi

IFS=',' read -ra NODES <<<"${GALERA_NODES// /}"
[ "${#NODES[@]}" -gt 0 ] || { log "GALERA_NODES is empty"; exit 1; }

writer=
reload_pending=0
declare -A address status seen misses
log "watching ${NODES[*]} every ${INTERVAL} s"
while :; do
	healthy=()
	for node in "${NODES[@]}"; do
		address[$node]=$(getent hosts "$node" | awk '{ print $1; exit }')
		if [ -n "${address[$node]}" ]; then
			status[$node]=$(node_status "${address[$node]}")
		else
			status[$node]="no address"
		fi
		# Log state changes, not the moving seqno.
		summary="${address[$node]:-?} ${status[$node]:-no answer}"
		summary=$(awk '$2 == "running" { $6 = ""; } { print }' <<<"$summary")
		if [ "${seen[$node]:-}" != "$summary" ]; then
			log "$node: $summary"
			seen[$node]=$summary
		fi
		if [[ ${status[$node]} == "running Synced Primary ON "* ]]; then
			healthy+=("$node")
			misses[$node]=0
		elif [ "$node" = "$writer" ] && [ -n "${address[$node]}" ] && [ -z "${status[$node]}" ] &&
			[ "${misses[$node]:-0}" -lt 1 ]; then
			# The writer did not answer in time, but still has an address: on
			# a loaded host its status query can be slow. One miss is
			# forgiven; a second, or a node without an address (gone, or cut
			# off its network), or any other state, moves the writer.
			healthy+=("$node")
			misses[$node]=$((${misses[$node]:-0} + 1))
		fi
	done

	next=
	for node in "${healthy[@]}"; do
		[ "$node" != "$writer" ] || next=$writer
	done
	[ -n "$next" ] || next=${healthy[0]:-}

	if [ -n "$next" ]; then
		wanted=$(render "$next" "${address[$next]}")
	else
		wanted=$(render)
	fi
	if [ "$wanted" != "$(cat "$UPSTREAM" 2>/dev/null)" ]; then
		printf '%s\n' "$wanted" >"$UPSTREAM.new"
		mv -f "$UPSTREAM.new" "$UPSTREAM"
		log "writer: ${next:-none} ${next:+at ${address[$next]}} (was ${writer:-none})"
		reload_pending=1
	fi
	writer=$next
	printf '%s\n' "$writer" >"$WRITER_FILE.new" && mv -f "$WRITER_FILE.new" "$WRITER_FILE"
	# nginx may not be up yet at the first turns: try again until it is.
	if [ "$reload_pending" = 1 ] && [ -s /run/nginx.pid ] && nginx -s reload 2>/dev/null; then
		reload_pending=0
	fi
	sleep "$INTERVAL"
done
