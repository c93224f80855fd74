"""When the kernel path ends flows: a stopped route's at once (``on_stop: kill``) or when its
``drain_timeout`` is over (``drain``), those to a member a ``kill`` route lost on a retarget,
and at shutdown each route's when its drain ends. A stopped route's id is free again only
after its flows are gone (see ids.py).

An end is due only once the apply that took the route (or member) out of the table is done:
before that, new flows could still arrive after the kill. Ending a flow deletes its conntrack
entry (``KernelPath.kill``); a drained route needs nothing until then, as its entries keep
their NAT after the rules are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from godoxy_streams.model import RouteSpec

from .conntrack import active_by_route
from .ids import RouteIds
from .nft import KernelError
from .path import KernelPath
from .routes import Proto

POLL_S = 0.25  # shutdown: how often open flows are counted while they drain


@dataclass(frozen=True)
class End:
    """Flows to end at ``due`` once the apply of change ``after`` is done: a route's
    (``member`` None) or those to one member; ``release``: the route stopped, its id is free
    after this."""

    due: float
    route_id: int
    after: int
    protocol: Proto
    member: tuple[str, int] | None = None
    release: bool = False


class FlowEnds:
    """The ends to come, and the route ids that ever forwarded a flow (only those can have
    flows to end)."""

    def __init__(self, ids: RouteIds) -> None:
        self._ids = ids
        self.pending: list[End] = []
        self.forwarded: set[int] = set()

    def route_stopped(self, spec: RouteSpec | None, route_id: int, change: int) -> None:
        if spec is None or route_id not in self.forwarded:
            self._ids.release(route_id)  # never forwarded a flow
            return
        wait = 0.0 if spec.on_stop == "kill" else spec.drain_timeout
        due = time.monotonic() + wait
        self.pending.append(End(due, route_id, change, spec.proto, release=True))

    def members_lost(self, old: RouteSpec, new: RouteSpec, route_id: int, change: int) -> None:
        """``new`` replaced ``old`` on a retarget: with ``on_stop: kill``, the flows to the
        members it lost end."""
        if route_id not in self.forwarded or new.on_stop != "kill":
            return
        gone = {m.address for m in old.members} - {m.address for m in new.members}
        for host, port in sorted(gone):
            with contextlib.suppress(ValueError):
                ipaddress.IPv4Address(host)  # a name never reached the table
                end = End(time.monotonic(), route_id, change, new.proto, (host, port))
                self.pending.append(end)

    def next_due(self, applied: int) -> float | None:
        """When the next end that may run is due (those waiting for an apply excluded)."""
        return min((e.due for e in self.pending if e.after <= applied), default=None)

    async def end_due(self, path: KernelPath, applied: int, log: Callable[[str], None]) -> None:
        now = time.monotonic()
        for end in [e for e in self.pending if e.due <= now and e.after <= applied]:
            self.pending.remove(end)
            try:
                await path.kill(end.route_id, end.member, end.protocol)
            except KernelError as e:
                log(f"fast path: cannot kill flows of route id {end.route_id}: {e}")
            if end.release:
                self.forwarded.discard(end.route_id)
                self._ids.release(end.route_id)

    def waits(self, running: dict[int, RouteSpec], grace: float) -> dict[int, float]:
        """At shutdown: seconds from now each route id's flows may still run (``running``:
        the running routes by id), at most ``grace``."""
        now = time.monotonic()
        waits = {
            rid: 0.0 if spec.on_stop == "kill" else min(grace, spec.drain_timeout)
            for rid, spec in running.items()
            if rid in self.forwarded
        }
        for end in self.pending:
            if end.release:
                waits[end.route_id] = min(grace, max(0.0, end.due - now))
        return waits


async def drain(path: KernelPath, waits: dict[int, float], cut: asyncio.Event) -> None:
    """Kill each route's flows when its wait is over (at once once ``cut`` is set); done when
    no route in ``waits`` has a flow left."""
    start = time.monotonic()
    while waits:
        active = active_by_route(await path.flows())
        elapsed = time.monotonic() - start
        over = [
            r for r, wait in waits.items() if cut.is_set() or r not in active or elapsed >= wait
        ]
        for route_id in over:
            if route_id in active:
                await path.kill(route_id)
            del waits[route_id]
        if waits:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await cut.wait()
