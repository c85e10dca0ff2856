# Accounts of the telemetria database, least privilege each.
#
# Runs once, on the first start of db-master with an empty data volume, from
# /docker-entrypoint-initdb.d. It must be SOURCED by the image entrypoint
# (official mysql:8.0 or our MariaDB image), which defines docker_process_sql:
# keep this file NOT executable (an executable *.sh is run in a child shell
# where that function does not exist).
#
# Passwords come from the credentials volume (compose/credentials/
# credentials.sh), mounted at /run/credentials. root is created by the
# entrypoint for 'localhost' only (MYSQL_ROOT_HOST=localhost): it can log in
# from inside this container and from nowhere else.
# The SQL is the common subset of MySQL 8.0 and MariaDB 10.11.
# Tables are created by `sensor-simulator migrate` (account migrate), not here.

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
# account:privileges on telemetria.* — migrate owns the schema (tables,
# indexes, the migration history, restores); the sensor adds rows (its
# replay is INSERT IGNORE on a unique key: no UPDATE or DELETE) and reads
# each city's last row time at start, to fill the gap a downtime left; the
# backup worker and the panel only read. Every one of them must use TLS.
for _telemetria_spec in 'migrate:ALL PRIVILEGES' 'sensor:INSERT, SELECT' 'backup:SELECT' 'panel:SELECT'; do
	_telemetria_user=${_telemetria_spec%%:*}
	_telemetria_file=/run/credentials/${_telemetria_user}_password
	if [ ! -r "$_telemetria_file" ]; then
		echo >&2 "10-users.sh: $_telemetria_file is missing or not readable by UID $(id -u): the credentials job must run first"
		exit 1
	fi
	# $(<file) drops trailing newlines, like the entrypoints' *_FILE handling.
	_telemetria_pw=$(<"$_telemetria_file")
	if [ -z "$_telemetria_pw" ]; then
		echo >&2 "10-users.sh: $_telemetria_file is empty"
		exit 1
	fi
	_telemetria_sql+="CREATE USER IF NOT EXISTS '${_telemetria_user}'@'%' IDENTIFIED BY '$(_telemetria_sql_quote "$_telemetria_pw")' REQUIRE SSL;
GRANT ${_telemetria_spec#*:} ON \`${_telemetria_db}\`.* TO '${_telemetria_user}'@'%';
"
done

# Container healthcheck account: no password and no privileges, usable only
# from inside the db container (127.0.0.1; proxied clients come from the
# proxy's address). `mysqladmin ping` succeeds even when access is denied,
# but every denied probe would log an "Access denied" warning (MariaDB).
_telemetria_sql+="CREATE USER IF NOT EXISTS 'healthcheck'@'127.0.0.1';
"

echo "10-users.sh: creating accounts migrate, sensor, backup, panel on ${_telemetria_db}.* (TLS required), healthcheck@127.0.0.1"
docker_process_sql --database=mysql <<<"$_telemetria_sql"
unset _telemetria_db _telemetria_sql _telemetria_spec _telemetria_user _telemetria_file _telemetria_pw
unset -f _telemetria_sql_quote
