"""`python -m bench.status_scale`: what observing costs at many routes.

1. The history tick in process (no sockets): N routes' counters and one pool member each,
   sampled as the daemon's sampler does every 5 s; CPU per tick with every route idle, 10%
   busy and all busy, and the ring memory per busy route.
2. A real daemon serving N static routes (listen ports below the ephemeral range, upstreams
   on loopback that nobody dials): wall time and daemon CPU per request of /healthz,
   /api/routes (whole and a page), a route's history, /api/events, /metrics and the page, and
   the idle daemon's CPU (the sampler's tick, the routes file poll).

Loopback only; every loop bounded; the daemon is stopped on exit. ``--pythonpath DIR`` runs
the daemon from another checkout (e.g. a worktree of an older commit) for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import cpu_seconds, raise_nofile, spawn, stop, wait_until
from godoxy_streams.runtime.sampler import Sampler
from godoxy_streams.streams.pool import MemberSpec, Pool
from godoxy_streams.streams.stats import StreamStats

OUT = Path(__file__).parent / "out"
LOCAL = "127.0.0.1"
FIRST_PORT = 12000


# ---- 1. the tick in process -------------------------------------------------------------------
def tick_cpu(routes: int, busy_share: float, ticks: int = 20) -> dict[str, float]:
    """CPU per tick of ``routes`` routes, ``busy_share`` of them moving every tick, and the
    size of a busy route's rings (an idle route has none)."""
    stats = [StreamStats() for _ in range(routes)]
    pools = []
    for i in range(routes):
        pool = Pool()
        pool.update([MemberSpec(f"local/c{i}/a", ("10.0.0.1", 80), f"c{i}")])
        pools.append(pool)
    entries = [(f"tcp_0.0.0.0_{i}", stats[i], pools[i]) for i in range(routes)]
    busy = stats[: int(routes * busy_share)]

    def run(sampler: Sampler) -> float:
        spent = 0.0
        for _ in range(ticks):
            for s in busy:
                s.total += 1
                s.bytes_in += 1500
                s.bytes_out += 9000
            start = time.process_time()
            sampler.sample(entries)
            spent += time.process_time() - start
        return spent

    sampler = Sampler()
    sampler.sample(entries)  # the first tick makes every route's record
    spent = run(sampler)
    rings = [
        sys.getsizeof(t.counts) + sys.getsizeof(t.sizes)
        for t in sampler._tracks.values()
        if t.counts is not None
    ]
    return {
        "ms_per_tick": round(spent / ticks * 1000, 2),
        "core_share_at_5s": round(spent / ticks / 5.0 * 100, 3),
        "ring_bytes_per_busy_route": round(sum(rings) / len(rings)) if rings else 0,
    }


# ---- 2. a daemon with N routes ----------------------------------------------------------------
def free_block(count: int, start: int = FIRST_PORT) -> list[int]:
    """``count`` ports free for TCP on loopback, scanned upwards from ``start``."""
    ports: list[int] = []
    port = start
    while len(ports) < count and port < 32768:
        with socket.socket() as s:
            try:
                s.bind((LOCAL, port))
                ports.append(port)
            except OSError:
                pass
        port += 1
    if len(ports) < count:
        raise SystemExit(f"only {len(ports)} free ports from {start}")
    return ports


def routes_file(path: Path, ports: list[int], upstream: int) -> None:
    lines = ["routes:"]
    for i, port in enumerate(ports):
        lines.append(
            f"  r{i:05}: {{scheme: tcp4, bind: {LOCAL}, host: {LOCAL}, "
            f"port: '{port}:{upstream}', healthcheck: {{disable: true}}}}"
        )
    path.write_text("\n".join(lines) + "\n")


def fetch(api: int, path: str) -> tuple[int, int]:
    """(HTTP status, body size)."""
    try:
        with urllib.request.urlopen(f"http://{LOCAL}:{api}{path}", timeout=120) as r:
            return r.status, len(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, 0


def measure(pid: int, api: int, path: str, repeat: int, spacing: float) -> dict[str, Any]:
    walls, cpus, size, status = [], [], 0, 0
    for _ in range(repeat):
        cpu = cpu_seconds([pid])
        start = time.perf_counter()
        status, size = fetch(api, path)
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds([pid]) - cpu)
        time.sleep(spacing)  # past the metrics render cache, and room for the tick
    return {
        "path": path,
        "status": status,
        "bytes": size,
        "wall_ms_median": round(statistics.median(walls) * 1000, 1),
        "wall_ms_max": round(max(walls) * 1000, 1),
        "cpu_ms_median": round(statistics.median(cpus) * 1000),  # /proc ticks: 10 ms steps
    }


def daemon_figures(routes: int, pythonpath: str | None, repeat: int) -> dict[str, Any]:
    OUT.mkdir(exist_ok=True)
    raise_nofile()
    ports = free_block(routes + 2)
    api, upstream = ports[-1], ports[-2]  # nothing listens at the upstream: never dialled
    file = OUT.resolve() / f"status-scale-{routes}.yml"
    routes_file(file, ports[:routes], upstream)
    if pythonpath:  # the child inherits it
        os.environ["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "godoxy_streams", "run", "--no-docker", "--routes", str(file)]
    argv += ["--api", f"{LOCAL}:{api}", "--log-level", "WARNING"]
    # ``-m`` puts the working directory first on the path: run from the checkout asked for
    where = Path(pythonpath) if pythonpath else None
    proc = spawn(argv, log=OUT.resolve() / f"status-scale-{routes}.log", cwd=where)
    try:
        started = time.monotonic()

        def all_running() -> bool:
            try:
                with urllib.request.urlopen(f"http://{LOCAL}:{api}/healthz", timeout=60) as r:
                    return bool(json.load(r).get("routes_running") == routes)
            except (OSError, ValueError):
                return False

        if not wait_until(all_running, 600, interval=1.0):
            raise SystemExit(f"the daemon did not run {routes} routes within 600 s")
        ready = time.monotonic() - started
        first_id = f"tcp_{LOCAL}_{ports[0]}"
        paths = [
            "/healthz",
            "/",
            "/api/routes",
            "/api/routes?offset=0&limit=50&history=1",
            "/api/routes?offset=0&limit=50&history=1&q=r0999",
            f"/api/routes/{first_id}/history",
            "/api/events?limit=200",
            "/metrics",
        ]
        rows = [measure(proc.pid, api, path, repeat, 1.2) for path in paths]
        cpu = cpu_seconds([proc.pid])
        idle_window = 30.0
        time.sleep(idle_window)
        idle = cpu_seconds([proc.pid]) - cpu
        return {
            "routes": routes,
            "ready_s": round(ready, 1),
            "requests": rows,
            "idle_cpu_share": round(idle / idle_window * 100, 2),
        }
    finally:
        stop(proc)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for r in rows:
        lines.append(
            "  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.status_scale", description=__doc__)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="requests per endpoint")
    parser.add_argument("--pythonpath", help="run the daemon from this checkout")
    parser.add_argument("--skip-daemon", action="store_true", help="only the in-process tick")
    parser.add_argument("--json", type=Path, default=OUT / "status-scale.json")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"tick": {}}
    for label, share in (("idle", 0.0), ("10% busy", 0.1), ("all busy", 1.0)):
        results["tick"][label] = tick_cpu(args.routes, share)
    print(f"history tick, {args.routes} routes, in process:")
    print(
        table(
            [{"routes": label, **v} for label, v in results["tick"].items()],
            ["routes", "ms_per_tick", "core_share_at_5s", "ring_bytes_per_busy_route"],
        )
    )
    if not args.skip_daemon:
        figures = daemon_figures(args.routes, args.pythonpath, args.repeat)
        results["daemon"] = figures
        print(f"\ndaemon with {args.routes} routes (ready in {figures['ready_s']} s):")
        print(
            table(
                figures["requests"],
                ["path", "status", "bytes", "wall_ms_median", "wall_ms_max", "cpu_ms_median"],
            )
        )
        print(f"idle daemon CPU: {figures['idle_cpu_share']}% of a core")
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
