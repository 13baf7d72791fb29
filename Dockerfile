# syntax=docker/dockerfile:1
# Multi-stage build: a static musl binary on distroless/static (CA certificates, a nonroot user,
# no shell). The crate uses rustls with ring, so no OpenSSL is needed at build or run time.
#
#   docker build -t ecs-power-controller:0.1.0 .
#   docker run --rm ecs-power-controller:0.1.0 --help
#
# The image holds the product only: built with `--no-default-features`, so the developer tools
# (`simulate`, `demo`, `bench`), the ECS simulator, kubesim and the simulator's default access
# key are not in the binary.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS builder
# musl-dev: the C runtime ring's assembly links against.
RUN apk add --no-cache musl-dev
WORKDIR /src
# The workspace manifests and sources (cargo loads every member's manifest, even the tools it
# does not build). Cache mounts keep the registry and the dependency builds between builds.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin ecs-power-controller \
    && cp target/release/ecs-power-controller /ecs-power-controller

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /ecs-power-controller /usr/local/bin/ecs-power-controller
# distroless's nonroot user; the Deployment also sets runAsUser/runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ecs-power-controller"]
CMD ["run", "--leader-elect", "--log-format=json"]
