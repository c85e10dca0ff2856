#!/usr/bin/env bash
# Carries a local site's credentials from the cloud host to the local host:
# for each service (sensor, backup, panel) its own password and the cloud's
# certificate authority (ca.pem), as the cloud's credentials job made them.
#
#   cloud host:  scripts/site-credentials.sh export > site.tar
#   (carry site.tar over a channel you trust: scp, a USB stick)
#   local host:  sudo scripts/site-credentials.sh import site.tar
#                DB_HOST=cloud.example.org docker-compose -f compose/local.yml up -d
#
# import writes SITE_CREDENTIALS_DIR (default compose/site-credentials/),
# each file owned by the services' UID 10001, mode 0400 (ca.pem 0444): run
# it as root so the ownership holds. The archive holds three passwords:
# delete it once imported.
# Environment (export): COMPOSE_PROJECT_NAME (telemetria), COMPOSE_FILE.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=site-credentials
. "$ROOT/scripts/lib.sh"

case "${1:-}" in
export)
    [ ! -t 1 ] || die "export writes a tar archive to standard output: redirect it (> site.tar)"
    # The credentials job's image and volumes; `run` starts nothing else.
    stack_compose run --rm -T --entrypoint tar credentials -C /site -cf - sensor backup panel
    ;;
import)
    archive=${2:-}
    [ -f "$archive" ] || die "usage: $0 import site.tar (made by '$0 export' on the cloud host)"
    [ "$(id -u)" = 0 ] || die "run import as root (sudo): the files must belong to UID 10001"
    target=${SITE_CREDENTIALS_DIR:-$ROOT/compose/site-credentials}
    for service in sensor backup panel; do
        tar -tf "$archive" "$service/password" "$service/ca.pem" >/dev/null 2>&1 ||
            die "$archive has no $service/password or $service/ca.pem: not an export of this script"
    done
    mkdir -p "$target"
    chmod 0755 "$target"
    tar -C "$target" --same-owner --same-permissions -xf "$archive" sensor backup panel
    log "imported into $target; restart the local site's services to use them"
    ;;
*) sed -n '2,16p' "$0"; exit 2 ;;
esac
