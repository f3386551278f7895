# Builds the single `gatehouse` binary; docker-compose.yml runs it as issuer and verifier.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gatehouse

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/gatehouse --create-home gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
USER gatehouse
WORKDIR /var/lib/gatehouse
ENV GATEHOUSE_LISTEN=0.0.0.0:50051 \
    GATEHOUSE_DATA_DIR=/var/lib/gatehouse/data \
    GATEHOUSE_LOG_FORMAT=json
EXPOSE 50051
ENTRYPOINT ["gatehouse"]
CMD ["serve"]
