# syntax=docker/dockerfile:1
#
# fanout's container image: one static binary on distroless, run as the
# non-root user 65532. Every role is a subcommand (ENTRYPOINT ["/fanout"],
# then e.g. args [projector, --config, /etc/fanout/fanout.yaml]).
#
#   docker build --build-arg VERSION=0.1.0 -t ghcr.io/fanout-dev/fanout:0.1.0 .
#
# Built with -tags fanout_nodev: `fanout dev` and what it embeds (kfake,
# FerretDB on SQLite, the dev wiring) stay out of the image, which makes the
# binary much smaller (sizes measured in docs/operations.md, "The image").
# `fanout simulate` stays in: it is small and useful against a staging stack.
#
# No Docker engine runs on the project's machines, so this file is not built
# in CI; the same `go build` command is (docs/operations.md).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -tags fanout_nodev -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/fanout ./cmd/fanout

# Pinned by tag, not by digest: the digest of :nonroot cannot be resolved
# from the project's machines (no registry but the package registries is
# reachable), and a digest copied from elsewhere could not be checked. When
# releasing, resolve it where a registry is reachable and pin it here:
#   crane digest gcr.io/distroless/static-debian12:nonroot
#   FROM gcr.io/distroless/static-debian12:nonroot@sha256:<digest>
# (and let Renovate or Dependabot keep it current).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fanout /fanout
# nonroot, numerically: the kubelet can only verify runAsNonRoot against a
# numeric user.
USER 65532:65532
# The admin listener: /healthz, /readyz, /metrics (and the admin API for
# `fanout admin`). Set FANOUT_ADMIN_LISTEN=0.0.0.0:9464 in a container.
EXPOSE 9464
ENTRYPOINT ["/fanout"]
