# zcc-rtms container image: built in a Rust image, run from a distroless one
# (glibc, no shell, no package manager) as a non-root user.
#
#   docker build -t zcc-rtms .
#   docker run -p 3001:3001 -v zcc-data:/data zcc-rtms        # demo mode
#   docker compose up                                         # app + Redis

# --- build -------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: a source change does not rebuild them.
# The workspace has two members, the app (here) and the simulator (sim/).
COPY Cargo.toml Cargo.lock ./
COPY sim/Cargo.toml ./sim/
RUN mkdir src sim/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs sim/src/lib.rs \
 && cargo build --release --locked --bin zcc-rtms \
 && rm -rf src sim/src

COPY src ./src
COPY sim/src ./sim/src
COPY assets ./assets
# Cargo skips a rebuild of files older than the stand-ins built above.
RUN touch src/main.rs src/lib.rs sim/src/lib.rs \
 && cargo build --release --locked --bin zcc-rtms \
 && install -D target/release/zcc-rtms /out/zcc-rtms \
 && mkdir -p /out/data

# --- run ---------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/zcc-rtms /usr/local/bin/zcc-rtms
# The embedded store (one redb file) lives here; mount a volume on it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV DATA_DIR=/data \
    BIND_ADDR=0.0.0.0 \
    BACKEND_PORT=3001 \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3001
# `healthcheck` asks GET /health on BACKEND_PORT of this container (no shell or curl needed).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/zcc-rtms", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/zcc-rtms"]
CMD ["serve"]
