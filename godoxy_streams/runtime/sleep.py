"""Sleep/wake: containers with ``proxy.idle_timeout`` are put to sleep when idle and woken by
the next client (GoDoxy's idle watcher for stream routes).

``SleepController`` ties the parts together for the daemon: the reconciler hands it the
containers that sleep after every pass (``sync``) and asks it which are held (``hold``);
the manager gives each route with such a member a ``pre_dial`` hook (``gate``), which the
data plane runs after the route's ACL and limits (a denied client never wakes anything) and
before it picks an upstream. While some member is awake the hook does nothing; when every
member sleeps, it wakes one (the one already waking, else the next sleeper in turn) and holds
the connection or UDP session, with the client's bytes, until the wake ends. A failed wake
refuses the held clients (TCP connections closed, UDP datagrams dropped, counted). The idle
tracker (``idle``) runs every ``tick``; ``views`` feed the read model, and sleeps and wakes
go into the daemon's event timeline (``note``), on each of the container's routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from godoxy_streams.decide.sleep import sleep_state
from godoxy_streams.errors import Refused
from godoxy_streams.model import RouteKey, SleepState
from godoxy_streams.runtime.health_monitor import member_key
from godoxy_streams.runtime.idle import Activity, IdleTracker
from godoxy_streams.runtime.manager import StreamManager
from godoxy_streams.runtime.sleepers import (
    EngineKey,
    Feed,
    Lifecycle,
    Registry,
    SleepTarget,
    WakeFailed,
)
from godoxy_streams.runtime.waker import Waker
from godoxy_streams.snapshot import SleeperView
from godoxy_streams.streams.context import ConnContext, Hook
from godoxy_streams.streams.probes import Probe, probe_for

SLEEPING = ("asleep", "waking")


class SleepController:
    def __init__(
        self, manager: StreamManager, engines: Callable[[str], Lifecycle | None], feed: Feed
    ) -> None:
        self.manager = manager
        self.registry = Registry(engines, feed)
        self.waker = Waker(self.registry, self.probes, self.awake)
        self.idle = IdleTracker(self.registry, self.activity, self.waker.in_flight)
        self._turns: dict[RouteKey, int] = {}
        self._waking: list[RouteKey] = []  # running routes with a member that sleeps
        self._waking_at = -1  # the manager's generation they were found at
        manager.gate_for = self.gate
        self.registry.note = self.note

    # -- from the reconciler -------------------------------------------------------------------
    def hold(self, key: EngineKey) -> SleepState | None:
        """A wake or sleep under way overrides the container's Docker state."""
        return self.registry.holds.get(key)

    def sync(self, targets: Mapping[EngineKey, SleepTarget]) -> None:
        """The containers that sleep (and their dependencies) as the last pass saw them."""
        gone = set(self.registry.targets) - set(targets)
        self.registry.targets = dict(targets)
        self.registry.forget(gone)
        for key in gone:  # removed containers: their counters go with them
            self.waker.counts.pop(key, None)
            self.idle.counts.pop(key, None)
            self.idle.failed_at.pop(key, None)
        self._turns = {k: v for k, v in self._turns.items() if k in self.manager.running}

    async def run(self) -> None:
        """Look for idle containers, forever."""
        while True:
            await asyncio.sleep(self.idle.tick())
            self.idle.check()

    # -- the data plane's hook -----------------------------------------------------------------
    def gate(self, route_key: RouteKey) -> Hook:
        """The ``pre_dial`` hook of the route on ``route_key``."""

        def pre_dial(ctx: ConnContext) -> Awaitable[None] | None:
            route = self.manager.running.get(route_key)
            if route is None:
                return None
            pool = route.stream.pool
            if pool is not None and pool.any_available():
                return None
            sleepers = [
                (m.origin.engine, m.origin.id)
                for m in route.spec.members
                if m.origin.sleep in SLEEPING
            ]
            if not sleepers:
                return None  # no member may take it: the data plane says "no upstream"
            chosen = next((k for k in sleepers if self.waker.in_flight(k)), None)
            if chosen is None:
                turn = self._turns.get(route_key, 0)
                self._turns[route_key] = turn + 1
                chosen = sleepers[turn % len(sleepers)]
            return self._wait(chosen)

        return pre_dial

    async def _wait(self, key: EngineKey) -> None:
        try:
            await self.waker.wait(key)
        except WakeFailed as exc:
            target = self.registry.targets.get(key)
            raise Refused(f"{target.name if target else key[1][:12]} did not wake: {exc}") from None

    # -- what the parts read -------------------------------------------------------------------
    def activity(self) -> dict[EngineKey, Activity]:
        """Each sleeping-capable container's open connections and traffic counters, over its
        routes: a route's own counters when it is the route's only member, else its pool
        member's (open and total connections)."""
        out: dict[EngineKey, Activity] = {}

        def add(key: EngineKey, active: int, counters: tuple[int, ...]) -> None:
            before = out.get(key, (0, ()))
            out[key] = (before[0] + active, before[1] + counters)

        running = self.manager.running
        if self._waking_at != self.manager.generation:  # the routes changed: which wake?
            self._waking = [key for key, route in running.items() if route.spec.wakes]
            self._waking_at = self.manager.generation
        for key in self._waking:
            route = running.get(key)
            if route is None:
                continue
            spec, stream = route.spec, route.stream
            members = spec.members
            if len(members) == 1:
                stats, origin = stream.stats, members[0].origin
                add(
                    (origin.engine, origin.id),
                    stats.active,
                    (stats.total, stats.bytes_in, stats.bytes_out),
                )
                continue
            for member in members:
                found = stream.pool.member(member_key(member)) if stream.pool else None
                if found is not None and member.origin.sleep is not None:
                    add((member.origin.engine, member.origin.id), found.active, (found.total,))
        return out

    def awake(self, key: EngineKey) -> bool:
        """Whether every running route of ``key`` has it awake (taking connections)."""
        return all(
            member.origin.sleep in (None, "awake")
            for route in self.manager.running.values()
            for member in route.spec.members
            if (member.origin.engine, member.origin.id) == key
        )

    def probes(self, key: EngineKey) -> list[Probe] | None:
        """The probes of ``key``'s routes at their current addresses (None: not known yet);
        a UDP probe waits for a reply even when the route expects none in particular."""
        probes: list[Probe] = []
        for route in self.manager.running.values():
            spec = route.spec
            for member in spec.members:
                if (member.origin.engine, member.origin.id) != key:
                    continue
                if not member.host:
                    return None
                tunnel = self.manager.tunnels.get(member.origin.engine)
                check = spec.healthcheck
                if check.send is not None and check.expect is None:
                    check = check.model_copy(update={"expect": ""})  # any reply: it answers
                probe = probe_for(spec.proto, member.address, check, tunnel)
                if probe is not None and not check.disable:
                    probes.append(probe)
        return probes

    # -- the read model ------------------------------------------------------------------------
    def note(self, kind: str, key: EngineKey, message: str) -> None:
        """A sleep/wake event in the timeline, on each running route of the container."""
        target = self.registry.targets.get(key)
        text = f"{target.name if target else key[1][:12]}: {message}"
        specs = [
            route.spec
            for route in self.manager.running.values()
            if any((m.origin.engine, m.origin.id) == key for m in route.spec.members)
        ]
        for spec in specs:
            self.manager.events.route(kind, spec, text)
        if not specs:
            self.manager.events.record(kind, text)

    def views(self) -> tuple[SleeperView, ...]:
        now = time.monotonic()
        rows = []
        for key, target in self.registry.targets.items():
            if target.config is None:
                continue
            counts = self.waker.counts.get(key, {})
            last = counts.get("last_wake")
            rows.append(
                SleeperView(
                    name=target.name,
                    engine=target.engine,
                    state=sleep_state(target.state, self.hold(key)),
                    idle_timeout=target.config.idle_timeout,
                    idle_for=self.idle.idle_for(key, now),
                    sleeps=self.idle.counts.get(key, 0),
                    wakes=int(counts.get("wakes", 0)),
                    wake_failures=int(counts.get("wake_failures", 0)),
                    clients_failed=int(counts.get("clients_failed", 0)),
                    last_wake=last,
                )
            )
        return tuple(sorted(rows, key=lambda r: (r.name, r.engine)))
