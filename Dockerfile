# syntax=docker/dockerfile:1
# ferry's image: one static (musl) binary on distroless, running as non-root.
#
# Every platform is cross-compiled on the builder's own architecture (tonistiigi/xx sets up
# clang, lld and the target's sysroot), so a multi-platform build needs no QEMU:
#   docker buildx build --platform linux/amd64,linux/arm64 -t ferry .
# The last stage is the image; the `binary` stage is the same static binary on its own.

ARG RUST_VERSION=1.95.0
ARG XX_VERSION=1.9.0

FROM --platform=$BUILDPLATFORM tonistiigi/xx:${XX_VERSION} AS xx

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-alpine AS build
# xx is a scratch image of shell scripts, meant to be copied in whole.
# hadolint ignore=DL3067
COPY --from=xx / /
# clang and lld: xx's cross compiler and linker (aws-lc-sys, under rustls and the AWS SDK,
# compiles C and assembly for the target); cmake, make and perl: aws-lc-sys's CMake builder,
# should it fall back to it; file: xx-verify. Alpine keeps one version of each per release,
# which the pinned rust image fixes.
# hadolint ignore=DL3018
RUN apk add --no-cache clang lld cmake make perl file
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Crates once for every platform (before TARGETPLATFORM, so this step is shared).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo fetch --locked

ARG TARGETPLATFORM
# The target's C library and libgcc for linking.
# hadolint ignore=DL3018
RUN xx-apk add --no-cache musl-dev gcc
# musl targets link statically by default; xx-verify fails the build if the result is not.
# One target/ cache for all platforms: each target's output has its own target/TRIPLE/, the
# build scripts (built for the build platform) are shared, and cargo locks the directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    xx-cargo build --release --locked --bin ferry && \
    out="target/$(xx-cargo --print-target-triple)/release/ferry" && \
    xx-verify --static "$out" && \
    cp "$out" /ferry

# The static binary alone, for release downloads:
#   docker buildx build --platform linux/amd64,linux/arm64 --target binary --output type=local,dest=dist .
FROM scratch AS binary
COPY --from=build /ferry /ferry

# CA certificates, /tmp and a nonroot user (65532), nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Move container images between registries by digest, byte-exact; promote, mirror, roll back" \
      org.opencontainers.image.source="https://github.com/acme/ferry" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /ferry /usr/local/bin/ferry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ferry"]
