# syntax=docker/dockerfile:1
#
# The ranq image: one binary that runs every role (migrate, producer, worker, serve, ...).
#
#   docker build -t ranq .
#   docker run --rm -p 8080:8080 -e REDIS_URL=redis://cache:6379 ranq serve
#
# Three build stages share a cargo-chef base: `planner` reduces the workspace to a recipe of its
# dependencies, `builder` compiles that recipe in a layer of its own (rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit) and then the ranq binary. The runtime stage holds the
# binary and the documented default configuration, nothing else.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# Pinned so that a new cargo-chef release cannot change a cached build's recipe format.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p ranq-cli --recipe-path recipe.json
COPY . .
# The migrations are compiled into the binary (sqlx::migrate!), so migrations/ is needed here only.
RUN cargo build --release --locked -p ranq-cli --bin ranq \
    && install -D -m 0755 target/release/ranq /out/ranq

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 ranq \
    && useradd --system --uid 10001 --gid ranq --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ranq
COPY --from=builder /out/ranq /usr/local/bin/ranq
# Every key with its default, for `ranq config show` to point at; Kubernetes mounts its ConfigMap
# over /etc/ranq. ranq writes nothing to disk, so the image also runs with a read-only root.
COPY config/default.toml /etc/ranq/ranq.toml
ENV RANQ_CONFIG=/etc/ranq/ranq.toml \
    RANQ_LOG_FORMAT=json \
    RANQ_READ__LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
# The check is for `ranq serve` (the CMD). The image carries no HTTP client and ranq has no
# health-check subcommand, so bash (already in the base image) asks /healthz over /dev/tcp: no
# package, no extra attack surface. Other roles override it (deploy/compose.yaml probes their
# metrics port); Kubernetes ignores it and uses the probes in deploy/k8s.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == HTTP/1.?' 200'* ]]"]
ENTRYPOINT ["ranq"]
CMD ["serve"]
