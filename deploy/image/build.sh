#!/usr/bin/env bash
# Builds fanout's container image without pulling anything from a registry:
# the static binary is built here, outside any container, and the image is
# assembled FROM scratch with it, Debian's CA certificates and a passwd entry
# for uid 65532: what distroless/static gives, with no base image to pull.
#
#   deploy/image/build.sh                 # image fanout:$VERSION and fanout:dev
#   IMAGE=registry.example/fanout:1.2.3 deploy/image/build.sh
#   IMAGE_TOOL=docker deploy/image/build.sh   # or buildah; default podman
#
# The build context is build/image/ (ignored by git): rootfs/ holds the
# image's whole file tree and the Dockerfile at the repository's root copies
# it as it is, so `docker build -f Dockerfile build/image` gives the same
# image where Docker is at hand.
#
# Environment: VERSION (default: git describe, else dev), IMAGE (default
# fanout:$VERSION), IMAGE_TOOL (podman | buildah | docker), GO (go).
#
# Measured (2-core machine, podman 4.3.1 with runc, 2026-12-01): the binary
# build dominates (about a minute from a cold build cache, a few seconds
# warm); assembling and committing the image took under 2 s.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
GO="${GO:-go}"
tool="${IMAGE_TOOL:-podman}"
version="${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}"
image="${IMAGE:-fanout:$version}"
ctx="$root/build/image"
certs="${FANOUT_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf 'image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v "$tool" >/dev/null || die "$tool is not installed (Debian: apt-get install podman runc)"
[[ -s "$certs" ]] || die "$certs is missing (Debian: apt-get install ca-certificates)"

t0=$SECONDS
rm -rf "$ctx"
# /etc/fanout is where the manifests mount the configuration: present in the
# image, a mount point leaves the container's own layer untouched.
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/etc/fanout" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
log "building the binary (CGO_ENABLED=0, -trimpath, -tags fanout_nodev, version $version)"
(cd "$root" && CGO_ENABLED=0 "$GO" build -tags fanout_nodev -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version" -o "$ctx/rootfs/fanout" ./cmd/fanout)
cp "$certs" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
# Mount points the container runtime binds (name resolution), present so
# that running the image changes nothing in its own layer.
: >"$ctx/rootfs/etc/hosts"
: >"$ctx/rootfs/etc/hostname"
: >"$ctx/rootfs/etc/resolv.conf"
printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
# The user the image runs as, by name too (distroless calls it nonroot).
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
cp "$root/Dockerfile" "$ctx/Dockerfile"

log "assembling $image with $tool"
case "$tool" in
podman | docker) "$tool" build -q --build-arg "VERSION=$version" -t "$image" -t fanout:dev -f "$ctx/Dockerfile" "$ctx" >/dev/null ;;
buildah) buildah bud -q --build-arg "VERSION=$version" -t "$image" -t fanout:dev -f "$ctx/Dockerfile" "$ctx" >/dev/null ;;
*) die "IMAGE_TOOL=$tool: use podman, buildah or docker" ;;
esac
size="$("$tool" image inspect --format '{{.Size}}' "$image" 2>/dev/null || echo '?')"
log "built $image (also tagged fanout:dev) in $((SECONDS - t0)) s; image size $size bytes"
echo "$image"
