# The service's image: `fulfillment serve` as a non-root user, on a small Debian with the
# CA certificates, able to run with a read-only root filesystem. Build (docs/OPERATIONS.md,
# "The image"):
#
#   podman build --format docker -t fulfillment-service .
#
# (`--format docker` keeps the HEALTHCHECK, which the OCI format has no field for.)
#
# The two base images are the Rust project's and Debian's, by their short names (resolved by
# the container tool's configured registries); where none can be reached, make equivalent
# ones locally and pass their names:
#   --build-arg BUILD_IMAGE=localhost/rust-bookworm --build-arg RUNTIME_IMAGE=localhost/debian-slim
ARG BUILD_IMAGE=rust:1.94-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# The dependencies, in a layer of their own: rebuilt only when a manifest or the lock file
# changes. Each crate of the workspace is an empty library here.
COPY Cargo.toml Cargo.lock ./
COPY crates/domain/Cargo.toml crates/domain/
COPY crates/ports/Cargo.toml crates/ports/
COPY crates/store/Cargo.toml crates/store/
COPY crates/upstream/Cargo.toml crates/upstream/
COPY crates/sim/Cargo.toml crates/sim/
COPY crates/prometheus/Cargo.toml crates/prometheus/
COPY crates/engine/Cargo.toml crates/engine/
COPY crates/app/Cargo.toml crates/app/
COPY crates/api/Cargo.toml crates/api/
RUN for crate in crates/*/; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
    && mkdir -p src bench \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > bench/main.rs \
    && cargo build --release --locked --bin fulfillment \
    && rm -rf src bench crates/*/src
# Then the service itself.
COPY src src
COPY crates crates
COPY migrations migrations
COPY templates templates
COPY assets assets
COPY bench bench
RUN touch src/main.rs src/lib.rs crates/*/src/lib.rs \
    && cargo build --release --locked --bin fulfillment \
    && strip --strip-debug -o /fulfillment target/release/fulfillment

FROM ${RUNTIME_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin fulfillment \
    && mkdir -p /var/lib/fulfillment \
    && chown 10001:10001 /var/lib/fulfillment
COPY --from=build /fulfillment /usr/local/bin/fulfillment
# Nothing is written outside it (the demo's SQLite file and secrets only, in demo mode).
WORKDIR /var/lib/fulfillment
USER 10001:10001
ENV BIND_ADDR=0.0.0.0 \
    SERVER_PORT=8014 \
    METRICS_ADDR=0.0.0.0:9464
# The API, and the metrics listener (keep it private).
EXPOSE 8014 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/fulfillment", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fulfillment"]
CMD ["serve"]
