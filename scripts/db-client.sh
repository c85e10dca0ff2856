#!/usr/bin/env bash
# A MariaDB/MySQL client on the stack's database, through the proxy's
# published port, over TLS verified against the stack's own authority. The
# password is read from the stack and handed to the client through a pipe:
# never on a command line, never in a file.
#
#   scripts/db-client.sh [ACCOUNT] [client arguments...]
#   scripts/db-client.sh panel -e 'SELECT * FROM mediciones ORDER BY id DESC LIMIT 15'
#
# ACCOUNT: panel (default, read only), backup (read only), sensor (insert
# only), migrate (the schema's owner). root cannot log in through the proxy.
# Environment: COMPOSE_PROJECT_NAME (telemetria), COMPOSE_FILE (see
# scripts/lib.sh), PROXY_PORT (33060), DB_CLIENT_HOST (127.0.0.1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=db-client
. "$ROOT/scripts/lib.sh"

account=panel
case "${1:-}" in
-h | --help) sed -n '2,14p' "$0"; exit 0 ;;
panel | backup | sensor | migrate) account=$1; shift ;;
root) die "root can only log in from inside the database container: $(basename "$0") migrate, or docker-compose exec db-master mariadb -uroot -p" ;;
esac

client=$(command -v mariadb || command -v mysql) ||
    die "no mariadb or mysql client here: apt-get install mariadb-client"
password=$(stack_compose exec -T db-master cat "/run/credentials/${account}_password") ||
    die "cannot read the $account password from db-master: is the stack running (COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-telemetria})?"
ca=$(mktemp)
trap 'rm -f "$ca"' EXIT
stack_compose exec -T db-master cat /run/credentials/ca.pem >"$ca"

# MariaDB's client and MySQL's spell "verify the server" differently.
if "$client" --version | grep -qi mariadb; then
    verify=(--ssl --ssl-verify-server-cert)
else
    verify=(--ssl-mode=VERIFY_IDENTITY)
fi
"$client" --defaults-extra-file=<(printf '[client]\nuser=%s\npassword=%s\n' "$account" "$password") \
    "${verify[@]}" --ssl-ca="$ca" -h "${DB_CLIENT_HOST:-127.0.0.1}" -P "${PROXY_PORT:-33060}" telemetria "$@"
