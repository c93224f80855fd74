#!/usr/bin/env bash
# compose.example.yml with the kernel fast path, as its commented lines say (root in the
# container with NET_ADMIN and NET_BIND_SERVICE only, host networking, the host's xtables
# lock), proved from a client in a network namespace, as from another host; then taken down,
# and the table and the DOCKER-USER accept checked gone.
#
#   scripts/try-fast-path.sh          # as root; Docker, ip, nft, conntrack
#
# The client namespace gdsf-PID is wired to the host by a veth pair (host 198.18.2.1/24,
# client 198.18.2.2); the example's listeners bind 198.18.2.1. The two example services run
# the test kit's echo image, as in scripts/try-compose.sh. Checks: ssh and dns on the kernel
# path in /api/routes, the game (it sleeps) in userspace with its reason; TCP 2222 and UDP 5353 echo from the namespace; conntrack shows the
# client's own address reaching the container (DNAT, no proxy); the kernel counted it; after
# `down -v` no table inet godoxy_streams and no godoxy-streams rule in DOCKER-USER. Holds the
# kernel tests' lock while it runs (both own the table). Undone on every exit.
#
# Environment: PROJECT (gds-fastpath), IMAGE (godoxy-streams:latest), PYTHON
# (.venv/bin/python), API_PORT (18899: the status API on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${PROJECT:-gds-fastpath}
IMAGE=${IMAGE:-godoxy-streams:latest}
PYTHON=${PYTHON:-.venv/bin/python}
NS=gdsf-$$
HOST_IP=198.18.2.1
CLIENT_IP=198.18.2.2
VETH=gdsf$$
API_PORT=${API_PORT:-18899}
COMPOSE=(docker-compose)
command -v docker-compose >/dev/null || COMPOSE=(docker compose)

log() { printf '==> %s\n' "$*" >&2; }
in_ns() { ip netns exec "$NS" "$@"; }
ours() { iptables-nft -w 5 -S DOCKER-USER 2>/dev/null | grep -c 'godoxy-streams' || true; }

exec 9>/run/lock/godoxy-streams-kernel-tests.lock
flock -w 600 9 || { echo "try-fast-path: the kernel tests hold the table" >&2; exit 1; }
for port in tcp:2222 udp:5353 tcp:25565 tcp:$API_PORT; do
    if ss -Hln --"${port%%:*}" "sport = :${port#*:}" | grep -q .; then
        echo "try-fast-path: ${port#*:}/${port%%:*} is already in use on this host" >&2
        exit 1
    fi
done
if ip -4 -o addr show | grep -q " $HOST_IP/"; then
    echo "try-fast-path: $HOST_IP is in use on this host" >&2
    exit 1
fi
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is missing: scripts/build-image.sh"
    IMAGE=$IMAGE scripts/build-image.sh >/dev/null
fi
ECHO_IMAGE=$("$PYTHON" -c 'import docker
from tests.docker.kit import ensure_image
print(ensure_image(docker.from_env()))')
export GODOXY_STREAMS_IMAGE=$IMAGE SSH_IMAGE=$ECHO_IMAGE DNS_IMAGE=$ECHO_IMAGE GAME_IMAGE=$ECHO_IMAGE
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID

override=$(mktemp --suffix=.yml /tmp/gds-try-fast-path.XXXXXX)
cat >"$override" <<YAML
services:
  godoxy-streams:
    user: "0:10001"                # root for nft, conntrack, iptables; group godoxy: the filter
    cap_add: [NET_BIND_SERVICE, NET_ADMIN]
    environment:
      GODOXY_STREAMS_DEFAULT_BIND: $HOST_IP   # this trial: the client namespace's host side
      GODOXY_STREAMS_FAST_PATH: nftables
      GODOXY_STREAMS_API: 127.0.0.1:$API_PORT
    volumes:
      - /run/xtables.lock:/run/xtables.lock
YAML
compose() {
    "${COMPOSE[@]}" -f compose.example.yml -f scripts/compose-echo.yml -f "$override" \
        -p "$PROJECT" "$@"
}

cleanup() {  # on every exit: the daemon's last lines on a failure, then everything undone
    local rc=$?
    ((rc == 0)) || compose logs --no-color --tail 40 godoxy-streams >&2 || true
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    ip link del "${VETH}h" 2>/dev/null || true  # at once (a namespace goes in the background)
    ip netns del "$NS" 2>/dev/null || true
    rm -f "$override" "$override.log"
    ((rc == 0)) || log "FAILED (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "client namespace $NS: $CLIENT_IP -> $HOST_IP"
ip netns add "$NS"
ip link add "${VETH}h" type veth peer name "${VETH}c"
ip link set "${VETH}c" netns "$NS"
ip addr add "$HOST_IP/24" dev "${VETH}h"
ip link set "${VETH}h" up
in_ns ip addr add "$CLIENT_IP/24" dev "${VETH}c"
in_ns ip link set "${VETH}c" up
in_ns ip link set lo up
in_ns ip route add default via "$HOST_IP"

log "up -d (project $PROJECT)"
compose up -d --no-build

log "waiting for ssh and dns on the kernel path, the sleeping game in userspace"
API_PORT=$API_PORT "$PYTHON" - <<'PY'
import json, os, time, urllib.request

API = f"http://127.0.0.1:{os.environ['API_PORT']}"

deadline = time.monotonic() + 90
while True:
    try:
        with urllib.request.urlopen(f"{API}/api/routes", timeout=3) as r:
            routes = json.load(r)["routes"]
        paths = {(r["alias"], r["scheme"]): r["path"] for r in routes}
        if paths == {
            ("ssh", "tcp"): "kernel",
            ("dns", "tcp"): "kernel",
            ("dns", "udp"): "kernel",
            ("game", "tcp"): "userspace",  # it sleeps: the daemon holds clients while it wakes
        } and all(r["path_reason"] for r in routes):
            break
    except OSError:
        routes = []
    if time.monotonic() > deadline:
        raise SystemExit(f"try-fast-path: routes not on their paths: {routes}")
    time.sleep(0.5)
for route in routes:
    print("route", route["alias"], route["scheme"], f"{route['bind']}:{route['listen_port']}",
          "path", route["path"], "-", route["path_reason"])
with urllib.request.urlopen(f"{API}/healthz", timeout=3) as r:
    print("healthz fast_path:", json.load(r)["fast_path"])
PY

log "TCP and UDP from the client namespace"
in_ns env HOST="$HOST_IP" "$PYTHON" - <<'PY'
import os, socket

host = os.environ["HOST"]
with socket.create_connection((host, 2222), timeout=3) as conn:
    conn.sendall(b"hello over tcp 2222\n")
    conn.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
assert data == b"hello over tcp 2222\n", data
print(f"tcp {host}:2222 ->", data)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(2)
    sock.sendto(b"hello over udp 5353", (host, 5353))
    data = sock.recv(4096)
assert data == b"hello over udp 5353", data
print(f"udp {host}:5353 ->", data)
PY

log "conntrack: the client's own address reached the container (DNAT, no proxy)"
conntrack -L -m 0x47440000/0xffff0000 2>/dev/null | grep "src=$CLIENT_IP" | tee /dev/stderr |
    grep -q " sport=22 dport="  # the reply comes from the container's port 22
API_PORT=$API_PORT "$PYTHON" - <<'PY'
import json, os, time, urllib.request

API = f"http://127.0.0.1:{os.environ['API_PORT']}"

deadline = time.monotonic() + 10  # the kernel's counters are read at most once a second
while True:
    with urllib.request.urlopen(f"{API}/api/routes", timeout=3) as r:
        ssh = next(route for route in json.load(r)["routes"] if route["alias"] == "ssh")
    if ssh["paths"]["kernel"]["total"] >= 1 or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print("ssh paths:", ssh["paths"])
assert ssh["paths"]["kernel"]["total"] >= 1, ssh
PY
log "the table and the DOCKER-USER accept while it runs"
nft list tables | grep 'inet godoxy_streams'
[[ $(ours) == 1 ]]

log "down: the table and the accept must go with the daemon"
daemon=$(compose ps -q godoxy-streams)
docker logs -f "$daemon" >"$override.log" 2>&1 &  # its last words survive the removal
compose down -v --remove-orphans >&2
wait
tail -4 "$override.log" >&2
if nft list tables | grep -q godoxy_streams; then
    echo "try-fast-path: table inet godoxy_streams left behind" >&2
    exit 1
fi
[[ $(ours) == 0 ]]
log "OK"
