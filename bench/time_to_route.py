"""Time-to-route: how fast listeners follow containers, measured against the real engine.

- start -> accepting: from the engine's ``start`` event (its own nanosecond timestamp) to the
  first successful connect on the route's port, per container, over N containers;
- die -> closed: from the engine's ``die`` event to the first refused connect;
- initial sync: the daemon started beside M labelled running containers, until every route
  listens (and until /healthz says ready).

Only loopback is contacted. Every container and the daemon are removed/stopped at the end.
``python -m bench.time_to_route [--containers 50] [--initial 200]``
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daemon_kit import DaemonProcess, unique_namespace  # noqa: E402
from tests.docker.kit import ContainerFactory, ensure_image  # noqa: E402
from tests.helpers import free_port  # noqa: E402

POLL = 0.0005


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_until(predicate: Any, timeout: float) -> float:
    """Poll until true; the wall-clock time (ns) at which it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.time_ns()
        time.sleep(POLL)
    raise TimeoutError("condition not met in time")


class EventClock:
    """The engine's timestamps of start/die events, by container id."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.times: dict[tuple[str, str], int] = {}
        self.cond = threading.Condition()
        self._stream = client.events(
            decode=True, filters={"type": "container", "event": ["start", "die"]}
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                key = (str(event.get("id")), str(event.get("Action") or event.get("status")))
                with self.cond:
                    self.times[key] = int(event["timeNano"])
                    self.cond.notify_all()
        except Exception:  # the stream is closed at the end
            return

    def wait(self, cid: str, action: str, timeout: float = 10) -> int:
        with self.cond:
            if not self.cond.wait_for(lambda: (cid, action) in self.times, timeout):
                raise TimeoutError(f"no {action} event for {cid[:12]}")
            return self.times[(cid, action)]

    def close(self) -> None:
        self._stream.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextmanager
def daemon(workdir: Path, ns: str) -> Iterator[DaemonProcess]:
    process = DaemonProcess(workdir, namespace=ns)
    process.args = [a if a != "DEBUG" else "WARNING" for a in process.args]
    try:
        yield process
    finally:
        process.stop()


def follow(client: docker.DockerClient, factory: ContainerFactory, count: int) -> dict[str, Any]:
    ns = unique_namespace()
    clock = EventClock(client)
    up: list[float] = []
    down: list[float] = []
    with TemporaryDirectory() as tmp, daemon(Path(tmp), ns) as d:
        d.start()
        for _ in range(count):
            port = free_port()
            box = factory(labels={f"{ns}.t.port": f"{port}:7"}, wait_ready=False)
            started = clock.wait(box.id, "start")
            up.append((wait_until(lambda p=port: accepting(p), 20) - started) / 1e6)
            closed_at: list[int] = []
            probe = threading.Thread(
                target=lambda p=port, out=closed_at: out.append(
                    wait_until(lambda: not accepting(p), 20)
                )
            )
            probe.start()  # probe while kill() blocks on the engine's clean-up
            box.kill()
            died = clock.wait(box.id, "die")
            probe.join(timeout=30)
            down.append((closed_at[0] - died) / 1e6)
            box.remove(force=True)
    clock.close()
    return {
        "start_to_accepting_ms": {
            "median": statistics.median(up),
            "p99": pct(up, 0.99),
            "min": min(up),
            "max": max(up),
        },
        "die_to_closed_ms": {
            "median": statistics.median(down),
            "p99": pct(down, 0.99),
            "min": min(down),
            "max": max(down),
        },
        "containers": count,
    }


def initial_sync(factory: ContainerFactory, count: int) -> dict[str, Any]:
    ns = unique_namespace()
    ports = [free_port() for _ in range(count)]
    for port in ports:
        factory(labels={f"{ns}.s.port": f"{port}:7"}, wait_ready=False)
    with TemporaryDirectory() as tmp, daemon(Path(tmp), ns) as d:
        t0 = time.monotonic()
        d.start(wait_healthy=False)
        ready = None
        all_up = None
        deadline = t0 + 120
        while time.monotonic() < deadline and (ready is None or all_up is None):
            if ready is None and d.health()[0] == 200:
                ready = time.monotonic() - t0
            if all_up is None and all(accepting(p) for p in ports[-5:]):
                url = f"http://127.0.0.1:{d.api_port}/api/routes"
                with urllib.request.urlopen(url, timeout=5) as response:
                    running = [r for r in json.load(response)["routes"] if r["state"] == "running"]
                if len(running) == count:
                    all_up = time.monotonic() - t0
            time.sleep(0.005)
        if ready is None or all_up is None:
            print(d.log()[-3000:], file=sys.stderr)
            raise RuntimeError(
                f"initial sync of {count} containers incomplete after 120 s: health {d.health()}"
            )
    return {
        "containers": count,
        "process_start_to_healthy_s": ready,
        "process_start_to_all_listening_s": all_up,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.time_to_route", description=__doc__)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--initial", type=int, default=200)
    args = parser.parse_args(argv)
    client = docker.from_env()
    factory = ContainerFactory(client, ensure_image(client))
    try:
        result = {"follow": follow(client, factory, args.containers)}
        factory.cleanup()
        result["initial_sync"] = initial_sync(factory, args.initial)
    finally:
        factory.cleanup()
        client.close()
    f, s = result["follow"], result["initial_sync"]
    print(f"time-to-route over {f['containers']} containers (engine event -> listener):")
    for name in ("start_to_accepting_ms", "die_to_closed_ms"):
        row = f[name]
        print(
            f"  {name:<24} median {row['median']:7.1f} ms  p99 {row['p99']:7.1f} ms  "
            f"(min {row['min']:.1f}, max {row['max']:.1f})"
        )
    print(
        f"initial sync of {s['containers']} labelled containers: healthy after "
        f"{s['process_start_to_healthy_s']:.2f} s, all listening after "
        f"{s['process_start_to_all_listening_s']:.2f} s (from process start)"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "time_to_route.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
