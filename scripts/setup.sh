#!/usr/bin/env bash
# Idempotent set-up of everything hapool needs on a Debian 12 machine:
#   1. system packages (haproxy, nginx-light, socat, cron, docker.io, debootstrap, vagrant, wrk,
#      curl, sqlite3, iproute2, procps, python3-venv)
#   2. the Python virtual environment in .venv with the pinned requirements
#   3. a running Docker engine (dockerd started by hand when none answers)
#   4. the local base image (debootstrap + docker import; nothing is pulled)
#   5. the systemd image for tests/e2e/test_systemd.py (the base image + systemd, committed)
# Each step is skipped when already done, so a second run takes seconds.
#
# Usage: scripts/setup.sh [--no-docker]
#   --no-docker   skip steps 3 to 5 (enough for `make demo`, which uses the local provider)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
STATE="$ROOT/.state"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
WANT_DOCKER=1
[ "${1:-}" = "--no-docker" ] && WANT_DOCKER=0
mkdir -p "$STATE"

APT_PACKAGES=(haproxy nginx-light socat cron docker.io debootstrap wrk curl sqlite3 iproute2 procps)
APT_NO_RECOMMENDS=(vagrant)
# command that proves each package is there
declare -A PROBE=([haproxy]=haproxy [nginx-light]=nginx [socat]=socat [cron]=cron
                  [docker.io]=dockerd [debootstrap]=debootstrap [wrk]=wrk [curl]=curl
                  [sqlite3]=sqlite3 [iproute2]=ip [procps]=pgrep [vagrant]=vagrant)

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}" "${APT_NO_RECOMMENDS[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "${PROBE[$p]}" > /dev/null 2>&1 || echo "$p"
    done
    # Debian's python3 comes without venv/ensurepip: the virtual environment needs python3-venv.
    "$PYTHON" -c 'import ensurepip, venv' > /dev/null 2>&1 || echo python3-venv
}

# ---------------------------------------------------------------- 1. system packages
missing=$(missing_packages | tr '\n' ' ')
missing=${missing% }
if [ -n "$missing" ]; then
    regular=() ; norec=()
    for p in $missing; do
        if [[ " ${APT_NO_RECOMMENDS[*]} " == *" $p "* ]]; then norec+=("$p"); else regular+=("$p"); fi
    done
    is_debian=0
    [ -r /etc/os-release ] && grep -qE '^ID=debian' /etc/os-release && is_debian=1
    if [ "$(id -u)" -ne 0 ] || [ $is_debian -ne 1 ]; then
        {
            echo "[setup] ERROR: these system packages are missing: $missing"
            echo "[setup] hapool installs them itself only when run as root on Debian. Install them with:"
            echo "    sudo apt-get update"
            [ ${#regular[@]} -eq 0 ] || echo "    sudo apt-get install -y ${regular[*]}"
            [ ${#norec[@]} -eq 0 ] || echo "    sudo apt-get install -y --no-install-recommends ${norec[*]}"
            echo "[setup] then run 'make setup' again."
        } >&2
        exit 1
    fi
    log "installing system packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q > "$STATE/apt.log" 2>&1 || { tail -20 "$STATE/apt.log" >&2; die "apt-get update failed"; }
    if [ ${#regular[@]} -gt 0 ]; then
        apt-get install -y -q "${regular[@]}" >> "$STATE/apt.log" 2>&1 \
            || { tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
    fi
    if [ ${#norec[@]} -gt 0 ]; then
        apt-get install -y -q --no-install-recommends "${norec[@]}" >> "$STATE/apt.log" 2>&1 \
            || { tail -20 "$STATE/apt.log" >&2; die "apt-get install failed (log: $STATE/apt.log)"; }
    fi
    # Debian starts packaged services where it can; hapool runs its own instances.
    for svc in haproxy nginx; do
        [ -x "/etc/init.d/$svc" ] && "/etc/init.d/$svc" stop > /dev/null 2>&1 || true
    done
else
    log "system packages: present"
fi

# ---------------------------------------------------------------- 2. virtual environment
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "Python >= 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))"
req_hash=$(cat requirements/*.txt | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.hapool-requirements" 2>/dev/null)" = "$req_hash" ]; then
    log "virtual environment: up to date ($VENV)"
else
    log "creating virtual environment in $VENV (pinned requirements, about a minute)"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/test.txt \
        > "$STATE/pip.log" 2>&1 || { tail -20 "$STATE/pip.log" >&2; die "pip install failed (log: $STATE/pip.log)"; }
    echo "$req_hash" > "$VENV/.hapool-requirements"
fi

[ $WANT_DOCKER -eq 1 ] || { log "done (without Docker)"; exit 0; }

# ---------------------------------------------------------------- 3. Docker engine
if docker info > /dev/null 2>&1; then
    log "docker engine: answering"
else
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and only root can start dockerd here"
    log "starting dockerd (log: $STATE/dockerd.log)"
    # No systemd here: start the daemon by hand, detached from this shell.
    setsid nohup dockerd > "$STATE/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info > /dev/null 2>&1 && break
        sleep 1
    done
    docker info > /dev/null 2>&1 || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd did not answer within 60 s"; }
    log "docker engine: started"
fi

# ---------------------------------------------------------------- 4. base image
bash scripts/build-base-image.sh

# ---------------------------------------------------------------- 5. systemd image
# hapool/systemd:bookworm: the base image plus systemd as PID 1, for tests/e2e/test_systemd.py
# (the roles' systemd paths, run for real). Built from the base image with apt (the tests
# themselves reach no network) and committed; labelled with the base image's id, so it is
# rebuilt only when the base image changes. Needs no --privileged to run (see the test).
build_systemd_image() {
    local image=${HAPOOL_SYSTEMD_IMAGE:-hapool/systemd:bookworm}
    local base=${HAPOOL_BASE_IMAGE:-hapool/base:bookworm}
    local base_id have builder
    base_id=$(docker image inspect -f '{{.Id}}' "$base")
    have=$(docker image inspect -f '{{ index .Config.Labels "io.hapool.base" }}' "$image" 2>/dev/null || true)
    if [ "$have" = "$base_id" ]; then
        log "systemd image $image is up to date"
        return 0
    fi
    log "building $image from $base (apt-get install systemd)"
    builder="hapool-systemd-build-$$"
    docker rm -f "$builder" > /dev/null 2>&1 || true
    if ! docker run --name "$builder" "$base" sh -c 'apt-get update -q \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd systemd-sysv dbus \
            && apt-get clean && rm -rf /var/lib/apt/lists/*' > "$STATE/systemd-image.log" 2>&1; then
        docker rm -f "$builder" > /dev/null 2>&1 || true
        tail -20 "$STATE/systemd-image.log" >&2
        die "could not build $image"
    fi
    docker commit --change 'CMD ["/sbin/init"]' --change "LABEL io.hapool.base=$base_id" \
        "$builder" "$image" > /dev/null || { docker rm -f "$builder" > /dev/null; die "could not commit $image"; }
    docker rm -f "$builder" > /dev/null
    log "built $image"
}
build_systemd_image
log "done"
