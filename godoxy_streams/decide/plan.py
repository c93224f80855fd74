"""The reconciler's decision: diff the desired routes against the running ones into a plan.

``make_plan`` is a pure function keyed by listen socket. A route whose spec did not change is
left alone; one whose listener is unchanged but whose target moved is retargeted (no rebind);
anything else is stopped and started (also a route that gains or loses a member that sleeps
and wakes: its listener holds new connections while one wakes).
Apply in order: stop, retarget, start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from godoxy_streams.model import RouteKey, RouteSpec


@dataclass(frozen=True)
class Plan:
    stop: tuple[RouteKey, ...] = ()
    retarget: tuple[RouteSpec, ...] = ()
    start: tuple[RouteSpec, ...] = ()
    unchanged: frozenset[RouteKey] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.stop or self.retarget or self.start)


def make_plan(desired: Mapping[RouteKey, RouteSpec], running: Mapping[RouteKey, RouteSpec]) -> Plan:
    stop: list[RouteKey] = []
    retarget: list[RouteSpec] = []
    start: list[RouteSpec] = []
    unchanged: set[RouteKey] = set()
    for key, current in running.items():
        wanted = desired.get(key)
        if wanted is None:
            stop.append(key)
        elif wanted == current:
            unchanged.add(key)
        elif wanted.listener_part() == current.listener_part() and wanted.wakes == current.wakes:
            retarget.append(wanted)
        else:
            stop.append(key)
            start.append(wanted)
    start.extend(route for key, route in desired.items() if key not in running)
    return Plan(
        stop=tuple(sorted(stop)),
        retarget=tuple(sorted(retarget, key=lambda r: r.key)),
        start=tuple(sorted(start, key=lambda r: r.key)),
        unchanged=frozenset(unchanged),
    )
