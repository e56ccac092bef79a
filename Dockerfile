# tokengate in a container: a release build on the Rust image, run as a non-root user on Debian
# slim with its state on the /data volume.
#
#   docker build -t tokengate .
#   docker run -d --name tokengate -p 8080:8080 -v tokengate-data:/data \
#     -e ELASTIC_PASSWORD=changeme tokengate --upstream http://elasticsearch:9200
#   docker exec -it tokengate tokengate users add alice -r superuser
#
# With the etcd store (several gateways, e.g. packaging/kubernetes): --build-arg FEATURES=etcd.
# packaging/check.sh runs the same build commands (and this build, where docker is present).

# The toolchain the crate declares as its minimum (Cargo.toml, rust-version).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# Cargo features to build in; empty for the default build. FEATURES=etcd adds the etcd store,
# for several gateways sharing one token set (packaging/kubernetes needs it):
#   docker build --build-arg FEATURES=etcd -t tokengate .
# The etcd client's generated gRPC code needs protoc and the protobuf well-known types.
ARG FEATURES=""
RUN case "$FEATURES" in *etcd*) \
      apt-get update \
      && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
      && rm -rf /var/lib/apt/lists/* ;; \
    esac
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tokengate --features "$FEATURES" \
 && install -D -m 0755 target/release/tokengate /out/tokengate

FROM debian:bookworm-slim
# CA roots for https:// upstreams that trust the system store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin tokengate \
 && install -d -m 0700 -o tokengate -g tokengate /data
COPY --from=build /out/tokengate /usr/local/bin/tokengate
COPY packaging/docker.toml /etc/tokengate/tokengate.toml
# Read by every subcommand, so `docker exec … tokengate users …` edits the same /data.
ENV TOKENGATE_CONFIG=/etc/tokengate/tokengate.toml
USER tokengate
VOLUME ["/data"]
EXPOSE 8080 9901
# The admin listener (packaging/docker.toml) listens on every interface: /livez and /readyz
# answer anyone, the status page asks for a monitor user. The health check asks /readyz on the
# container's loopback; it is 200 only when the gateway serves and the cluster accepts
# connections.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/9901 && printf "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3 && IFS= read -r status <&3 && [[ $status == "HTTP/1.1 200"* ]]'
ENTRYPOINT ["tokengate"]
