#!/bin/bash
# The cloud site's credentials: strong random passwords for every database
# account, a certificate authority and the database server's certificate.
# Run by the one-shot `credentials` service before the database starts (the
# database image brings bash and openssl: ours and mysql:8.0 alike).
#
#   credentials.sh             create what is missing, refresh the copies
#   credentials.sh rotate NAME new value for NAME: root | migrate | sensor |
#                              backup | panel (a password), server (the
#                              server's key and certificate) or ca (a new
#                              authority, trusted next to the old one)
#
# Nothing secret is printed. Layout (each a named volume, see cloud.yml):
#   /credentials/db/        for db-master (UID 999): every password (account
#                           creation on first start), ca.pem, server-*.pem
#   /credentials/authority/ the CA's private key: mounted nowhere else
#   /credentials/migrate/   for db-migrate (UID 10001): password, ca.pem
#   /site/{sensor,backup,panel}/  for the local site's services (UID 10001):
#                           password, ca.pem. On one host they are the
#                           services' own volumes; for a remote local site,
#                           scripts/site-credentials.sh exports them.
#
# Environment: TLS_PUBLIC_NAMES, comma-separated DNS names and IP addresses
# by which remote sites reach the proxy (they go into the certificate next to
# nginx-proxy, db-master, localhost, host.docker.internal and 127.0.0.1).
set -euo pipefail
umask 077

DB=/credentials/db
AUTHORITY=/credentials/authority
MIGRATE=/credentials/migrate
SITE=/site
SITE_SERVICES=(sensor backup panel)
ACCOUNTS=(root migrate "${SITE_SERVICES[@]}")
DB_UID=999
SERVICE_UID=10001

log() { printf 'credentials: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# 32 characters of [A-Za-z0-9]: about 190 bits, and safe in any config file.
new_password() {
	local password=
	while [ "${#password}" -lt 32 ]; do
		password+=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
	done
	printf '%s' "${password:0:32}"
}

# install_file SOURCE TARGET OWNER MODE: an atomic copy, so a service that
# starts meanwhile reads the old file or the new one, never half of one.
install_file() {
	local source=$1 target=$2 owner=$3 mode=$4
	local temporary
	temporary=$(mktemp "$(dirname "$target")/.new.XXXXXX")
	cat "$source" >"$temporary"
	chown "$owner:$owner" "$temporary"
	chmod "$mode" "$temporary"
	mv -f "$temporary" "$target"
}

write_password() { # NAME
	local file=$DB/$1_password temporary
	temporary=$(mktemp "$DB/.new.XXXXXX")
	new_password >"$temporary"
	chown "$DB_UID:$DB_UID" "$temporary"
	chmod 0400 "$temporary"
	mv -f "$temporary" "$file"
}

# The names the server certificate must carry: in-network names, loopback,
# then TLS_PUBLIC_NAMES.
subject_alt_names() {
	local names=(DNS:nginx-proxy DNS:db-master DNS:localhost DNS:host.docker.internal IP:127.0.0.1) name
	IFS=',' read -ra public <<<"${TLS_PUBLIC_NAMES:-}"
	for name in "${public[@]}"; do
		name=${name//[[:space:]]/}
		[ -n "$name" ] || continue
		if [[ $name =~ ^[0-9]+(\.[0-9]+){3}$ || $name == *:* ]]; then
			names+=("IP:$name")
		elif [[ $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
			names+=("DNS:$name")
		else
			die "TLS_PUBLIC_NAMES: '$name' is neither a DNS name nor an IP address"
		fi
	done
	local IFS=,
	printf '%s' "${names[*]}"
}

new_authority() {
	log "creating a certificate authority (EC P-256, 10 years)"
	openssl ecparam -name prime256v1 -genkey -noout -out "$AUTHORITY/ca-key.pem" 2>/dev/null
	chmod 0400 "$AUTHORITY/ca-key.pem"
	openssl req -x509 -new -key "$AUTHORITY/ca-key.pem" -sha256 -days 3650 \
		-subj "/CN=telemetria database CA $(date -u +%Y-%m-%d)" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign \
		-out "$AUTHORITY/ca-cert.pem" 2>/dev/null
}

new_server_certificate() { # SANS
	local sans=$1 work
	log "issuing the server certificate for $sans"
	work=$(mktemp -d)
	openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
	openssl req -new -key "$work/key.pem" -subj "/CN=nginx-proxy" -out "$work/request.pem" 2>/dev/null
	printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
		"$sans" >"$work/extensions"
	openssl x509 -req -in "$work/request.pem" -CA "$AUTHORITY/ca-cert.pem" -CAkey "$AUTHORITY/ca-key.pem" \
		-CAcreateserial -CAserial "$AUTHORITY/ca-serial" -days 825 -sha256 \
		-extfile "$work/extensions" -out "$work/cert.pem" 2>/dev/null
	install_file "$work/key.pem" "$DB/server-key.pem" "$DB_UID" 0400
	install_file "$work/cert.pem" "$DB/server-cert.pem" "$DB_UID" 0444
	printf '%s' "$sans" >"$AUTHORITY/server-names"
	rm -rf "$work"
}

# ca.pem is what clients trust: the current authority, then any earlier one
# kept by `rotate ca` until every certificate it signed is gone.
publish_authority() {
	local bundle
	bundle=$(mktemp)
	cat "$AUTHORITY/ca-cert.pem" >"$bundle"
	[ ! -f "$AUTHORITY/previous-ca-cert.pem" ] || cat "$AUTHORITY/previous-ca-cert.pem" >>"$bundle"
	install_file "$bundle" "$DB/ca.pem" "$DB_UID" 0444
	rm -f "$bundle"
}

# Each service's copy: its own password and the authority, nothing else.
refresh_copies() {
	copy_for "$MIGRATE" migrate
	local service
	for service in "${SITE_SERVICES[@]}"; do
		copy_for "$SITE/$service" "$service"
	done
}

copy_for() { # DIRECTORY ACCOUNT
	local directory=$1 account=$2
	mkdir -p "$directory"
	chown "$SERVICE_UID:$SERVICE_UID" "$directory"
	chmod 0500 "$directory"
	install_file "$DB/${account}_password" "$directory/password" "$SERVICE_UID" 0400
	install_file "$DB/ca.pem" "$directory/ca.pem" "$SERVICE_UID" 0444
}

ensure_all() {
	local name sans
	for name in "${ACCOUNTS[@]}"; do
		if [ ! -s "$DB/${name}_password" ]; then
			log "generating the $name password"
			write_password "$name"
		fi
	done
	[ -s "$AUTHORITY/ca-key.pem" ] || new_authority
	publish_authority
	sans=$(subject_alt_names)
	if [ ! -s "$DB/server-cert.pem" ] || [ "$(cat "$AUTHORITY/server-names" 2>/dev/null)" != "$sans" ] ||
		! openssl verify -CAfile "$DB/ca.pem" "$DB/server-cert.pem" >/dev/null 2>&1 ||
		! openssl x509 -checkend $((30 * 86400)) -noout -in "$DB/server-cert.pem" >/dev/null; then
		new_server_certificate "$sans"
	fi
	refresh_copies
}

rotate() { # NAME
	case "$1" in
	root | migrate | sensor | backup | panel)
		[ -s "$DB/$1_password" ] || die "no $1 password yet: start the stack once first"
		# The previous one logs in to set the new one (root's rotation).
		install_file "$DB/$1_password" "$DB/$1_password.previous" "$DB_UID" 0400
		write_password "$1"
		log "new $1 password written; apply it with scripts/rotate.sh (ALTER USER), then restart the service"
		;;
	server)
		new_server_certificate "$(subject_alt_names)"
		;;
	ca)
		# Clients trust both authorities until they have the new bundle;
		# the server then switches to a certificate from the new one.
		cp "$AUTHORITY/ca-cert.pem" "$AUTHORITY/previous-ca-cert.pem"
		new_authority
		publish_authority
		new_server_certificate "$(subject_alt_names)"
		;;
	*) die "rotate: unknown name '$1' (root, migrate, sensor, backup, panel, server, ca)" ;;
	esac
	refresh_copies
}

[ "$(id -u)" = 0 ] || die "must run as root (it hands each file to its service's UID)"
mkdir -p "$DB" "$AUTHORITY" "$MIGRATE" "$SITE"
chmod 0700 "$AUTHORITY"
chown "$DB_UID:$DB_UID" "$DB"
chmod 0500 "$DB"

case "${1:-}" in
"") ensure_all ;;
rotate) [ -n "${2:-}" ] || die "usage: credentials.sh rotate NAME"; ensure_all; rotate "$2" ;;
*) die "usage: credentials.sh [rotate NAME]" ;;
esac
log "ready: CA $(openssl x509 -noout -fingerprint -sha256 -in "$AUTHORITY/ca-cert.pem" | cut -d= -f2), server names $(cat "$AUTHORITY/server-names")"
