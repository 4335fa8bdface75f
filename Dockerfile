# One image for every role: `adoport ingest|transform|publish|all|sim`.
# Build:  docker build -t adoport .

FROM rust:1.95-bookworm AS build
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
    cargo build --release --locked -p adoport && \
    rm -rf shared/src ingest/src transform/src publish/src sim/src cli/src tests/src
COPY . .
# Touch the sources so cargo rebuilds them over the placeholder build.
RUN find shared ingest transform publish sim cli -name '*.rs' -exec touch {} + && \
    cargo build --release --locked -p adoport && \
    cp target/release/adoport /adoport

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 --no-create-home adoport
COPY --from=build /adoport /usr/local/bin/adoport
USER 10001
# Ocean's port: the webhook receiver and probes.
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/adoport"]
CMD ["--help"]
