#!/usr/bin/env bash
# One command for the benchmarks (docs/performance.md):
#   services/benchmarks/run.sh [spool|backup|chain|panel|all] [extra arguments for the benchmark]
# Starts a throwaway MariaDB, builds what is measured, runs, stops everything
# it started. Output goes to stdout and to services/benchmarks/results/<name>-<time>.md.
set -euo pipefail

which=${1:-all}
shift || true
case "$which" in spool | backup | chain | panel | all) ;; *)
    echo "usage: services/benchmarks/run.sh [spool|backup|chain|panel|all] [benchmark arguments]" >&2
    exit 2
    ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

# Tools the references need, from the Debian mirror and PyPI.
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v mariadb-dump >/dev/null || need_apt+=(mariadb-client)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "run.sh: installing ${need_apt[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ "$which" = panel ] || [ "$which" = all ]; then
    if [ ! -x services/benchmarks/.venv/bin/python ] || ! services/benchmarks/.venv/bin/python -c 'import flask, pymysql' 2>/dev/null; then
        echo "run.sh: creating services/benchmarks/.venv with flask and pymysql" >&2
        python3 -m venv services/benchmarks/.venv
        services/benchmarks/.venv/bin/pip install --quiet flask pymysql
    fi
fi

# The measured binaries are built from this tree, so the figures are for it.
# BENCH_BUILD=benchmarks-only builds just this crate and measures the service
# binaries already in the release folder (on a machine shared with other
# builds). CARGO_TARGET_DIR is honoured, as cargo does.
if [ "${BENCH_BUILD:-all}" = benchmarks-only ]; then
    cargo build --release -p benchmarks
else
    cargo build --release -p benchmarks -p backup-worker -p frontend -p stack-tests --bins
fi

release="${CARGO_TARGET_DIR:-target}/release"

db_dir=$(mktemp -d /tmp/bench-db.XXXXXX)
cleanup() {
    scripts/test-mariadb.sh stop "$db_dir" || true
    rm -rf "$db_dir"
}
trap cleanup EXIT
eval "export $(scripts/test-mariadb.sh start "$db_dir" | grep '^TEST_DATABASE_URL=')"

mkdir -p services/benchmarks/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
    echo "## $which benchmark, $stamp"
    echo
    echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/ {print $2}') GiB;" \
        "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} | tee "services/benchmarks/results/$which-$stamp.md"

run() {
    BENCH_BIN_DIR="$release" "$release/benchmarks" "$@" | tee -a "services/benchmarks/results/$which-$stamp.md"
}
case "$which" in
spool) run spool "$@" ;;
backup) run backup "$@" ;;
chain) run chain "$@" ;;
panel) run panel "$@" ;;
all)
    run spool
    run backup
    run chain
    run panel
    ;;
esac
