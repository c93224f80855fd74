"""One size of the real-engine run: the daemon following N real containers of the test kit's echo
image on the local Docker engine, spread over bridge networks of at most 200 containers each.

In order: the N containers are created (not started) and the daemon started beside them; then
all N start (in parallel batches) while the daemon follows: its CPU until every route is up and
it is idle again, and the time from the engine's last ``start`` event to all routes up; then,
one at a time, unrelated containers (create + start + ``rm -f`` of an unlabelled one: daemon
CPU each) and new labelled containers (``docker start`` returned -> listener accepting). Every
container and network is created with the kit's labels and names (``gds-test-...``, swept by
``tests.docker.kit.sweep``) and removed in ``finally``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
from docker.models.containers import Container
from docker.models.networks import Network

from bench import procs
from bench.scale.daemon import Daemon
from bench.scale.measure import Budget, OverBudget, accepts, measured, poll_until, summary
from bench.time_to_route import EventClock
from tests.docker.kit import kit_labels, remove_network, unique_name

PER_NETWORK = 200  # a Linux bridge holds at most 1,024 ports
REMOVERS = 4  # parallel removals: more made the engine leak a network's endpoint count once
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class RealOptions:
    workdir: Path
    image: str
    unrelated: int = 10
    next_routes: int = 10
    workers: int = 8
    budget_s: float = 900.0
    quiet_s: float = 0.15  # the daemon waits on the engine between its steps: a longer gap


def docker_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def run_size(client: docker.DockerClient, n: int, opts: RealOptions) -> dict[str, Any]:
    res: dict[str, Any] = {}
    run = _Run(client, n, opts, res)
    steps = [run.prepare, run.follow_starts, run.unrelated, run.next_routes]
    return measured(n, steps, run.close, res)


class _Run:
    def __init__(
        self, client: docker.DockerClient, n: int, opts: RealOptions, res: dict[str, Any]
    ) -> None:
        self.client, self.n, self.opts, self.res = client, n, opts, res
        self.budget = Budget(opts.budget_s)
        self.ns = f"gdsscale{os.getpid()}n{n}"
        self.nets: list[Network] = []
        self.created: list[Container] = []
        self.lock = threading.Lock()
        self.daemon = Daemon(docker_url(), opts.workdir, namespace=self.ns, tag=f"real-{n}")
        self.clock: EventClock | None = None
        self.ports: list[int] = []
        self.boxes: list[Container] = []

    def _parallel(
        self, work: Callable[[T], R], items: Sequence[T], workers: int | None = None
    ) -> list[R]:
        with ThreadPoolExecutor(workers or self.opts.workers) as pool:
            return list(pool.map(work, items))

    def _create(self, labels: dict[str, str], network: Network) -> Container:
        box = self.client.containers.create(
            self.opts.image, name=unique_name("scale"), labels=kit_labels(labels),
            network=str(network.name), detach=True,
        )  # fmt: skip
        with self.lock:
            self.created.append(box)
        return box

    def _route_labels(self, index: int, port: int) -> dict[str, str]:
        alias = f"e{index}"
        return {
            f"{self.ns}.aliases": alias,
            f"{self.ns}.{alias}.port": f"{port}:7",
            f"{self.ns}.{alias}.healthcheck.disable": "true",
        }

    def close(self) -> None:
        if self.clock is not None:
            self.clock.close()
        self.daemon.stop()

        def remove(box: Container) -> None:
            try:
                box.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                print(f"bench.scale: could not remove {box.name}: {exc}")

        self._parallel(remove, self.created, REMOVERS)
        for network in self.nets:
            self._remove_network(network)

    def _remove_network(self, network: Network) -> None:
        """Remove a network, retrying while the engine still counts endpoints of removed
        containers (it may lag, or leak the count: moby/moby#42119; then say so)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                remove_network(network)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if time.monotonic() > deadline:
                    note = f"network {network.name} left behind: {exc.explanation}"
                    self.res.setdefault("notes", []).append(note)
                    print(f"bench.scale: {note}")
                    return
                time.sleep(1.0)

    # -- the measurements --------------------------------------------------------------------
    def prepare(self) -> None:
        """N labelled containers created (not started), and the daemon beside them."""
        n = self.n
        for _ in range(math.ceil(n / PER_NETWORK)):
            self.nets.append(self.client.networks.create(
                unique_name("scale"), driver="bridge", labels=kit_labels()
            ))  # fmt: skip
        self.ports = procs.free_ports(n + self.opts.next_routes)
        t0 = time.monotonic()
        self.boxes = self._parallel(
            lambda i: self._create(
                self._route_labels(i, self.ports[i]), self.nets[i // PER_NETWORK]
            ),
            range(n),
        )
        self.res["create_s"] = time.monotonic() - t0
        self.daemon.start()
        if self.daemon.wait_routes(0, 60.0) is None:
            raise RuntimeError(f"the daemon never got ready:\n{self.daemon.log_tail()}")
        self.daemon.quiet(0.3, 30.0)
        self.res["base_rss_kib"], self.res["base_fds"] = self.daemon.rss_kib(), self.daemon.fds()
        self.clock = EventClock(self.client)

    def follow_starts(self) -> None:
        n, daemon, res = self.n, self.daemon, self.res
        c0, t0 = daemon.cpu_s(), time.time_ns()
        returned = self._parallel(lambda box: (box.start(), time.time_ns())[1], self.boxes)
        res["start_all_s"] = (max(returned) - t0) / 1e9
        trace: list[tuple[float, int]] = []  # (s after the starts returned, routes running)
        res["routes_trace"] = trace
        done = daemon.wait_routes(n, self.budget.timeout(self.budget.left()), trace=trace)
        if done is None:
            res["follow_cpu_s_so_far"] = daemon.cpu_s() - c0
            raise OverBudget(f"over budget while following {n} starts")
        assert self.clock is not None
        last_event = max(self.clock.wait(str(box.id), "start", timeout=30) for box in self.boxes)
        res["last_start_to_all_s"] = (done - last_event) / 1e9
        res["last_return_to_all_s"] = (done - max(returned)) / 1e9
        daemon.quiet(self.opts.quiet_s, self.budget.timeout(120))
        res["follow_cpu_s"] = daemon.cpu_s() - c0
        missing = [p for p in self.ports[:n:max(1, n // 50)] if not accepts(p)]  # fmt: skip
        if missing:
            raise RuntimeError(f"ports {missing[:5]} do not accept with every route running")
        res["rss_kib"], res["fds"] = daemon.rss_kib(), daemon.fds()
        res["rss_per_route_kib"] = (res["rss_kib"] - res["base_rss_kib"]) / n
        res["fds_per_route"] = (res["fds"] - res["base_fds"]) / n

    def _settle(self, after_ns: int, what: str) -> None:
        """Until a reconcile pass finished after ``after_ns`` and the daemon is idle."""
        if not self.daemon.wait_pass_after(after_ns, self.budget.timeout(60)):
            self.budget.check(what)
            raise RuntimeError(f"{what}: no reconcile pass followed")
        self.daemon.quiet(self.opts.quiet_s, self.budget.timeout(60))

    def unrelated(self) -> None:
        """An unlabelled container is created and started, then removed (rm -f)."""
        cpu: list[float] = []
        self.res["unrelated_cpu_ms"] = cpu
        for _ in range(self.opts.unrelated):
            self.budget.check("unrelated containers")
            c0 = self.daemon.cpu_ns()
            box = self._create({}, self.nets[0])
            before = time.time_ns()  # the daemon may be done before start() returns
            box.start()
            self._settle(before, "an unrelated start")
            before = time.time_ns()
            box.remove(force=True, v=True)
            self._settle(before, "an unrelated removal")
            cpu.append((self.daemon.cpu_ns() - c0) / 1e6)
        self.res["unrelated"] = summary(cpu)

    def next_routes(self) -> None:
        """A new labelled container: ``docker start`` returned -> its listener accepts."""
        after_return: list[float] = []
        after_event: list[float] = []
        self.res["next_after_return_ms"] = after_return
        self.res["next_after_event_ms"] = after_event
        assert self.clock is not None
        for k in range(self.opts.next_routes):
            self.budget.check("next routes")
            port = self.ports[self.n + k]
            box = self._create(self._route_labels(self.n + k, port), self.nets[-1])
            box.start()
            returned = time.time_ns()
            up = poll_until(partial(accepts, port), self.budget.timeout(60))
            if up is None:
                self.budget.check("next routes")
                raise RuntimeError(f"port {port} never accepted")
            after_return.append((up - returned) / 1e6)
            after_event.append((up - self.clock.wait(str(box.id), "start")) / 1e6)
            self.daemon.quiet(self.opts.quiet_s, self.budget.timeout(60))
        self.res["next_after_return"] = summary(after_return)
        self.res["next_after_event"] = summary(after_event)
