# fanout's container image: one static binary, run as the non-root user
# 65532, on an empty base. Every role is a subcommand (ENTRYPOINT ["/fanout"],
# then e.g. args [projector, --config, /etc/fanout/fanout.yaml]).
#
# The image is assembled, not compiled, here: `make image`
# (deploy/image/build.sh) builds the binary outside any container
# (CGO_ENABLED=0, -trimpath, -tags fanout_nodev, version stamped) and lays
# out build/image/rootfs/: the binary, Debian's CA certificates, a passwd
# and group entry for uid 65532 and an empty /tmp. Nothing is pulled from a
# registry, so it builds with podman, buildah or Docker alike:
#
#   make image                                    # podman (IMAGE_TOOL=docker|buildah)
#   docker build -f Dockerfile build/image        # after make image's layout step
#
# That is what distroless/static gives (CA certificates, a nonroot user, no
# shell, no package manager), with one file tree to check: `make
# image-test` runs the projector, the relay and a worker in this image with
# the Kubernetes manifests' command, args, env and read-only root.
#
# Built with -tags fanout_nodev: `fanout dev` and what it embeds (kfake,
# FerretDB on SQLite, the dev wiring) stay out of the image. `fanout
# simulate` stays in: it is small and useful against a staging stack.
FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="fanout" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/fanout-dev/fanout"
COPY rootfs/ /
# nonroot, numerically: the kubelet can only verify runAsNonRoot against a
# numeric user.
USER 65532:65532
# The admin listener: /healthz, /readyz, /metrics (and the admin API for
# `fanout admin`). Set FANOUT_ADMIN_LISTEN=0.0.0.0:9464 in a container.
EXPOSE 9464
ENTRYPOINT ["/fanout"]
