# Cluster database image: MariaDB 10.11 + Galera 4 from our debootstrapped
# base (docker/base/build-bases.sh, WITH_CLUSTER_BASES=1), with the same
# server config and entrypoint as telemetria/mariadb (db.Dockerfile), plus
# the Galera settings and the node entrypoint that decides bootstrap, join
# or recovery at every start. Used by compose/cluster.yml only.
# Build context: repository root.
#   docker build -f docker/galera.Dockerfile -t telemetria/mariadb-galera:10.11 .
ARG BASE=telemetria/mariadb-galera-base:10.11
FROM ${BASE}

COPY docker/mariadb/docker.cnf /etc/mysql/mariadb.conf.d/90-docker.cnf
COPY docker/mariadb/galera.cnf /etc/mysql/mariadb.conf.d/91-galera.cnf
COPY docker/mariadb/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY docker/mariadb/galera-node.sh /usr/local/bin/galera-node.sh
COPY docker/mariadb/galera-status /usr/local/bin/galera-status

VOLUME /var/lib/mysql
# 3306 clients; 4567 group communication, 4568 IST, 4444 SST (backend
# network only); 9200 the node's status line.
EXPOSE 3306 4567 4568 4444 9200
ENTRYPOINT ["galera-node.sh"]
CMD ["mariadbd"]
