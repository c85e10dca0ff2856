# Shared by the run and test scripts: installing what a fresh Debian machine
# lacks. Sourced, not executed.

log() { printf '[%s] %s\n' "${LOG_TAG:-telemetria}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export DEBIAN_FRONTEND=noninteractive
# The engine here is 20.10 without buildx: the legacy builder in both docker
# and docker-compose, so they behave the same.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null || log "apt-get update failed; trying the cached lists"
        apt_updated=1
    fi
    log "installing $* from the Debian mirror"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A Docker engine and docker-compose, installed and started if missing.
ensure_docker() {
    if ! command -v docker >/dev/null; then
        apt_install docker.io
    fi
    if ! command -v docker-compose >/dev/null; then
        apt_install docker-compose
    fi
    if ! docker info >/dev/null 2>&1; then
        log "no Docker engine answering: starting dockerd"
        command -v dockerd >/dev/null || apt_install docker.io
        nohup dockerd >/var/log/telemetria-dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 1
        done
        docker info >/dev/null 2>&1 || die "dockerd did not start; see /var/log/telemetria-dockerd.log"
    fi
}

ensure_command() { # COMMAND PACKAGE...
    local command=$1
    shift
    command -v "$command" >/dev/null || apt_install "$@"
}

# Release binaries of the workspace: built once, used by the images and the
# tests alike.
build_binaries() {
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) to build the services"
    log "building the workspace (release)"
    cargo build --release --locked --workspace --bins
}

# docker-compose on this checkout's stack: the project COMPOSE_PROJECT_NAME
# (default telemetria) from the files in COMPOSE_FILE (default: the whole
# stack on one host; the cloud host alone: COMPOSE_FILE=compose/cloud.yml),
# with the offline images when scripts/build-images.sh has named them.
stack_compose() {
    local env_file=()
    [ ! -f "$ROOT/compose/.env.offline" ] || env_file=(--env-file "$ROOT/compose/.env.offline")
    (
        cd "$ROOT"
        export COMPOSE_FILE=${COMPOSE_FILE:-compose/cloud.yml:compose/local.yml:compose/one-host.yml}
        docker-compose "${env_file[@]}" -p "${COMPOSE_PROJECT_NAME:-telemetria}" "$@"
    )
}
