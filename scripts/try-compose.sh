#!/usr/bin/env bash
# Run compose.example.yml for real and prove it from the host, then take it all down again.
#
#   scripts/try-compose.sh
#
# The three example services run the test kit's echo image (tests/docker/kit.py, built locally:
# nothing is pulled) as SSH_IMAGE / DNS_IMAGE / GAME_IMAGE, listening on TCP 22, on UDP+TCP 53
# and on TCP 25565 (scripts/compose-echo.yml), with an override that lets the game sleep after
# 2s idle and binds the daemon's listeners to 127.0.0.1 only. Checks: TCP to 127.0.0.1:2222 and UDP to
# 127.0.0.1:5353 echo; the game goes to sleep (stopped through the filter) and a connection to
# 127.0.0.1:25565 wakes it and is echoed; GET 127.0.0.1:8899/healthz is 200; the daemon's
# container has no engine socket and its filter refuses a write (403). `down -v` runs on every
# exit, failure included. Builds godoxy-streams:latest with scripts/build-image.sh if missing.
#
# Environment: PROJECT (gds-example), IMAGE (godoxy-streams:latest), PYTHON (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${PROJECT:-gds-example}
IMAGE=${IMAGE:-godoxy-streams:latest}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    COMPOSE=(docker compose)
fi

log() { printf '==> %s\n' "$*" >&2; }

for port in tcp:2222 udp:5353 tcp:25565 tcp:8899; do
    if ss -Hln --"${port%%:*}" "sport = :${port#*:}" | grep -q .; then
        echo "try-compose: ${port#*:}/${port%%:*} is already in use on this host" >&2
        exit 1
    fi
done

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is missing: scripts/build-image.sh"
    IMAGE=$IMAGE scripts/build-image.sh >/dev/null
fi
ECHO_IMAGE=$("$PYTHON" -c 'import docker
from tests.docker.kit import ensure_image
print(ensure_image(docker.from_env()))')
log "example services run $ECHO_IMAGE"

export GODOXY_STREAMS_IMAGE=$IMAGE SSH_IMAGE=$ECHO_IMAGE DNS_IMAGE=$ECHO_IMAGE GAME_IMAGE=$ECHO_IMAGE
DOCKER_GID=$(stat -c %g /var/run/docker.sock)
export DOCKER_GID

override=$(mktemp --suffix=.yml /tmp/gds-try-compose.XXXXXX)
cat >"$override" <<'YAML'
services:
  godoxy-streams:
    environment:
      GODOXY_STREAMS_DEFAULT_BIND: 127.0.0.1   # this trial: listeners on loopback only
  game:
    labels:
      proxy.idle_timeout: 2s         # this trial: asleep soon
      proxy.stop_timeout: 2s
YAML
compose() {
    "${COMPOSE[@]}" -f compose.example.yml -f scripts/compose-echo.yml -f "$override" \
        -p "$PROJECT" "$@"
}

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        log "FAILED (exit $rc); the last logs:"
        compose logs --no-color --tail 40 >&2 || true
    fi
    log "down -v"
    compose down -v --remove-orphans >&2 || true
    rm -f "$override"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "up -d (project $PROJECT)"
compose up -d --no-build

log "waiting for /healthz"
deadline=$((SECONDS + 90))
until [[ $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8899/healthz) == 200 ]]; do
    if ((SECONDS > deadline)); then
        echo "try-compose: /healthz did not become 200 within 90s" >&2
        exit 1
    fi
    sleep 1
done
compose ps >&2

"$PYTHON" - <<'PY'
import json
import socket
import time
import urllib.request

def until(what, probe, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return probe()
        except (OSError, AssertionError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"try-compose: {what}: {exc!r}")
            time.sleep(0.5)

def tcp_echo(port=2222, timeout=3):
    payload = b"hello over tcp %d\n" % port
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    assert data == payload, data
    return data

def udp_echo():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"hello over udp 5353", ("127.0.0.1", 5353))
        data = sock.recv(4096)
    assert data == b"hello over udp 5353", data
    return data

def routes():
    with urllib.request.urlopen("http://127.0.0.1:8899/api/routes", timeout=5) as response:
        return json.load(response)["routes"]

def game_asleep():
    (game,) = [r for r in routes() if r["alias"] == "game"]
    assert game["state"] == "sleeping", game["state"]
    return game["state"]

print("tcp 127.0.0.1:2222 ->", until("TCP echo on 2222", tcp_echo))
print("game route ->", until("the game asleep", game_asleep, timeout=120))
print("tcp 127.0.0.1:25565 (wakes it) ->", tcp_echo(25565, timeout=120))
print("udp 127.0.0.1:5353 ->", until("UDP echo on 5353", udp_echo))
with urllib.request.urlopen("http://127.0.0.1:8899/healthz", timeout=5) as response:
    print("GET /healthz ->", response.status, response.read().decode()[:200])
with urllib.request.urlopen("http://127.0.0.1:8899/api/routes", timeout=5) as response:
    for route in json.load(response)["routes"]:
        print(
            "route", route["alias"], route["scheme"], f"{route['bind']}:{route['listen_port']}",
            "->", f"{route['target_host']}:{route['target_port']}", route["state"],
        )
PY

log "the daemon's container: no engine socket, and its filter refuses writes"
compose exec -T godoxy-streams python3 - <<'PY'
import os
import socket

assert not os.path.exists("/var/run/docker.sock"), "the engine socket is visible"
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect("/run/godoxy/docker.sock")
s.sendall(b"POST /v1.41/containers/create HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
status = s.recv(64).split(b"\r\n")[0].decode()
assert " 403 " in status, status
print("POST /containers/create through the filter ->", status)
PY

denied=$(compose logs --no-color socket-proxy | grep -c ' denied ' || true)
log "the filter denied $denied request(s): the daemon needed nothing beyond the reads and sleep/wake"
[[ $denied == 1 ]]
woke=$(compose logs --no-color socket-proxy | grep -c '/start (it has a sleep/wake label)' || true)
log "the filter forwarded $woke start(s) for sleep/wake"
[[ $woke -ge 1 ]]

log "waiting for the image's HEALTHCHECK to report the daemon healthy"
daemon=$(compose ps -q godoxy-streams)
deadline=$((SECONDS + 60))
until [[ $(docker inspect -f '{{.State.Health.Status}}' "$daemon") == healthy ]]; do
    if ((SECONDS > deadline)); then
        echo "try-compose: the daemon's container is not healthy within 60s" >&2
        exit 1
    fi
    sleep 1
done
compose ps >&2
curl -s -o /dev/null -w 'curl 127.0.0.1:8899/healthz -> %{http_code}\n' \
    http://127.0.0.1:8899/healthz
log "OK"
