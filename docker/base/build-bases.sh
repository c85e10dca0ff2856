#!/usr/bin/env bash
# Build the local base images from the Debian mirror, without any registry.
#
# Why: nothing can be pulled on the offline machines, but the Debian apt
# mirror is reachable. debootstrap a minimal bookworm rootfs, trim it and
# `docker import` it. Three bases:
#   telemetria/mariadb-base:10.11  MariaDB 10.11 server + client core + mysqladmin
#   telemetria/nginx-base:latest   nginx-light + libnginx-mod-stream
#   telemetria/runtime-base:latest scratch + glibc + libgcc_s + zlib + CA certs + tzdata
# `docker import` drops ENTRYPOINT/CMD/USER, so those are set by the
# Dockerfiles in docker/ that build FROM these bases.
#
# Idempotent: a base that already exists is skipped (FORCE_BASES=1 rebuilds).
# The two debootstraps run in parallel (they are CPU bound; ~80 s on 2 cores).
#
# Env: DEBIAN_MIRROR (default: first bookworm URI in /etc/apt/sources.list.d/),
#      DEBIAN_SUITE (bookworm), FORCE_BASES=1, BASE_CACHE_DIR (package cache),
#      MARIADB_BASE_IMAGE, NGINX_BASE_IMAGE, RUNTIME_BASE_IMAGE (image names).
#      WITH_TEST_BASES=1: also the test-only router base (ROUTER_BASE_IMAGE).
#      WITH_CLUSTER_BASES=1: also the Galera node base (GALERA_BASE_IMAGE).
set -euo pipefail

SUITE=${DEBIAN_SUITE:-bookworm}
CACHE_DIR=${BASE_CACHE_DIR:-/var/cache/telemetria-debootstrap}
MARIADB_BASE_IMAGE=${MARIADB_BASE_IMAGE:-telemetria/mariadb-base:10.11}
NGINX_BASE_IMAGE=${NGINX_BASE_IMAGE:-telemetria/nginx-base:latest}
RUNTIME_BASE_IMAGE=${RUNTIME_BASE_IMAGE:-telemetria/runtime-base:latest}
FORCE_BASES=${FORCE_BASES:-0}

log() { printf '[build-bases] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap/chroot need it)"

# Mirror: the deb822 *.sources (or legacy *.list) that serves $SUITE, so we use
# the same (possibly proxied/snapshot) mirror apt on this host already uses.
detect_mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		# A stanza with Suites containing "$SUITE" (not only -security): take its first URI.
		uri=$(awk -v s="$SUITE" '
			/^[[:space:]]*$/ { if (ok && u != "") { print u; exit } ok=0; u=""; next }
			/^URIs:/   { u=$2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok=1 }
			END { if (ok && u != "") print u }' "$f" | head -n1)
		if [ -n "$uri" ]; then echo "$uri"; return; fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		uri=$(awk -v s="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == s { print $2; exit }
			$1 == "deb" && $2 ~ /^\[/ && $4 == s { print $3; exit }' "$f")
		if [ -n "$uri" ]; then echo "$uri"; return; fi
	done
	echo "http://deb.debian.org/debian"
}
MIRROR=${DEBIAN_MIRROR:-$(detect_mirror)}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
need_build() { [ "$FORCE_BASES" = 1 ] || ! image_exists "$1"; }

ensure_debootstrap() {
	command -v debootstrap >/dev/null && return
	log "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null 2>&1 ||
		{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >/dev/null; }
}

# Remove what a container never needs: apt indexes/caches (~110 MB), docs,
# man pages, translations, and files the engine provides at run time.
trim_rootfs() {
	local d=$1
	rm -rf "$d"/var/cache/apt/* "$d"/var/lib/apt/lists/* "$d"/var/cache/debconf/*-old \
		"$d"/usr/share/doc/* "$d"/usr/share/man/* "$d"/usr/share/info/* \
		"$d"/usr/share/locale/* "$d"/usr/share/lintian "$d"/var/log/*.log \
		"$d"/var/log/apt/* "$d"/tmp/* "$d"/var/tmp/*
	# Docker bind-mounts these per container; debootstrap copied the host's.
	: >"$d"/etc/resolv.conf
	: >"$d"/etc/hostname
	rm -f "$d"/etc/machine-id "$d"/var/lib/dbus/machine-id
}

# debootstrap DIR PKGS: minbase + PKGS. The shared --cache-dir makes reruns
# and the parallel second bootstrap download nothing twice.
bootstrap() {
	local dir=$1 pkgs=$2
	mkdir -p "$CACHE_DIR"
	# Two bootstraps share the cache and can race on one package (seen here:
	# "Couldn't download packages"): a second try starts from a clean folder.
	local attempt
	for attempt in 1 2; do
		debootstrap --variant=minbase --cache-dir="$CACHE_DIR" --include="$pkgs" \
			"$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 && return 0
		log "debootstrap of $dir failed (attempt $attempt): $(grep -m1 '^E:' "$dir.log" || tail -n1 "$dir.log")"
		rm -rf "$dir"
	done
	tail -n 30 "$dir.log" >&2
	die "debootstrap failed for $dir (log: $dir.log)"
}

# import DIR IMAGE [--change ...]: numeric owners so the image keeps the
# rootfs UIDs (mysql=999, app=10001) whatever the host's passwd says.
import_rootfs() {
	local dir=$1 image=$2; shift 2
	tar --numeric-owner -C "$dir" -c . | docker import "$@" - "$image" >/dev/null
	log "imported $image"
}

build_mariadb_base() {
	local dir=$WORK/mariadb
	bootstrap "$dir" mariadb-server-core,mariadb-client-core,tzdata,ca-certificates,openssl
	# mysqladmin (for `mysqladmin ping` healthchecks, same command as mysql:8.0)
	# lives in mariadb-client, which drags in perl (~70 MB). Take just the
	# self-contained binary from the .deb named in the bootstrap's own index,
	# so the version matches the server exactly.
	local pkgs fn
	pkgs=$(ls "$dir"/var/lib/apt/lists/*_Packages | head -n1)
	fn=$(awk '/^Package: mariadb-client$/ { p=1 } p && /^Filename:/ { print $2; exit }' "$pkgs")
	[ -n "$fn" ] || die "mariadb-client not found in $pkgs"
	curl -fsSL "$MIRROR/$fn" -o "$WORK/mariadb-client.deb"
	dpkg-deb --fsys-tarfile "$WORK/mariadb-client.deb" |
		tar -C "$dir" -x ./usr/bin/mariadb-admin ./usr/bin/mysqladmin
	# What the mariadb-server package (not installed) would do: mysql user with
	# the official images' UID 999, runtime dirs; Debian's server config is not
	# installed, ours comes from docker/mariadb/docker.cnf in db.Dockerfile.
	chroot "$dir" groupadd -r -g 999 mysql
	chroot "$dir" useradd -r -u 999 -g mysql -d /var/lib/mysql -s /usr/sbin/nologin mysql
	mkdir -p "$dir"/var/lib/mysql "$dir"/run/mysqld "$dir"/docker-entrypoint-initdb.d
	chown 999:999 "$dir"/var/lib/mysql "$dir"/run/mysqld
	rm -rf "$dir"/var/lib/mysql/*
	trim_rootfs "$dir"
	import_rootfs "$dir" "$MARIADB_BASE_IMAGE" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change "LABEL org.opencontainers.image.description=\"MariaDB 10.11 base from Debian $SUITE\""
}

build_nginx_base() {
	local dir=$WORK/nginx
	bootstrap "$dir" nginx-light,libnginx-mod-stream
	# The config is fully mounted at run time; drop Debian's site to avoid
	# confusion (our nginx.conf loads the stream module itself).
	rm -f "$dir"/etc/nginx/sites-enabled/default
	trim_rootfs "$dir"
	import_rootfs "$dir" "$NGINX_BASE_IMAGE" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change "LABEL org.opencontainers.image.description=\"nginx-light + stream from Debian $SUITE\""
}

# Runtime base: no debootstrap needed, only files from five .debs. Our
# dynamic Rust binaries (glibc 2.36) need ld-linux, libc, libm, libgcc_s and
# libz (flate2/zstd via the system zlib; check with ldd); the tiny
# libpthread/libdl/librt stubs are kept for binaries linked by older tools.
# NSS files/dns are built into glibc >= 2.34, so no libnss_* is needed.
build_runtime_base() {
	local dir=$WORK/runtime ex=$WORK/runtime-debs dl=$WORK/runtime-dl
	mkdir -p "$ex" "$dir" "$dl"
	# Host apt (same mirror); retry after an update if its lists are stale.
	(cd "$dl" && apt-get download libc6 libgcc-s1 zlib1g ca-certificates tzdata >/dev/null 2>&1) ||
		{ apt-get update >/dev/null && (cd "$dl" && apt-get download libc6 libgcc-s1 zlib1g ca-certificates tzdata >/dev/null); }
	local deb
	for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$ex"; done
	local lib=lib/x86_64-linux-gnu
	mkdir -p "$dir/$lib" "$dir/lib64" "$dir/etc/ssl/certs" "$dir/usr/share" "$dir/tmp" "$dir/app"
	local f
	for f in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2; do
		cp -a "$ex/$lib/$f" "$dir/$lib/"
	done
	cp -a "$ex/$lib"/libz.so.1* "$dir/$lib/" # symlink + versioned file
	ln -s "/$lib/ld-linux-x86-64.so.2" "$dir/lib64/ld-linux-x86-64.so.2"
	# The bundle update-ca-certificates would generate: all Mozilla roots.
	cat "$ex"/usr/share/ca-certificates/mozilla/*.crt >"$dir/etc/ssl/certs/ca-certificates.crt"
	cp -a "$ex/usr/share/zoneinfo" "$dir/usr/share/"
	# "files" first: otherwise /etc/hosts entries (extra_hosts such as
	# host.docker.internal) are never consulted when DNS says NXDOMAIN.
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$dir/etc/nsswitch.conf"
	printf 'root:x:0:0:root:/root:/sbin/nologin\napp:x:10001:10001:app:/app:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
	printf 'root:x:0:\napp:x:10001:\nnogroup:x:65534:\n' >"$dir/etc/group"
	chmod 1777 "$dir/tmp"
	import_rootfs "$dir" "$RUNTIME_BASE_IMAGE" \
		--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		--change "LABEL org.opencontainers.image.description=\"glibc runtime for Rust services, Debian $SUITE\""
}

# Test-only base, built when WITH_TEST_BASES=1 (scripts/test.sh asks for it;
# the stack itself never needs it): the simulated WAN's router
# (docker/wan-router.Dockerfile adds our wan-relay). iptables is Debian's
# default iptables-nft (the kernel here has nf_tables), iproute2 for `tc tbf`
# and `ip`/`ss`, procps for `ps`/`pkill` when a test needs to look inside.
ROUTER_BASE_IMAGE=${ROUTER_BASE_IMAGE:-telemetria/router-base:latest}
build_router_base() {
	local dir=$WORK/router
	bootstrap "$dir" iptables,iproute2,procps
	trim_rootfs "$dir"
	import_rootfs "$dir" "$ROUTER_BASE_IMAGE" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change "LABEL org.opencontainers.image.description=\"test-only WAN router base (iptables-nft, iproute2) from Debian $SUITE\""
}

# Cluster base, built when WITH_CLUSTER_BASES=1 (compose/cluster.yml; the
# single-node stack never needs it): the MariaDB 10.11 of the mariadb base
# plus what a Galera node needs, from the same mirror: galera-4 (the wsrep
# provider), the wsrep_sst_* scripts (in mariadb-server, not -server-core;
# they pull the client and perl), rsync for rsync SST, and the tools those
# scripts call (socat, lsof, iproute2's ss, procps). In two steps so that
# the packages' maintainer scripts never start a server inside the chroot
# (policy-rc.d), and so that the mysql user exists with the official
# images' UID 999 before mariadb-server would create its own (the
# credentials volume's files are owned by 999).
GALERA_BASE_IMAGE=${GALERA_BASE_IMAGE:-telemetria/mariadb-galera-base:10.11}
build_galera_base() {
	local dir=$WORK/galera
	bootstrap "$dir" tzdata,ca-certificates,openssl
	chroot "$dir" groupadd -r -g 999 mysql
	chroot "$dir" useradd -r -u 999 -g mysql -d /var/lib/mysql -s /usr/sbin/nologin mysql
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 0755 "$dir/usr/sbin/policy-rc.d"
	# No /proc mounted: nothing here needs it, and the EXIT trap's rm -rf
	# must never meet a mounted /proc.
	chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		mariadb-server galera-4 rsync socat lsof iproute2 procps >"$dir.apt.log" 2>&1 ||
		{ tail -n 30 "$dir.apt.log" >&2; die "installing the Galera packages failed (log: $dir.apt.log)"; }
	rm -f "$dir/usr/sbin/policy-rc.d"
	# Debian's server config binds to 127.0.0.1 and its galera.cnf is a
	# template: ours come from docker/mariadb/ (galera.Dockerfile). The
	# package's postinst initialised a datadir: images start empty.
	rm -f "$dir"/etc/mysql/mariadb.conf.d/50-server.cnf "$dir"/etc/mysql/mariadb.conf.d/60-galera.cnf
	rm -rf "$dir"/var/lib/mysql/* "$dir"/docker-entrypoint-initdb.d
	mkdir -p "$dir"/var/lib/mysql "$dir"/run/mysqld "$dir"/docker-entrypoint-initdb.d
	chown 999:999 "$dir"/var/lib/mysql "$dir"/run/mysqld
	trim_rootfs "$dir"
	import_rootfs "$dir" "$GALERA_BASE_IMAGE" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change "LABEL org.opencontainers.image.description=\"MariaDB 10.11 + Galera 4 base from Debian $SUITE\""
}

WORK=$(mktemp -d /tmp/telemetria-bases.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
log "mirror: $MIRROR ($SUITE)"

pids=()
if need_build "$MARIADB_BASE_IMAGE"; then ensure_debootstrap; build_mariadb_base & pids+=($!); else log "$MARIADB_BASE_IMAGE exists, skipping"; fi
if need_build "$NGINX_BASE_IMAGE"; then ensure_debootstrap; build_nginx_base & pids+=($!); else log "$NGINX_BASE_IMAGE exists, skipping"; fi
if need_build "$RUNTIME_BASE_IMAGE"; then build_runtime_base & pids+=($!); else log "$RUNTIME_BASE_IMAGE exists, skipping"; fi
if [ "${WITH_TEST_BASES:-0}" = 1 ]; then
	if need_build "$ROUTER_BASE_IMAGE"; then ensure_debootstrap; build_router_base & pids+=($!); else log "$ROUTER_BASE_IMAGE exists, skipping"; fi
fi
if [ "${WITH_CLUSTER_BASES:-0}" = 1 ]; then
	if need_build "$GALERA_BASE_IMAGE"; then ensure_debootstrap; build_galera_base & pids+=($!); else log "$GALERA_BASE_IMAGE exists, skipping"; fi
fi
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" = 0 ] || die "a base image failed to build"
log "bases ready in $((SECONDS - start)) s"
