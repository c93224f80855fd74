#!/usr/bin/env bash
# Build the godoxy-streams container image without a container registry.
#
#   scripts/build-image.sh            # -> godoxy-streams:latest on godoxy-streams-base:bookworm
#
# 1. The base image: when $BASE is not present locally it is made with debootstrap (Debian
#    bookworm minbase + python3, python3-venv, libcap2-bin) and `docker import`ed. Needs root,
#    debootstrap and a Debian mirror; an existing $BASE is reused as is, so a second run only
#    rebuilds the image. BASE=python:3.12-slim works too where a registry is reachable.
# 2. A wheelhouse: `pip wheel . -w build/wheels` on the host (PyPI is reached from here, not
#    from inside `docker build`), which the Dockerfile installs with --no-index; removed after.
# 3. docker build --build-arg BASE=$BASE -t $IMAGE .
#
# Environment: BASE (godoxy-streams-base:bookworm), IMAGE (godoxy-streams:latest),
# SUITE (bookworm), MIRROR (http://deb.debian.org/debian), PYTHON (.venv/bin/python or python3).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-godoxy-streams-base:bookworm}
IMAGE=${IMAGE:-godoxy-streams:latest}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
WHEELS=build/wheels

log() { printf '==> %s\n' "$*" >&2; }

make_base() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "build-image: making $BASE with debootstrap needs root" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        echo "build-image: debootstrap is missing (apt-get install debootstrap)" >&2
        exit 1
    fi
    local work
    work=$(mktemp -d /tmp/godoxy-streams-base.XXXXXX)
    # shellcheck disable=SC2064  # expand $work now: it is local
    trap "rm -rf '$work'" EXIT
    log "debootstrap $SUITE (minbase + python3) into $work/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,libcap2-bin \
        "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        exit 1
    }
    # What a base image does not need: package lists, caches, docs, man pages.
    rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin \
        "$work"/rootfs/var/cache/debconf/*-old "$work"/rootfs/usr/share/doc/* \
        "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/* \
        "$work"/rootfs/var/log/*.log
    log "docker import -> $BASE"
    tar --numeric-owner --xattrs -C "$work/rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$BASE" >/dev/null
    rm -rf "$work"
    trap - EXIT
}

if docker image inspect "$BASE" >/dev/null 2>&1; then
    log "reusing base image $BASE"
elif [[ $BASE == godoxy-streams-base:* ]]; then
    make_base
else
    log "base image $BASE is not local: docker build will try to pull it"
fi

log "wheelhouse $WHEELS ($PYTHON -m pip wheel .)"
rm -rf "$WHEELS"
# Never left behind (a stale wheelhouse would be installed by a later build), nor setuptools' tree.
trap 'rm -rf "$WHEELS" build/lib build/bdist.*; rmdir build 2>/dev/null || true' EXIT
mkdir -p "$WHEELS"
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$WHEELS" . >&2

log "docker build -t $IMAGE"
docker build --build-arg BASE="$BASE" -t "$IMAGE" .
# Only this Dockerfile's own leftovers: its untagged build stages and replaced final images.
for label in godoxy-streams.stage=build org.opencontainers.image.title=godoxy-streams; do
    docker image prune -f --filter "label=$label" >/dev/null
done
docker image inspect --format '{{.Id}} {{.Size}} bytes' "$IMAGE"
