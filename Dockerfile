# leadsync: build in a full Rust image, run in a small Debian one as a non-root user.
#   docker build -t leadsync .
#   docker run -d --name leadsync -p 8080:8080 \
#     -v $PWD/leadsync.toml:/etc/leadsync/leadsync.toml:ro -v leadsync-data:/var/lib/leadsync \
#     -e LEADSYNC__HUBSPOT__CLIENT_SECRET=… -e LEADSYNC__HUBSPOT__REFRESH_TOKEN=… leadsync

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in evaluate hubspot_budget; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/leadsync --create-home leadsync
COPY --from=build /src/target/release/leadsync /usr/local/bin/leadsync
COPY mappings /etc/leadsync/mappings
COPY leadsync.example.toml /etc/leadsync/leadsync.example.toml
USER leadsync
WORKDIR /var/lib/leadsync
VOLUME ["/var/lib/leadsync"]
ENV LEADSYNC_CONFIG=/etc/leadsync/leadsync.toml \
    LEADSYNC__STORE__URL=sqlite:///var/lib/leadsync/leadsync.db \
    LEADSYNC__SERVER__BIND=0.0.0.0:8080 \
    LEADSYNC__RULES__PATH=/etc/leadsync/mappings/lifecycle.toml \
    LEADSYNC__SALESFORCE__MAPPING_PATH=/etc/leadsync/mappings/salesforce.toml
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["leadsync"]
CMD ["run"]
