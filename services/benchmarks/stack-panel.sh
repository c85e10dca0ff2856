#!/usr/bin/env bash
# Issue 15: the panel as users get it, through the README's stack, next to
# the seed's Flask panel under gunicorn on the same table, and /healthz (a
# tiny fixed reply) as the limit of each path.
#
#   services/benchmarks/stack-panel.sh [ROWS (1000000)] [SECONDS per run (15)]
#
# Starts its own project (telemetria-bench, free ports, simulated sensor),
# fills `mediciones` with ROWS readings (7 cities, one tick per 15 s, ending
# now), then loads with `wrk -t2 -c32`: the published port and the
# frontend container's own address, each for `/` without and with a
# browser's Accept-Encoding, `/api/readings?city=Cali&limit=100` and
# `/healthz`; then the Flask reference (gunicorn -w4) through the same proxy.
# CPU per request is the serving process's (frontend, or all gunicorn
# workers). Removes the project and its volumes at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
LOG_TAG=stack-panel
. scripts/lib.sh

rows=${1:-1000000}
seconds=${2:-15}
connections=32

command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >/dev/null
venv=services/benchmarks/.venv
if ! "$venv/bin/python" -c 'import flask, pymysql, gunicorn' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet flask pymysql cryptography gunicorn
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export COMPOSE_PROJECT_NAME=telemetria-bench
export PANEL_PORT=${PANEL_PORT:-$(free_port)} PROXY_PORT=${PROXY_PORT:-$(free_port)}
export PANEL_BIND=127.0.0.1 PROXY_BIND=127.0.0.1 SENSOR_SOURCE=simulated
work=$(mktemp -d /tmp/stack-panel.XXXXXX)
gunicorn_pid=
cleanup() {
    [ -n "$gunicorn_pid" ] && kill "$gunicorn_pid" 2>/dev/null || true
    stack_compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# --rebuild: the binaries and images of this tree are what is measured.
scripts/up.sh --rebuild
log "filling $rows readings"
scripts/db-client.sh migrate -e "
    INSERT IGNORE INTO mediciones (ciudad, temperatura, humedad, fecha_registro, source)
    SELECT ELT(1 + seq MOD 7, 'Bogotá', 'Medellín', 'Cali', 'Cartagena', 'Manizales', 'Pereira', 'Bucaramanga'),
           20 + (seq MOD 100) / 10, 60 + seq MOD 30,
           UTC_TIMESTAMP() - INTERVAL 30 SECOND - INTERVAL (seq DIV 7) * 15 SECOND, 'simulated'
    FROM seq_0_to_$((rows - 1));
    ANALYZE TABLE mediciones;" >/dev/null
log "table: $(scripts/db-client.sh panel -N -e 'SELECT COUNT(*) FROM mediciones') rows"

frontend=$(stack_compose ps -q frontend)
# Every process of the container (its init and the frontend), as host PIDs.
frontend_pids=$(docker top "$frontend" -eo pid | tail -n +2 | tr '\n' ' ')
frontend_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$frontend" | awk '{print $1}')
ticks=$(getconf CLK_TCK)

# CPU seconds (user + system) of the processes in $@.
cpu_of() {
    local total=0 pid
    for pid in "$@"; do
        total=$(awk -v t="$total" -v hz="$ticks" '{print t + ($14 + $15) / hz}' "/proc/$pid/stat")
    done
    echo "$total"
}

results="$work/results.tsv"
# load NAME URL PIDS [wrk header]: one wrk run, one row of results.
load() {
    local name=$1 url=$2 pids=$3; shift 3
    local before after out
    before=$(cpu_of $pids)
    out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency --timeout 10s "$@" "$url")
    after=$(cpu_of $pids)
    awk -v name="$name" -v cpu="$(awk -v a="$after" -v b="$before" 'BEGIN {print a - b}')" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec:/ { rps = $2 }
        / 50%/ { p50 = ms($2) }
        / 99%/ { p99 = ms($2) }
        /requests in/ { n = $1 }
        /Non-2xx/ { bad = $NF }
        END { printf "%s\t%.0f\t%.2f\t%.2f\t%.3f\t%s\n", name, rps, p50, p99, cpu * 1000 / n, bad + 0 }' <<<"$out" >>"$results"
    log "$name: $(tail -1 "$results" | cut -f2) req/s"
}

browser=(-H 'Accept-Encoding: gzip, deflate, br')
for where in "published port|http://127.0.0.1:$PANEL_PORT" "container address|http://$frontend_ip:5000"; do
    label=${where%%|*} base=${where#*|}
    load "ours, $label: GET / (no Accept-Encoding)" "$base/" "$frontend_pids"
    load "ours, $label: GET / (browser Accept-Encoding)" "$base/" "$frontend_pids" "${browser[@]}"
    load "ours, $label: GET /api/readings?city=Cali&limit=100" "$base/api/readings?city=Cali&limit=100" "$frontend_pids"
    load "ours, $label: GET /healthz (the limit)" "$base/healthz" "$frontend_pids"
done

# The seed's Flask panel under gunicorn, reading the same table through
# the same proxy with the panel's account.
stack_compose exec -T db-master cat /run/credentials/ca.pem >"$work/ca.pem"
flask_port=$(free_port)
DB_HOST=127.0.0.1 DB_PORT=$PROXY_PORT DB_USER=panel DB_NAME=telemetria DB_SSL_CA="$work/ca.pem" \
    DB_PASSWORD=$(stack_compose exec -T db-master cat /run/credentials/panel_password) \
    "$venv/bin/gunicorn" -w4 -b "127.0.0.1:$flask_port" --chdir services/benchmarks/flask-reference \
    app:app >"$work/gunicorn.log" 2>&1 &
gunicorn_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$flask_port/" >/dev/null && break; sleep 0.2; done
curl -fs "http://127.0.0.1:$flask_port/" >/dev/null || die "the Flask reference did not answer: $(tail -5 "$work/gunicorn.log")"
load "seed's Flask (gunicorn -w4): GET /" "http://127.0.0.1:$flask_port/" "$gunicorn_pid $(pgrep -P "$gunicorn_pid" | tr '\n' ' ')"

echo
echo "### Panel through the stack: $rows rows, wrk -t2 -c$connections, ${seconds} s a run ($(nproc) cores)"
echo
echo "| target | req/s | p50 ms | p99 ms | CPU ms/req | non-2xx |"
echo "|---|---|---|---|---|---|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$results"
echo
awk -F'\t' '
    { rps[NR] = $2; p99[NR] = $4 }
    END {
        for (i = 0; i < 2; i++) {
            page = 4 * i + 2; limit = 4 * i + 4
            where = i == 0 ? "published port" : "container address"
            printf "- %s: `GET /` with a browser'"'"'s Accept-Encoding at %.0f %% of `/healthz` (goal ≥ 80 %%), p99 %.2f ms (goal < 10 ms)\n", where, 100 * rps[page] / rps[limit], p99[page]
        }
        printf "- `/api/readings?city=Cali&limit=100`: %.0f req/s on the published port, %.1f× the 2,600 req/s before issue 15 (goal ≥ 10×)\n", rps[3], rps[3] / 2600
        printf "- `GET /` vs the seed'"'"'s Flask: %.0f× (published port, no Accept-Encoding)\n", rps[1] / rps[9]
    }' "$results"
