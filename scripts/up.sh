#!/usr/bin/env bash
# The run command: starts the whole stack on this host and waits until it is
# healthy, installing or building whatever is missing.
#
#   scripts/up.sh              # build what is missing, start, wait, print URLs
#   scripts/up.sh --rebuild    # rebuild binaries and images first
#   scripts/up.sh --cluster    # the database as a 3-node Galera cluster
#                              # (compose/cluster.yml; may be combined)
#
# Environment (all optional): SENSOR_SOURCE (open-meteo | simulated; default:
# open-meteo if api.open-meteo.com answers, else simulated, said loudly),
# PANEL_PORT (5000), PROXY_PORT (33060), PANEL_BIND / PROXY_BIND (0.0.0.0),
# BACKUP_INTERVAL_SECS (600), COMPOSE_PROJECT_NAME (telemetria),
# FRONTEND_CPUS (2, lowered to the host's cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_TAG=up
. scripts/lib.sh
started=$(date +%s)

rebuild=0
cluster=0
for option in "$@"; do
    case "$option" in
    --rebuild) rebuild=1 ;;
    --cluster) cluster=1 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown option $option (see --help)" ;;
    esac
done

ensure_docker

images=(telemetria/sensor-simulator:latest telemetria/backup-worker:latest telemetria/frontend:latest
    telemetria/mariadb:10.11 telemetria/nginx:latest)
build_options=()
if [ "$cluster" = 1 ]; then
    images+=(telemetria/mariadb-galera:10.11)
    build_options+=(--cluster)
fi
missing=0
for image in "${images[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing=1
done
if [ "$rebuild" = 1 ] || [ "$missing" = 1 ] || [ ! -f compose/.env.offline ]; then
    ensure_command debootstrap debootstrap
    build_binaries
    scripts/build-images.sh "${build_options[@]}"
fi

# Passwords, the certificate authority and the server certificate are made
# by the stack itself on first start (the `credentials` job, see
# docs/security.md), into volumes: nothing to prepare here.
mkdir -p volumes/backups

if [ -z "${SENSOR_SOURCE:-}" ]; then
    if command -v curl >/dev/null && curl -fsS -m 5 -o /dev/null \
        'https://api.open-meteo.com/v1/forecast?latitude=4.71&longitude=-74.07&current=temperature_2m'; then
        export SENSOR_SOURCE=open-meteo
    else
        export SENSOR_SOURCE=simulated
        log "WARNING: api.open-meteo.com is not reachable from here: the sensor starts with"
        log "         SENSOR_SOURCE=simulated. Its rows are stored and shown as 'simulated'."
        log "         Set SENSOR_SOURCE=open-meteo to insist on the real API."
    fi
fi

cores=$(nproc)
export FRONTEND_CPUS=${FRONTEND_CPUS:-$((cores < 2 ? cores : 2))}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-telemetria}
compose=(docker-compose --env-file compose/.env.offline -p "$COMPOSE_PROJECT_NAME"
    -f compose/cloud.yml -f compose/local.yml -f compose/one-host.yml)
[ "$cluster" = 0 ] || compose+=(-f compose/cluster.yml)

log "starting project $COMPOSE_PROJECT_NAME (sensor source: $SENSOR_SOURCE)"
"${compose[@]}" up -d --no-build

log "waiting until every service is healthy"
deadline=$(($(date +%s) + 300))
while :; do
    waiting=()
    for id in $("${compose[@]}" ps -q); do
        state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
        case "$state" in
        *" running healthy" | *db-migrate*" exited "* | *credentials*" exited "* | *backups-init*" exited "*) ;;
        *) waiting+=("$state") ;;
        esac
    done
    [ "${#waiting[@]}" = 0 ] && break
    if [ "$(date +%s)" -gt "$deadline" ]; then
        "${compose[@]}" ps >&2
        die "not healthy after 5 minutes: ${waiting[*]}"
    fi
    sleep 1
done
# The one-shot jobs must have succeeded, not merely exited.
for job in credentials backups-init db-migrate; do
    id=$("${compose[@]}" ps -q "$job")
    [ -z "$id" ] || [ "$(docker inspect -f '{{.State.ExitCode}}' "$id")" = 0 ] ||
        die "$job failed: ${compose[*]} logs $job"
done

log "healthy in $(($(date +%s) - started)) s"
cat <<MSG

  Panel:     http://localhost:${PANEL_PORT:-5000}/
  Database:  scripts/db-client.sh panel     (TLS, password read from the stack, never on a command line)
  Backups:   volumes/backups/
  Logs:      ${compose[*]} logs -f
  Stop:      ${compose[*]} down        (add -v to delete the data)

MSG
