"""One size of the simulated-engine run: the real daemon following bench/fake_engine.py's N
labelled containers, inside the benchmark's own network namespace (see cli.py).

In order: initial sync (process start -> /healthz ready with N routes -> a sample of ports
accepting), RSS and descriptors per route against a 0-route daemon, unrelated containers
(an unlabelled container's start, then its ``rm -f``), labelled starts (start event ->
listener accepting) and their removal (kill event -> port free), a burst of starts and its
removal, a relist with nothing changed (the event stream dropped: reconnect, list, pass), and
the status API's answer times. Every step checks the size's time budget; an over-budget run
keeps what it measured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.scale.daemon import Daemon
from bench.scale.engine_ctl import FakeEngineProcess
from bench.scale.measure import (
    Budget,
    OverBudget,
    accepts,
    measured,
    poll_until,
    port_free,
    summary,
)
from bench.scale.profile import Profiler

PORT_BASE = 20000  # listen ports PORT_BASE .. PORT_BASE + N + events + burst (< 32768)
NAMESPACE = "proxy"


@dataclass
class SimOptions:
    workdir: Path
    events: int = 50
    burst: int = 500
    sample: int = 50
    budget_s: float = 600.0
    quiet_s: float = 0.05
    py_spy: str | None = None  # profile with this py-spy binary
    status_api: bool = True


def baseline(opts: SimOptions) -> dict[str, Any]:
    """A daemon following an engine with no containers: start-up CPU, RSS, descriptors."""
    engine = FakeEngineProcess(opts.workdir, 0, port_base=PORT_BASE, tag="0", accept_targets=True)
    daemon = Daemon(engine.url, opts.workdir, namespace=NAMESPACE, tag="sim-0")
    try:
        engine.start()
        daemon.start()
        if daemon.wait_routes(0, 60.0) is None:
            raise RuntimeError(f"the 0-route daemon never got ready:\n{daemon.log_tail()}")
        ready_s = time.monotonic() - daemon.started
        daemon.quiet(0.2, 10.0)
        return {"cpu_s": daemon.cpu_s(), "ready_s": ready_s, "rss_kib": daemon.rss_kib(),
                "fds": daemon.fds()}  # fmt: skip
    finally:
        daemon.stop()
        engine.stop()


def run_size(n: int, opts: SimOptions, base: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    engine = FakeEngineProcess(
        opts.workdir, n, port_base=PORT_BASE, tag=str(n), accept_targets=True
    )
    daemon = Daemon(engine.url, opts.workdir, namespace=NAMESPACE, tag=f"sim-{n}")
    run = _Run(n, opts, Budget(opts.budget_s), engine, daemon, res)
    steps: list[Callable[[], None]] = [engine.start, partial(run.sync, base), run.unrelated]
    steps += [run.starts_and_removals]
    steps += [run.burst, run.relist] + [run.status_api] * opts.status_api
    return measured(n, steps, run.close, res)


class _Run:
    def __init__(
        self, n: int, opts: SimOptions, budget: Budget, engine: FakeEngineProcess,
        daemon: Daemon, res: dict[str, Any],
    ) -> None:  # fmt: skip
        self.n, self.opts, self.budget, self.res = n, opts, budget, res
        self.engine, self.daemon = engine, daemon
        self.routes = n
        self.profiler: Profiler | None = None
        self.phase = ""

    def close(self) -> None:
        self._stop_profile()
        try:
            if self.engine.proc is not None and self.engine.proc.poll() is None:
                stats = self.engine.stats()
                self.res["engine"] = {k: stats[k] for k in ("cpu_s", "maxrss_kib", "requests")}
                self.res["engine"]["unknown"] = stats["unknown"]
        except (OSError, RuntimeError):
            pass
        self.daemon.stop()
        self.engine.stop()

    def _settle(self, ids: list[str], what: str) -> None:
        """Until the daemon inspected these containers after their last event and went idle."""
        if not self.engine.wait_inspected(ids, self.budget.timeout(120)):
            self.budget.check(what)
            raise RuntimeError(f"{what}: the daemon did not inspect {ids[0][:12]}")
        if not self.daemon.quiet(self.opts.quiet_s, self.budget.timeout(120)):
            self.budget.check(what)

    def _profile(self, phase: str) -> None:
        if self.opts.py_spy:
            out = self.opts.workdir / f"profile-{self.n}-{phase}.txt"
            self.profiler, self.phase = Profiler(self.opts.py_spy, self.daemon.pid, out), phase

    def _stop_profile(self) -> None:
        if self.profiler is not None:
            self.res.setdefault("profiles", {})[self.phase] = str(self.profiler.stop())
            self.profiler = None

    # -- the measurements --------------------------------------------------------------------
    def sync(self, base: dict[str, Any]) -> None:
        n, daemon, res = self.n, self.daemon, self.res
        engine_cpu0 = self.engine.cpu_s()
        t0 = time.time_ns()
        daemon.start()
        self._profile("sync")
        ready = daemon.wait_routes(n, self.budget.timeout(self.budget.left()))
        if ready is None:
            res["sync_cpu_s_so_far"] = daemon.cpu_s()
            raise OverBudget(f"over budget during the initial sync ({n} routes not up)")
        res["sync_ready_s"] = (ready - t0) / 1e9
        ports = [PORT_BASE, PORT_BASE + n - 1]
        ports += random.sample(range(PORT_BASE, PORT_BASE + n), min(self.opts.sample, n))
        for port in ports:
            if poll_until(partial(accepts, port), 10.0, 0.01) is None:
                raise RuntimeError(f"port {port} does not accept after the sync")
        res["sync_s"] = (time.time_ns() - t0) / 1e9
        res["sync_cpu_s"] = daemon.cpu_s()
        res["sync_cpu_net_s"] = res["sync_cpu_s"] - base["cpu_s"]
        res["engine_sync_cpu_s"] = self.engine.cpu_s() - engine_cpu0
        daemon.quiet(0.2, self.budget.timeout(60))
        self._stop_profile()
        res["rss_kib"], res["fds"] = daemon.rss_kib(), daemon.fds()
        res["rss_per_route_kib"] = (res["rss_kib"] - base["rss_kib"]) / n
        res["fds_per_route"] = (res["fds"] - base["fds"]) / n
        self._profile("events")

    def unrelated(self) -> None:
        """An unlabelled container starts, then is removed (rm -f), one at a time."""
        cpu: list[float] = []
        self.res["unrelated_cpu_ms"] = cpu
        for _ in range(self.opts.events):
            self.budget.check("unrelated containers")
            c0 = self.daemon.cpu_ns()
            box = self.engine.add(1, labelled=False)[0]
            self._settle([box["id"]], "an unrelated start")
            self.engine.remove([box["id"]])
            self._settle([box["id"]], "an unrelated removal")
            cpu.append((self.daemon.cpu_ns() - c0) / 1e6)
        self.res["unrelated"] = summary(cpu)

    def starts_and_removals(self) -> None:
        """New labelled containers: start event -> accepting, then kill event -> port free."""
        latency: list[float] = []
        cpu: list[float] = []
        self.res["start_latency_ms"], self.res["start_cpu_ms"] = latency, cpu
        boxes = []
        for _ in range(self.opts.events):
            self.budget.check("labelled starts")
            c0 = self.daemon.cpu_ns()
            box = self.engine.add(1)[0]
            port = int(box["port"])
            up = poll_until(partial(accepts, port), self.budget.timeout(120))
            if up is None:
                self.budget.check("labelled starts")
                raise RuntimeError(f"port {port} never accepted")
            latency.append((up - int(box["start_ns"])) / 1e6)
            boxes.append(box)
            self.routes += 1
            self.daemon.quiet(self.opts.quiet_s, self.budget.timeout(120))
            cpu.append((self.daemon.cpu_ns() - c0) / 1e6)
        self.res["start"] = summary(latency)
        self.res["start_cpu"] = summary(cpu)
        closed: list[float] = []
        stop_cpu: list[float] = []
        self.res["stop_closed_ms"], self.res["stop_cpu_ms"] = closed, stop_cpu
        for box in boxes:
            self.budget.check("labelled removals")
            c0 = self.daemon.cpu_ns()
            killed = self.engine.remove([box["id"]])[box["id"]]
            port = int(box["port"])
            gone = poll_until(partial(port_free, port), self.budget.timeout(120))
            if gone is None:
                self.budget.check("labelled removals")
                raise RuntimeError(f"port {port} still listens")
            closed.append((gone - killed) / 1e6)
            self.routes -= 1
            self._settle([box["id"]], "a labelled removal")
            stop_cpu.append((self.daemon.cpu_ns() - c0) / 1e6)
        self.res["stop"] = summary(closed)
        self.res["stop_cpu"] = summary(stop_cpu)
        self._stop_profile()

    def burst(self) -> None:
        """``burst`` labelled containers start at once; then all of them are removed."""
        count, daemon = self.opts.burst, self.daemon
        self.budget.check("the burst")
        c0 = daemon.cpu_s()
        boxes = self.engine.add(count)
        first = min(int(b["start_ns"]) for b in boxes)
        done = daemon.wait_routes(self.routes + count, self.budget.timeout(self.budget.left()))
        if done is None:
            raise OverBudget(f"over budget during a burst of {count} starts")
        self.res["burst_start_s"] = (done - first) / 1e9
        daemon.quiet(self.opts.quiet_s, self.budget.timeout(120))
        self.res["burst_start_cpu_s"] = daemon.cpu_s() - c0
        self.res["burst_not_accepting"] = sum(1 for b in boxes if not accepts(int(b["port"])))
        self.budget.check("the burst's removal")
        c0 = daemon.cpu_s()
        kills = self.engine.remove([str(b["id"]) for b in boxes])
        done = daemon.wait_routes(self.routes, self.budget.timeout(self.budget.left()))
        if done is None:
            raise OverBudget(f"over budget during the removal of {count} containers")
        self.res["burst_remove_s"] = (done - min(kills.values())) / 1e9
        daemon.quiet(self.opts.quiet_s, self.budget.timeout(120))
        self.res["burst_remove_cpu_s"] = daemon.cpu_s() - c0

    def relist(self) -> None:
        """The event stream ends: the daemon reconnects (after its 0.5 s backoff), relists
        N unchanged containers and runs a pass."""
        self.budget.check("the relist")
        before = int(self.engine.stats()["subscriptions"])
        c0, t0 = self.daemon.cpu_s(), time.monotonic()
        self.engine.drop_streams()
        if not self.engine.wait_subscriptions(before, self.budget.timeout(120)):
            raise RuntimeError("the daemon did not subscribe to events again")
        self.daemon.quiet(self.opts.quiet_s, self.budget.timeout(120))
        self.res["relist_cpu_s"] = self.daemon.cpu_s() - c0
        self.res["relist_wall_s"] = time.monotonic() - t0

    def status_api(self) -> None:
        """How long /healthz, /metrics and /api/routes take to answer (the last one may hold
        the daemon's loop for long at large N: it runs last)."""
        self.budget.check("the status API")
        times = [self.daemon.get("/healthz")[2] for _ in range(5)]
        self.res["healthz_ms"] = sorted(times)[2] * 1e3
        for path, key in (("/metrics", "metrics"), ("/api/routes", "api_routes")):
            self.budget.check(f"GET {path}")
            status, body, took = self.daemon.get(path, timeout=self.budget.timeout(180))
            self.res[f"{key}_s"] = took if status == 200 else None
            self.res[f"{key}_kib"] = len(body) / 1024
            if status != 200:
                why = f"no answer within {took:.0f} s" if not status else f"status {status}"
                self.res.setdefault("notes", []).append(f"GET {path}: {why}")
