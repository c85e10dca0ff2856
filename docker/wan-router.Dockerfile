# Test-only router between the two sites of the end-to-end tests
# (services/stack-tests/src/wan.rs): our latency/jitter relay on a Debian base
# with iptables-nft (random loss, cuts) and iproute2 (`tc tbf` bandwidth). The
# kernel here has no netem, so the delay is added in user space by wan-relay.
# Build context: repository root, after `cargo build --release` and
# `WITH_TEST_BASES=1 docker/base/build-bases.sh`:
#   cp target/release/wan-relay dist/
#   docker build -f docker/wan-router.Dockerfile -t telemetria/wan-router:latest .
# Run it with --cap-add NET_ADMIN (iptables, tc).
ARG BASE=telemetria/router-base:latest
FROM ${BASE}

COPY dist/wan-relay /usr/local/bin/wan-relay
# Where the harness writes the relay's HOST:PORT target (read per connection).
RUN mkdir -p /run/wan
EXPOSE 3306
STOPSIGNAL SIGTERM
CMD ["wan-relay", "--listen", "0.0.0.0:3306", "--target-file", "/run/wan/target"]
