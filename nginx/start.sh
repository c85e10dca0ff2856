#!/bin/bash
# Entrypoint of nginx-proxy: writes the source allow-list, then runs nginx.
#
# Admitted: loopback, the networks this container is attached to when it
# starts (its compose networks: on one host the local site's services, and
# the bridge gateway through which the published port's traffic arrives from
# this host), and PROXY_ALLOW. Everything else is refused at the TCP
# accept, before a byte of MySQL is spoken.
#
#   PROXY_ALLOW="203.0.113.7, 198.51.100.0/24"   # remote sites' addresses
#
# A remote site arrives from its public address (Docker's port forwarding
# keeps the source address), so that is what PROXY_ALLOW lists.
#
# It also writes where connections go (/run/telemetria/upstream.conf, read by
# nginx.conf): `db-master:3306`, or in cluster mode (GALERA_NODES set, see
# compose/cluster.yml) the Galera node that cluster-watch.sh picks, which
# it then keeps up to date beside nginx.
set -euo pipefail

ALLOW_FILE=/run/telemetria/allow.conf

die() { printf 'nginx-proxy: ERROR: %s\n' "$*" >&2; exit 1; }

# Connected IPv4 subnets from the kernel's routing table (no iproute2 in the
# official image): the rows without a gateway, hexadecimal little-endian.
attached_subnets() {
	local iface destination gateway flags refcnt use metric mask rest
	while read -r iface destination gateway flags refcnt use metric mask rest; do
		[ "$iface" != Iface ] && [ "$gateway" = 00000000 ] && [ "$destination" != 00000000 ] || continue
		printf '%s/%s\n' "$(hex_to_ip "$destination")" "$(mask_bits "$mask")"
	done </proc/net/route
}

hex_to_ip() {
	local hex=$1
	printf '%d.%d.%d.%d' "0x${hex:6:2}" "0x${hex:4:2}" "0x${hex:2:2}" "0x${hex:0:2}"
}

mask_bits() {
	local value=$((0x$1)) bits=0
	while [ "$value" -gt 0 ]; do
		bits=$((bits + (value & 1)))
		value=$((value >> 1))
	done
	printf '%d' "$bits"
}

valid_source() {
	local ipv4='([0-9]{1,3}\.){3}[0-9]{1,3}'
	[[ $1 =~ ^${ipv4}(/([0-9]|[12][0-9]|3[0-2]))?$ ]] ||
		[[ $1 =~ ^[0-9A-Fa-f:]+:[0-9A-Fa-f:]*(/([0-9]{1,2}|1[01][0-9]|12[0-8]))?$ ]]
}

mkdir -p "$(dirname "$ALLOW_FILE")"
{
	echo "# Written by nginx/start.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ)."
	echo "allow 127.0.0.1;"
	attached_subnets | sed 's/^/allow /; s/$/;  # attached network/'
	IFS=', ' read -ra extra <<<"${PROXY_ALLOW:-}"
	for source in "${extra[@]}"; do
		[ -n "$source" ] || continue
		valid_source "$source" || die "PROXY_ALLOW: '$source' is not an IPv4/IPv6 address or CIDR range (e.g. 203.0.113.7 or 198.51.100.0/24)"
		echo "allow $source;  # PROXY_ALLOW"
	done
	echo "deny all;"
} >"$ALLOW_FILE.new"
mv "$ALLOW_FILE.new" "$ALLOW_FILE"
printf 'nginx-proxy: admitting %s\n' "$(grep -o '^allow [^;]*' "$ALLOW_FILE" | cut -d' ' -f2 | paste -sd' ')" >&2

UPSTREAM_FILE=/run/telemetria/upstream.conf
if [ -n "${GALERA_NODES:-}" ]; then
	# No writer until the watcher has seen one: refuse rather than guess.
	bash "$(dirname "${BASH_SOURCE[0]}")/cluster-watch.sh" render >"$UPSTREAM_FILE"
	: >/run/telemetria/writer
	bash "$(dirname "${BASH_SOURCE[0]}")/cluster-watch.sh" &
else
	echo 'map $server_port $db_upstream { default db-master:3306; }' >"$UPSTREAM_FILE"
fi

exec "$@"
