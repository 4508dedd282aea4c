#!/usr/bin/env bash
# Build the local base image used by the docker and vagrant providers and by molecule
# (web hosts run its nginx; balancer containers in molecule run its haproxy).
#
# No registry is reachable from the machines this project runs on, so nothing is pulled:
# a Debian bookworm root file system is made with debootstrap and imported with
# `docker import`. The image carries a label with a hash of this recipe; when an image
# with the same hash exists the build is skipped (a second `make setup` takes seconds).
set -euo pipefail

IMAGE="${HAPOOL_BASE_IMAGE:-hapool/base:bookworm}"
MIRROR="${HAPOOL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES="nginx-light,haproxy,socat,python3,python3-apt,procps,curl,ca-certificates,iproute2"

recipe_hash=$( { cat "$0"; echo "$IMAGE $SUITE $PACKAGES"; } | sha256sum | cut -c1-16)

have=$(docker image inspect -f '{{ index .Config.Labels "io.hapool.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$recipe_hash" ]; then
    echo "base image $IMAGE is up to date (recipe $recipe_hash)"
    exit 0
fi

echo "building base image $IMAGE from debootstrap $SUITE (recipe $recipe_hash)..."
work=$(mktemp -d /var/tmp/hapool-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

# Keep the image small and free of this machine's state.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/log/*.log "$rootfs"/tmp/*
echo "deb $MIRROR $SUITE main" > "$rootfs/etc/apt/sources.list"
: > "$rootfs/etc/machine-id"

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'CMD ["nginx", "-g", "daemon off;"]' \
    --change 'EXPOSE 80' \
    --change "LABEL io.hapool.recipe=$recipe_hash" \
    - "$IMAGE" > /dev/null
echo "built $IMAGE"
