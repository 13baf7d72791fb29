# syntax=docker/dockerfile:1
# Multi-stage build: a static musl binary on distroless/static (CA certificates, a nonroot user,
# no shell). The crate uses rustls with ring, so no OpenSSL is needed at build or run time.
#
#   docker build -t ecs-power-controller:0.1.0 .
#   docker run --rm ecs-power-controller:0.1.0 --help

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS builder
# musl-dev: the C runtime ring's assembly links against.
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, in their own layer, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/simulator.rs \
    && cargo build --release --locked --bin ecs-power-controller \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Touch so cargo sees the real sources as newer than the dependency-only build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin ecs-power-controller \
    && cp target/release/ecs-power-controller /ecs-power-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /ecs-power-controller /usr/local/bin/ecs-power-controller
# distroless's nonroot user; the Deployment also sets runAsUser/runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ecs-power-controller"]
CMD ["run", "--leader-elect", "--log-format=json"]
