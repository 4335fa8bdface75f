# One image for every role: `adoport all|ingest|transform|publish|sim|…`.
# Build:  docker build -t adoport .
# Run:    docker run --rm -e OCEAN__… adoport        (no arguments: `adoport all`, as the Python
#         integration's image runs the whole integration with none)

FROM rust:1.95-trixie AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/Cargo.toml
COPY ingest/Cargo.toml ingest/Cargo.toml
COPY transform/Cargo.toml transform/Cargo.toml
COPY publish/Cargo.toml publish/Cargo.toml
COPY sim/Cargo.toml sim/Cargo.toml
COPY cli/Cargo.toml cli/Cargo.toml
COPY tests/Cargo.toml tests/Cargo.toml
RUN for crate in shared ingest transform publish sim cli tests; do \
      mkdir -p $crate/src && echo "" > $crate/src/lib.rs; \
    done && echo "fn main() {}" > cli/src/main.rs && \
    cargo build --profile dist --locked -p adoport && \
    rm -rf shared/src ingest/src transform/src publish/src sim/src cli/src tests/src
COPY . .
# Touch the sources so cargo rebuilds them over the placeholder build. The `dist` profile
# (Cargo.toml) is release without debug line tables, with fat LTO and one codegen unit (a
# smaller binary, fewer of its pages resident per process; its link is slow):
# scripts/binary-size.sh prints the sizes.
RUN find shared ingest transform publish sim cli -name '*.rs' -exec touch {} + && \
    cargo build --profile dist --locked -p adoport && \
    cp target/dist/adoport /adoport

FROM debian:trixie-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="adoport" \
      org.opencontainers.image.description="Azure DevOps to Port, as an event-driven pipeline; a drop-in for Port's Python Azure DevOps integration" \
      org.opencontainers.image.source="https://github.com/adoport/adoport" \
      org.opencontainers.image.url="https://github.com/adoport/adoport" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --no-create-home adoport
COPY --from=build /adoport /usr/local/bin/adoport
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001
# 8000: Ocean's port (webhooks, POST /resync, /health/live, /health/ready).
# 9000: /healthz, /readyz and /metrics (ADOPORT__HEALTH__LISTEN).
EXPOSE 8000 9000
ENTRYPOINT ["/usr/local/bin/adoport"]
CMD ["all"]
