"""Wake latency: what sleep/wake adds to a client's first byte, against the real engine.

Per round, in alternating order:

- wake: the container is asleep (stopped or paused through the engine, the daemon's route
  ``sleeping``); a client connects to the route, sends one byte and times its echo (connect
  to first byte back, through the daemon, which starts the container and waits until its
  port answers);
- own: the same container started (or unpaused) directly through the engine API, polling its
  own address every millisecond until one byte echoes (the container's own start-to-ready).

Reported: p50/p99 of both, of the added latency (wake minus own, per round pair), and, as a
finer look, the time from the container's server being ready (its ``echo: ready`` log line,
by the engine's timestamp) to the first byte, for both (what the daemon adds after the
container is ready: its readiness probe, a reconcile pass and the dial).
Only loopback and the test container are contacted; the container and the daemon are removed
and stopped at the end. ``python -m bench.wake_latency [--wakes 20] [--method stop|pause]``
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.time_to_route import daemon, pct  # noqa: E402
from tests.daemon_kit import DaemonProcess, unique_namespace  # noqa: E402
from tests.docker.kit import ContainerFactory, container_ip, ensure_image  # noqa: E402
from tests.helpers import eventually, free_port  # noqa: E402

POLL = 0.001
RETRIES = 3


def ready_at(client: docker.DockerClient, box: Any, since: float) -> float:
    """When the echo server last said it was ready (time.time()), by the engine's log stamp."""
    logs = client.api.logs(box.id, timestamps=True, since=int(since) - 1).decode()
    stamps = [line.split(" ", 1)[0] for line in logs.splitlines() if "echo: ready" in line]
    head, _, frac = stamps[-1].rstrip("Z").partition(".")
    whole = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return whole + float("0." + (frac or "0"))


def first_byte(host: str, port: int, timeout: float) -> float:
    """Seconds from connect to one echoed byte (one attempt; OSError if refused)."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            raise OSError("no echo")
    return time.monotonic() - started


def own_start(client: docker.DockerClient, box: Any, method: str) -> tuple[float, float]:
    """Start (or unpause) ``box`` through the API and poll its own port until it echoes:
    (seconds to the first byte, the time.time() of that byte)."""
    started = time.monotonic()
    (client.api.unpause if method == "pause" else client.api.start)(box.id)
    box.reload()
    host = container_ip(box)
    deadline = started + 60
    while True:
        try:
            first_byte(host, 7, 1.0)
            return time.monotonic() - started, time.time()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL)


def own_start_quiet(client: docker.DockerClient, box: Any, method: str) -> None:
    """Bring ``box`` back up whatever state a failed round left it in."""
    box.reload()
    if box.status == "paused":
        client.api.unpause(box.id)
    elif box.status != "running":
        client.api.start(box.id)


def put_to_sleep(client: docker.DockerClient, box: Any, method: str, d: DaemonProcess) -> None:
    if method == "pause":
        try:
            client.api.pause(box.id)
        except docker.errors.APIError as exc:
            if "already paused" not in str(exc):
                raise
    else:
        client.api.stop(box.id, timeout=0)

    def asleep() -> bool:
        route = d.route("w")
        sleepers = d.routes()["sleepers"]
        return (
            route is not None
            and route["state"] == "sleeping"
            and all(s["state"] == "asleep" for s in sleepers)
        )

    eventually(asleep, 60, interval=0.01, what="route sleeping")


def measure(
    client: docker.DockerClient, factory: ContainerFactory, wakes: int, method: str
) -> dict[str, Any]:
    ns = unique_namespace()
    port = free_port()
    labels = {
        f"{ns}.w.port": f"{port}:7",
        f"{ns}.idle_timeout": "1h",  # the bench puts it to sleep itself, between rounds
        f"{ns}.stop_method": method,
    }
    wake: list[float] = []
    own: list[float] = []
    wake_after_ready: list[float] = []
    own_after_ready: list[float] = []
    retried: list[str] = []
    with TemporaryDirectory() as tmp, daemon(Path(tmp), ns) as d:
        d.start()
        box = factory(labels=labels)
        eventually(lambda: (d.route("w") or {}).get("state") == "running", 30)
        for i in range(wakes):
            for kind in ("wake", "own") if i % 2 == 0 else ("own", "wake"):
                for attempt in range(RETRIES + 1):
                    put_to_sleep(client, box, method, d)
                    since = time.time()
                    try:
                        if kind == "wake":
                            took = first_byte("127.0.0.1", port, 60)
                            done = time.time()
                            eventually(lambda: (d.route("w") or {}).get("state") == "running", 30)
                        else:
                            took, done = own_start(client, box, method)
                        break
                    except (OSError, docker.errors.APIError) as exc:
                        # the engine itself races a fast pause/unpause cycle ("already
                        # paused" right after an unpause returned): the round is measured again
                        retried.append(f"{kind} {i}: {exc}")
                        if attempt == RETRIES:
                            raise
                        own_start_quiet(client, box, method)
                (wake if kind == "wake" else own).append(took)
                if method == "stop":  # a paused server does not log "ready" again
                    after = done - ready_at(client, box, since)
                    (wake_after_ready if kind == "wake" else own_after_ready).append(after)
    added = [w - o for w, o in zip(wake, own, strict=True)]
    ms = {
        name: {
            "p50": statistics.median(values) * 1e3,
            "p99": pct(values, 0.99) * 1e3,
            "min": min(values) * 1e3,
            "max": max(values) * 1e3,
        }
        for name, values in (
            ("wake", wake),
            ("own", own),
            ("added", added),
            ("wake_after_ready", wake_after_ready),
            ("own_after_ready", own_after_ready),
        )
        if values
    }
    return {"method": method, "wakes": wakes, "ms": ms, "retried": retried}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.wake_latency", description=__doc__)
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--method", choices=("stop", "pause", "both"), default="both")
    args = parser.parse_args(argv)
    client = docker.from_env()
    factory = ContainerFactory(client, ensure_image(client))
    results = []
    try:
        for method in ("stop", "pause") if args.method == "both" else (args.method,):
            results.append(measure(client, factory, args.wakes, method))
            factory.cleanup()
    finally:
        factory.cleanup()
        client.close()
    for result in results:
        print(f"wake latency, {result['wakes']} wakes, stop_method {result['method']}:")
        if result["retried"]:
            print(f"  ({len(result['retried'])} round(s) measured again: {result['retried'][0]})")
        for name, label in (
            ("wake", "first byte through the sleeping route"),
            ("own", "the container's own start-to-ready"),
            ("added", "added by sleep/wake (pairwise)"),
            ("wake_after_ready", "ready -> first byte, through the route"),
            ("own_after_ready", "ready -> first byte, own polling (1 ms)"),
        ):
            if name not in result["ms"]:
                continue
            row = result["ms"][name]
            print(
                f"  {label:<40} p50 {row['p50']:7.1f} ms  p99 {row['p99']:7.1f} ms  "
                f"(min {row['min']:.1f}, max {row['max']:.1f})"
            )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "wake_latency.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
