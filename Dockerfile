# leadsync: build in a full Rust image, run in a small Debian one as a non-root user.
#   docker build -t leadsync .
#   docker run --rm leadsync demo --once      # no file to mount: the rules and mapping are in the binary
#   docker run -d --name leadsync -p 8080:8080 \
#     -v $PWD/leadsync.toml:/etc/leadsync/leadsync.toml:ro -v leadsync-data:/var/lib/leadsync \
#     -e LEADSYNC__HUBSPOT__CLIENT_SECRET=… -e LEADSYNC__HUBSPOT__REFRESH_TOKEN=… leadsync
# Without a Docker engine or a registry (this project's CI machines), `.ci/container` builds this
# same file with buildah from a Debian root made by debootstrap and the binary cargo built on the
# host (BUILDER below), then runs it with podman.

# The stage or image holding /src/target/release/leadsync: the build stage below unless told
# otherwise (`--build-arg BUILDER=an-image`, when the rust image cannot be pulled).
ARG BUILDER=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
# Every target Cargo.toml declares needs a file, even the ones not built here.
RUN mkdir -p src benches tests && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in $(sed -n '/^\[\[bench\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do echo 'fn main() {}' > benches/$b.rs; done \
    && echo 'fn main() {}' > tests/tests.rs \
    && cargo build --release --locked && rm -rf src benches
COPY src src
COPY benches benches
# Compiled into the binary (include_str!): the shipped rules, mapping and annotated configuration.
COPY mappings mappings
COPY leadsync.example.toml ./
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM ${BUILDER} AS binary

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/leadsync --create-home leadsync
COPY --from=binary /src/target/release/leadsync /usr/local/bin/leadsync
# The shipped mappings beside the configuration: a mounted leadsync.toml that keeps the default
# relative paths (mappings/…) reads these, or mount your own over them.
COPY mappings /etc/leadsync/mappings
COPY leadsync.example.toml /etc/leadsync/leadsync.example.toml
USER leadsync
WORKDIR /var/lib/leadsync
VOLUME ["/var/lib/leadsync"]
# No LEADSYNC__RULES__PATH here: the environment wins over the file, and would override the
# rules.path of a mounted configuration. JSON logs for the log shipper; `-e LEADSYNC__LOG__FORMAT=text` for people.
ENV LEADSYNC_CONFIG=/etc/leadsync/leadsync.toml \
    LEADSYNC__STORE__URL=sqlite:///var/lib/leadsync/leadsync.db \
    LEADSYNC__SERVER__BIND=0.0.0.0:8080 \
    LEADSYNC__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["leadsync"]
CMD ["run"]
