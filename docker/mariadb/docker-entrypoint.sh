#!/bin/bash
# Entrypoint for our offline MariaDB 10.11 image (telemetria/mariadb).
#
# Why: online we run the official mysql:8.0 image; offline we cannot pull it,
# so this script reproduces the parts of the official entrypoint that the
# compose files and compose/db-init/ rely on, with the same interface:
#   - env MYSQL_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD_FILE (or _ALLOW_EMPTY_ /
#     _RANDOM_), MYSQL_ROOT_HOST (default %), MYSQL_DATABASE, MYSQL_USER,
#     MYSQL_PASSWORD(_FILE); MARIADB_* spellings are accepted too;
#   - first start only (empty datadir): init the datadir, create root/db/user,
#     then run /docker-entrypoint-initdb.d/*: *.sh sourced (non-executable) or
#     run (executable), *.sql / *.sql.gz / *.sql.xz / *.sql.zst piped to the
#     server, with docker_process_sql defined exactly as in the official ones;
#   - drops to the mysql user (UID 999, like the official images) before
#     reading *_FILE secrets, so secret-file permissions behave the same.
set -eo pipefail
shopt -s nullglob

mysql_log() {
	local type=$1; shift
	printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$type" "$*"
}
mysql_note() { mysql_log Note "$@"; }
mysql_warn() { mysql_log Warn "$@" >&2; }
mysql_error() { mysql_log ERROR "$@" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
	local var=$1 fileVar="${1}_FILE" def=${2:-}
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		mysql_error "both $var and $fileVar are set (but are exclusive)"
	fi
	local val=$def
	if [ "${!var:-}" ]; then
		val=${!var}
	elif [ "${!fileVar:-}" ]; then
		[ -r "${!fileVar}" ] || mysql_error "$fileVar=${!fileVar} is not readable by $(id -un) (UID $(id -u))"
		val=$(<"${!fileVar}")
	fi
	export "$var"="$val"
	unset "$fileVar"
}

# MARIADB_X -> MYSQL_X when only the MariaDB spelling is given.
mariadb_aliases() {
	local n
	for n in ROOT_PASSWORD ROOT_PASSWORD_FILE ROOT_HOST DATABASE USER PASSWORD PASSWORD_FILE \
		ALLOW_EMPTY_ROOT_PASSWORD RANDOM_ROOT_PASSWORD INITDB_SKIP_TZINFO; do
		local m="MARIADB_$n" y="MYSQL_$n"
		if [ -n "${!m:-}" ] && [ -z "${!y:-}" ]; then export "$y"="${!m}"; fi
	done
}

# Ask the server binary for its effective config (includes /etc/mysql/*).
mysql_get_config() {
	local conf=$1; shift
	"$@" --verbose --help 2>/dev/null | awk -v conf="$conf" '$1 == conf && /^[^ \t]/ { sub(/^[^ \t]+[ \t]+/, ""); print; exit }'
}

docker_setup_env() {
	mariadb_aliases
	DATADIR=$(mysql_get_config datadir "$@")
	SOCKET=$(mysql_get_config socket "$@")
	file_env MYSQL_ROOT_HOST '%'
	file_env MYSQL_DATABASE
	file_env MYSQL_USER
	file_env MYSQL_PASSWORD
	file_env MYSQL_ROOT_PASSWORD
	declare -g DATABASE_ALREADY_EXISTS=
	if [ -d "$DATADIR/mysql" ]; then DATABASE_ALREADY_EXISTS=true; fi
}

docker_verify_minimum_env() {
	if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
		mysql_error "database is uninitialized and password option is not specified
	You need to specify one of MYSQL_ROOT_PASSWORD(_FILE), MYSQL_ALLOW_EMPTY_ROOT_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	if [ "$MYSQL_USER" = root ]; then
		mysql_error "MYSQL_USER=root: the root user is already created, use MYSQL_ROOT_PASSWORD"
	fi
}

docker_init_database_dir() {
	mysql_note "Initializing database files"
	mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
		--skip-test-db --skip-name-resolve --default-time-zone=SYSTEM --skip-log-bin \
		--expire-logs-days=0 "${@:2}"
	mysql_note "Database files initialized"
}

# Temporary server without networking: clients (and healthchecks over TCP)
# cannot see a half-initialised database.
docker_temp_server_start() {
	"$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --wsrep_on=OFF \
		--expire-logs-days=0 --loose-innodb_buffer_pool_load_at_startup=0 &
	declare -g MYSQLD_PID=$!
	mysql_note "Waiting for server startup"
	local i
	for i in {30..0}; do
		if docker_process_sql --dont-use-mysql-root-password --database=mysql <<<'SELECT 1' &>/dev/null; then
			break
		fi
		sleep 1
	done
	[ "$i" != 0 ] || mysql_error "Unable to start server."
}

docker_temp_server_stop() {
	kill "$MYSQLD_PID"
	wait "$MYSQLD_PID"
}

# Same escaping as the official images: backslash, newline and quote.
docker_sql_escape_string_literal() {
	local newline=$'\n'
	local escaped=${1//\\/\\\\}
	escaped=${escaped//$newline/\\n}
	echo "${escaped//\'/\\\'}"
}

_mysql_passfile() {
	if [ '--dont-use-mysql-root-password' != "${1:-}" ] && [ -n "$MYSQL_ROOT_PASSWORD" ]; then
		cat <<-EOF
			[client]
			password="${MYSQL_ROOT_PASSWORD}"
		EOF
	fi
}

# docker_process_sql [--dont-use-mysql-root-password] [mariadb args...] < SQL
# Same signature and defaults as in the official mysql/mariadb entrypoints:
# socket connection as root, default database $MYSQL_DATABASE if set.
docker_process_sql() {
	local passfileArgs=()
	if [ '--dont-use-mysql-root-password' = "${1:-}" ]; then
		passfileArgs+=("$1")
		shift
	fi
	if [ -n "$MYSQL_DATABASE" ]; then
		set -- --database="$MYSQL_DATABASE" "$@"
	fi
	mariadb --defaults-extra-file=<(_mysql_passfile "${passfileArgs[@]}") \
		--protocol=socket -uroot -hlocalhost --socket="$SOCKET" --comments "$@"
}

docker_setup_db() {
	if [ -n "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
		MYSQL_ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
		export MYSQL_ROOT_PASSWORD
		mysql_note "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
	fi
	local rootPw rootHost
	rootPw=$(docker_sql_escape_string_literal "$MYSQL_ROOT_PASSWORD")
	rootHost=$(docker_sql_escape_string_literal "$MYSQL_ROOT_HOST")
	local rootCreate=
	if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != localhost ]; then
		rootCreate="CREATE USER 'root'@'${rootHost}' IDENTIFIED BY '${rootPw}';
			GRANT ALL ON *.* TO 'root'@'${rootHost}' WITH GRANT OPTION;
			GRANT PROXY ON ''@'%' TO 'root'@'${rootHost}' WITH GRANT OPTION;"
	fi
	# MYSQL_DATABASE is not yet created: keep it out of the client's --database.
	MYSQL_DATABASE= docker_process_sql --dont-use-mysql-root-password --database=mysql <<-EOSQL
		SET @@SESSION.SQL_LOG_BIN=0;
		-- Only root@localhost (and the system users) survive from install-db.
		DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
		EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');
		SET PASSWORD FOR 'root'@'localhost' = PASSWORD('${rootPw}');
		${rootCreate}
		DROP DATABASE IF EXISTS test;
	EOSQL
	if [ -n "$MYSQL_DATABASE" ]; then
		mysql_note "Creating database ${MYSQL_DATABASE}"
		MYSQL_DATABASE= docker_process_sql --database=mysql <<<"CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
	fi
	if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
		mysql_note "Creating user ${MYSQL_USER}"
		local userPw
		userPw=$(docker_sql_escape_string_literal "$MYSQL_PASSWORD")
		local sql="CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '$userPw';"
		if [ -n "$MYSQL_DATABASE" ]; then
			sql+=" GRANT ALL ON \`${MYSQL_DATABASE//_/\\_}\`.* TO '$MYSQL_USER'@'%';"
		fi
		MYSQL_DATABASE= docker_process_sql --database=mysql <<<"$sql"
	fi
}

docker_process_init_files() {
	echo
	local f
	for f; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				mysql_note "$0: running $f"
				"$f"
			else
				mysql_note "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) mysql_note "$0: running $f"; docker_process_sql <"$f"; echo ;;
		*.sql.gz) mysql_note "$0: running $f"; gunzip -c "$f" | docker_process_sql; echo ;;
		*.sql.xz) mysql_note "$0: running $f"; xzcat "$f" | docker_process_sql; echo ;;
		*.sql.zst) mysql_note "$0: running $f"; zstd -dc "$f" | docker_process_sql; echo ;;
		*) mysql_warn "$0: ignoring $f" ;;
		esac
		echo
	done
}

_main() {
	# `docker run IMAGE --some-option` / compose `command: ["--opt"]`
	if [ "${1:0:1}" = '-' ]; then
		set -- mariadbd "$@"
	fi
	if [ "$1" = mariadbd ] || [ "$1" = mysqld ]; then
		mysql_note "Entrypoint script for MariaDB Server started."
		if [ "$(id -u)" = 0 ]; then
			# Fresh named volumes are root-owned on some engines; fix, then drop privileges.
			local datadir
			datadir=$(mysql_get_config datadir "$@")
			mkdir -p "$datadir" /run/mysqld
			find "$datadir" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' + 2>/dev/null || true
			mysql_note "Switching to dedicated user 'mysql'"
			exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
		fi
		docker_setup_env "$@"
		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			docker_verify_minimum_env
			docker_init_database_dir "$@"
			mysql_note "Starting temporary server"
			docker_temp_server_start "$@"
			mysql_note "Temporary server started."
			docker_setup_db
			docker_process_init_files /docker-entrypoint-initdb.d/*
			mysql_note "Stopping temporary server"
			docker_temp_server_stop
			mysql_note "Temporary server stopped"
			echo
			mysql_note "MariaDB init process done. Ready for start up."
			echo
		fi
	fi
	exec "$@"
}

_main "$@"
