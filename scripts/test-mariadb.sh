#!/usr/bin/env bash
# Starts a throwaway MariaDB on 127.0.0.1 for the integration tests.
#   scripts/test-mariadb.sh start DIR   -> prints TEST_DATABASE_URL=...
#   scripts/test-mariadb.sh stop DIR    -> stops that server (by its pid file)
# Everything lives in DIR; nothing touches a system MariaDB.
set -euo pipefail

action=${1:?usage: test-mariadb.sh start|stop DIR}
dir=${2:?usage: test-mariadb.sh start|stop DIR}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$action" in
start)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || {
        echo "test-mariadb: installing mariadb-server from the Debian mirror" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server mariadb-client >/dev/null
    }
    server=$(command -v mariadbd || command -v mysqld)
    mkdir -p "$dir/data"
    port=$(free_port)
    password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db >"$dir/install.log" 2>&1
    user_flag=()
    [ "$(id -u)" = 0 ] && user_flag=(--user=root)
    "$server" --no-defaults "${user_flag[@]}" --datadir="$dir/data" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --port="$port" --bind-address=127.0.0.1 \
        --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --skip-log-bin \
        --max-connections=500 >"$dir/server.log" 2>&1 &
    for _ in $(seq 1 120); do
        if mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1; then
            break
        fi
        sleep 0.25
    done
    mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1 || {
        echo "test-mariadb: server did not start; log:" >&2
        tail -20 "$dir/server.log" >&2
        exit 1
    }
    mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot \
        -e "ALTER USER 'root'@'localhost' IDENTIFIED BY '$password'; CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '$password'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
    echo "TEST_DATABASE_URL=mysql://root:$password@127.0.0.1:$port"
    ;;
stop)
    if [ -f "$dir/mysqld.pid" ]; then
        pid=$(cat "$dir/mysqld.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    ;;
*)
    echo "usage: test-mariadb.sh start|stop DIR" >&2
    exit 2
    ;;
esac
