# Application accounts for the telemetria database.
#
# Runs once, on the first start of db-master with an empty data volume, from
# /docker-entrypoint-initdb.d. It must be SOURCED by the image entrypoint
# (official mysql:8.0 or our MariaDB image), which defines docker_process_sql:
# keep this file NOT executable (an executable *.sh is run in a child shell
# where that function does not exist).
#
# Passwords come from compose secrets mounted under /run/secrets; the files
# must be readable by the mysql user (UID 999), e.g. mode 0644.
# The SQL is the common subset of MySQL 8.0 and MariaDB 10.11.
# Tables are created by `sensor-simulator migrate`, not here.

if ! declare -F docker_process_sql >/dev/null; then
	echo >&2 "10-users.sh: docker_process_sql is undefined; this file must be sourced (chmod -x it)"
	exit 1
fi

# Quote for a single-quoted SQL literal (backslash and quote).
_telemetria_sql_quote() {
	local s=${1//\\/\\\\}
	printf '%s' "${s//\'/\\\'}"
}

_telemetria_db=${MYSQL_DATABASE:-telemetria}
_telemetria_sql=
# account:privileges on telemetria.*
for _telemetria_spec in 'sensor:SELECT, INSERT' 'backup:SELECT' 'panel:SELECT'; do
	_telemetria_user=${_telemetria_spec%%:*}
	_telemetria_file=/run/secrets/${_telemetria_user}_db_password
	if [ ! -r "$_telemetria_file" ]; then
		echo >&2 "10-users.sh: secret $_telemetria_file is missing or not readable by UID $(id -u)"
		exit 1
	fi
	# $(<file) drops trailing newlines, like the entrypoints' *_FILE handling.
	_telemetria_pw=$(<"$_telemetria_file")
	if [ -z "$_telemetria_pw" ]; then
		echo >&2 "10-users.sh: secret $_telemetria_file is empty"
		exit 1
	fi
	_telemetria_sql+="CREATE USER IF NOT EXISTS '${_telemetria_user}'@'%' IDENTIFIED BY '$(_telemetria_sql_quote "$_telemetria_pw")';
GRANT ${_telemetria_spec#*:} ON \`${_telemetria_db}\`.* TO '${_telemetria_user}'@'%';
"
done

# Container healthcheck account: no password and no privileges, usable only
# from inside the db container (127.0.0.1; proxied clients come from the
# proxy's address). `mysqladmin ping` succeeds even when access is denied,
# but every denied probe would log an "Access denied" warning (MariaDB).
_telemetria_sql+="CREATE USER IF NOT EXISTS 'healthcheck'@'127.0.0.1';
"

echo "10-users.sh: creating accounts sensor, backup, panel on ${_telemetria_db}.*, healthcheck@127.0.0.1"
docker_process_sql --database=mysql <<<"$_telemetria_sql"
unset _telemetria_db _telemetria_sql _telemetria_spec _telemetria_user _telemetria_file _telemetria_pw
unset -f _telemetria_sql_quote
