"""Active health checks of the running routes' pool members: one ``HealthMonitor`` task per
member that asks for a probe, its verdicts fed to the member's pool.

A member is probed when its route's health check is enabled, the container has no Docker
HEALTHCHECK (Docker's state is authoritative, and reaches the pool through the route spec),
is awake (a sleeping container is not probed; its wake checks readiness itself),
and there is something to probe (TCP connect, through the agent's tunnel for an agent's
containers; UDP only with a ``healthcheck.send`` payload).
``sync_route`` runs for each route a reconcile pass started, stopped or retargeted: monitors
of unchanged members keep running (and their state), new members get one, gone members'
monitors are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from loguru import logger

from godoxy_streams.events import EventLog
from godoxy_streams.model import HealthCheck, Member, RouteKey, RouteSpec
from godoxy_streams.runtime import timeline
from godoxy_streams.runtime.tunnels import EngineTunnel
from godoxy_streams.streams.probes import HealthMonitor, HealthState, probe_for
from godoxy_streams.streams.sockets import where

if TYPE_CHECKING:
    from godoxy_streams.streams.pool import Pool

MonitorKey = tuple[RouteKey, str, tuple[str, int], HealthCheck, int]  # ..., id of the pool


def member_key(member: Member) -> str:
    """A member's identity in its pool: engine, container (or file entry) and alias."""
    origin = member.origin
    return f"{origin.engine}/{origin.id or origin.name}/{member.alias}"


class HealthChecks:
    """The probe tasks of every running route's members, kept per route so a pass touches
    only the routes it changed."""

    def __init__(
        self, tunnels: Mapping[str, EngineTunnel] | None = None, events: EventLog | None = None
    ) -> None:
        self._tasks: dict[RouteKey, dict[MonitorKey, asyncio.Task[None]]] = {}
        self._tunnels = tunnels if tunnels is not None else {}
        self._events = events if events is not None else EventLog()
        self.on_change: Callable[[], None] | None = None  # after a member's verdict

    def sync_route(self, key: RouteKey, spec: RouteSpec | None, pool: Pool | None) -> None:
        """Probe the members of the route now running on ``key`` (None: nothing runs there):
        monitors of unchanged members keep running, new members get one, gone ones end."""
        wanted: dict[MonitorKey, Member] = {}
        if spec is not None and pool is not None and not spec.healthcheck.disable:
            check = spec.healthcheck
            for member in spec.members:
                if member.origin.health is None and member.origin.sleep in (None, "awake"):
                    wanted[(key, member_key(member), member.address, check, id(pool))] = member
        tasks = self._tasks.pop(key, {})
        for gone in [k for k in tasks if k not in wanted]:
            tasks.pop(gone).cancel()
        for mkey, member in wanted.items():
            if mkey not in tasks and spec is not None and pool is not None:
                tunnel = self._tunnels.get(member.origin.engine)
                probe = probe_for(spec.proto, member.address, spec.healthcheck, tunnel)
                if probe is not None:
                    report = self._reporter(spec, member, pool)
                    monitor = HealthMonitor(probe, spec.healthcheck, report)
                    name = f"health {spec.alias} {where(member.address)}"
                    tasks[mkey] = asyncio.create_task(monitor.run(), name=name)
        if tasks:
            self._tasks[key] = tasks

    def _reporter(
        self, spec: RouteSpec, member: Member, pool: Pool
    ) -> Callable[[HealthState], None]:
        key, address, events = member_key(member), member.address, self._events

        def report(state: HealthState) -> None:
            pool.set_probe(key, state.up, None if state.up else state.last_error)
            timeline.probed(events, spec, member, state.up, state.last_error)
            if self.on_change is not None:
                self.on_change()
            log = logger.bind(route=spec.alias, dst=where(address), action="health")
            if state.up:
                log.info(f"upstream {where(address)} of route {spec.alias!r} is up again")
            else:
                log.warning(
                    f"upstream {where(address)} of route {spec.alias!r} is down: {state.last_error}"
                )

        return report

    def close(self) -> None:
        for tasks in self._tasks.values():
            for task in tasks.values():
                task.cancel()
        self._tasks.clear()
