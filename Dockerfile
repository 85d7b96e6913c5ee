# Multi-stage build of the server, the listener and the admin tool.
#   docker build -t inventory-kit .
#   docker run -p 8080:8080 -e JWT_SECRET=... -e DATABASE_URL=postgres://... inventory-kit
#   docker run inventory-kit listener        # the orders listener alone
#   docker run inventory-kit admin --help    # operations
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --features firestore \
      --example server --example listener --example admin \
 && mkdir /out \
 && cp target/release/examples/server target/release/examples/listener target/release/examples/admin /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /data inventory && mkdir -p /data && chown inventory /data
COPY --from=build /out/ /usr/local/bin/
USER inventory
WORKDIR /data
ENV PORT=8080 LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT}"]
ENTRYPOINT ["/bin/sh", "-c", "cmd=${1:-server}; [ $# -gt 0 ] && shift; exec \"/usr/local/bin/$cmd\" \"$@\"", "--"]
