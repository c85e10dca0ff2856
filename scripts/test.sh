#!/usr/bin/env bash
# The test command: every test of the project, from a fresh machine.
#
#   scripts/test.sh
#
# 1. installs what is missing (Docker engine + compose, MariaDB server and
#    client, debootstrap, chromium), 2. builds the workspace once in release,
#    3. builds the images from the Debian mirror, 4. runs the unit and
#    integration tests against a throwaway MariaDB on 127.0.0.1, and the
#    end-to-end tests against compose stacks. Everything it starts, it stops.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_TAG=test
. scripts/lib.sh
started=$(date +%s)

ensure_docker
ensure_command mariadbd mariadb-server
ensure_command mariadb mariadb-client
ensure_command debootstrap debootstrap
ensure_command chromium chromium
ensure_command tcpdump tcpdump

# One compile for everything: `cargo test --no-run` builds the test targets
# and, with them, the release binaries the images are made of. Building the
# binaries separately (`cargo build`) would resolve other features and
# compile much of the dependency tree a second time.
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
log "building the workspace and its tests (release)"
cargo test --release --locked --workspace --no-run

work=$(mktemp -d /tmp/telemetria-test.XXXXXX)
cleanup() {
    scripts/test-mariadb.sh stop "$work/mariadb" || true
    rm -rf "$work"
}
trap cleanup EXIT

log "starting a throwaway MariaDB for the integration tests"
export "$(scripts/test-mariadb.sh start "$work/mariadb")"

log "images"
# WITH_TEST_BASES: the two-site tests' WAN router base too, built alongside
# the stack's bases (test-only, see docker/wan-router.Dockerfile); --cluster:
# the Galera node image, for the cluster scenarios (tests/chaos/cluster.rs).
WITH_TEST_BASES=1 scripts/build-images.sh --cluster
release=${CARGO_TARGET_DIR:-target}/release
mkdir -p dist && cp "$release/open-meteo-stub" dist/
docker build -q -f docker/service.Dockerfile --target dist \
    --build-arg BIN=open-meteo-stub --build-arg RUNTIME_BASE="${RUNTIME_BASE_IMAGE:-telemetria/runtime-base:latest}" \
    -t telemetria/open-meteo-stub:latest . >/dev/null
# The two-site tests' WAN router: our latency relay on the router base.
cp "$release/wan-relay" dist/
docker build -q -f docker/wan-router.Dockerfile -t telemetria/wan-router:latest . >/dev/null

# Unit and integration tests (a fresh database per test on the throwaway
# server), then the end-to-end and resilience tests against compose stacks
# (services/stack-tests; they start one stack at a time).
log "tests"
cargo test --release --locked --workspace --no-fail-fast

log "all tests passed in $(( $(date +%s) - started )) s"
