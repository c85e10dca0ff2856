# One Dockerfile for the three Rust services (BIN = sensor-simulator |
# backup-worker | frontend). Build context: repository root.
#
# Offline (scripts/build-images.sh): prebuilt binaries copied to dist/
#   docker build -f docker/service.Dockerfile --target dist \
#     --build-arg BIN=frontend --build-arg RUNTIME_BASE=telemetria/runtime-base:latest \
#     -t telemetria/frontend:latest .
# Online (compose `build:`): compiled in rust:1-bookworm, target runtime
#   docker build -f docker/service.Dockerfile --target runtime --build-arg BIN=frontend .
#
# Stage order matters: the legacy builder (no BuildKit) builds every stage up
# to the target, in file order. `dist` comes first so that --target dist never
# touches the rust image, which cannot be pulled offline.
#
# Both final stages: binary at the fixed path /app/service (compose
# healthchecks run ["CMD", "/app/service", "healthcheck"]), UID 10001,
# /spool owned by 10001 (a new named volume copies that ownership).

ARG RUNTIME_BASE=debian:bookworm-slim
ARG BUILDER_IMAGE=rust:1-bookworm

FROM ${RUNTIME_BASE} AS dist
ARG BIN
COPY --chown=10001:10001 docker/service-rootfs/ /
COPY dist/${BIN} /app/service
USER 10001:10001
WORKDIR /app
ENTRYPOINT ["/app/service"]

FROM ${BUILDER_IMAGE} AS builder
ARG BIN
WORKDIR /src
COPY . .
# The binary is linked against the builder's glibc (bookworm, 2.36), the
# same as RUNTIME_BASE's.
RUN test -n "${BIN}" && cargo build --release --locked -p "${BIN}" \
    && install -D -m 0755 "target/release/${BIN}" /out/service

FROM ${RUNTIME_BASE} AS runtime
# debian:bookworm-slim has no CA bundle: take the builder's (reqwest/rustls
# with native roots, SSL_CERT_FILE) so HTTPS to Open-Meteo works.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=10001:10001 docker/service-rootfs/ /
COPY --from=builder /out/service /app/service
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 10001:10001
WORKDIR /app
ENTRYPOINT ["/app/service"]
