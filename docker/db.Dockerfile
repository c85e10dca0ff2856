# Offline database image: MariaDB 10.11 from our debootstrapped base, with an
# entrypoint compatible with the official mysql/mariadb images (same env
# vars, /docker-entrypoint-initdb.d and docker_process_sql).
# Online nobody builds this: compose uses DB_IMAGE=mysql:8.0 directly.
# Build context: repository root.
#   docker build -f docker/db.Dockerfile -t telemetria/mariadb:10.11 .
ARG BASE=telemetria/mariadb-base:10.11
FROM ${BASE}

COPY docker/mariadb/docker.cnf /etc/mysql/mariadb.conf.d/90-docker.cnf
COPY docker/mariadb/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# Data must outlive the container even without a compose-named volume.
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
