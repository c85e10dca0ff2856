#!/usr/bin/env bash
# Rotates one secret of a running stack without losing a reading.
#
#   scripts/rotate.sh NAME
#
# NAME is an account (sensor, backup, panel, migrate, root), `server` (the
# database server's key and certificate) or `ca` (a new authority; clients
# trust the old and the new one until every certificate is from the new).
#
# An account: a new password is written to the credentials volumes, the
# database account is switched to it (ALTER USER, as root inside the
# database container), then the service that uses it is restarted to read
# it. Between the switch and the restart the service's new connections are
# refused; the sensor spools its readings meanwhile and replays them after
# the restart, so none is lost. `server`: a new certificate, loaded by the
# running server (FLUSH SSL / ALTER INSTANCE RELOAD TLS), no restart. `ca`:
# also restarts the three services so they read the new ca.pem.
#
# On the cloud host of a two-site setup (COMPOSE_FILE=compose/cloud.yml) the
# local site's services are elsewhere: the script says what to carry there.
# Environment: COMPOSE_PROJECT_NAME, COMPOSE_FILE (see scripts/lib.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=rotate
. "$ROOT/scripts/lib.sh"

name=${1:-}
case "$name" in
sensor) service=sensor-simulator ;;
backup) service=backup-worker ;;
panel) service=frontend ;;
migrate | root | server) service= ;;
ca) service="sensor-simulator backup-worker frontend" ;;
-h | --help | "") sed -n '2,21p' "$0"; [ -n "$name" ]; exit ;;
*) die "unknown name '$name' (sensor, backup, panel, migrate, root, server, ca)" ;;
esac

log "writing the new $name credential"
stack_compose run --rm -T credentials rotate "$name"

# SQL runs as root through the container's socket. The passwords reach the
# client through pipes (printf is a shell builtin), never a command line.
# root's own rotation logs in with the previous password.
apply_sql() { # SQL_TEMPLATE (%s = the new password, quoted)
    stack_compose exec -T db-master bash -c '
        set -euo pipefail
        cd /run/credentials
        login=root_password
        [ "$1" != root ] || login=root_password.previous
        client=$(command -v mariadb || command -v mysql)
        new=$(cat "$1_password" 2>/dev/null || true)
        # Generated passwords are [A-Za-z0-9]: nothing to quote.
        [[ $new =~ ^[A-Za-z0-9]*$ ]] || { echo "unexpected characters in $1_password" >&2; exit 1; }
        printf "$2" "$new" | "$client" --defaults-extra-file=<(printf "[client]\nuser=root\npassword=%s\n" "$(cat "$login")") \
            --protocol=socket -uroot
    ' apply "$name" "$1"
}

case "$name" in
root) apply_sql "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';" ;;
sensor | backup | panel | migrate) apply_sql "ALTER USER '$name'@'%%' IDENTIFIED BY '%s';" ;;
server | ca)
    # MariaDB: FLUSH SSL; MySQL 8.0: ALTER INSTANCE RELOAD TLS.
    apply_sql "FLUSH SSL;" 2>/dev/null || apply_sql "ALTER INSTANCE RELOAD TLS;"
    ;;
esac
log "the database uses the new $name credential"

running=$(stack_compose ps --services --filter status=running 2>/dev/null || true)
for one in $service; do
    if grep -qx "$one" <<<"$running"; then
        log "restarting $one to read it"
        stack_compose restart "$one" >/dev/null
    else
        log "$one does not run here: export the site credentials (scripts/site-credentials.sh export), import them on the local site and restart $one there"
    fi
done
log "done"
