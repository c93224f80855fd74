"""The event timeline: what changed and when (a route started, a member went down, the engine
came back), kept in a bounded ring for the status API's ``/api/events`` and the page.

One ``EventLog`` per daemon, passed down to whoever sees a change happen (the manager, the
health checks, the reconciler, the watchers); nothing here does I/O. Recording is a call:

    events.record("engine_lost", "Docker engine unix:///var/run/docker.sock unreachable")
    events.route("sleep", spec, "no connection for 10 min: container stopped")

``select`` filters a copy of the ring by route, kind and time (pure, for the read model).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from godoxy_streams.model import RouteSpec

CAPACITY = 2000  # events kept; the oldest go first

# Every kind the daemon records, in the order the page lists them.
KINDS: tuple[str, ...] = (
    "route_started",
    "route_stopped",
    "route_retargeted",
    "route_failed",  # its listener could not be bound
    "conflict",
    "takeover",  # a route in conflict got the socket when its holder went away
    "member_down",
    "member_up",
    "engine_lost",
    "engine_back",
    "sleep",
    "sleep_failed",
    "wake",
    "wake_failed",
)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int  # 1, 2, ... in the order recorded
    time: float  # time.time()
    kind: str
    message: str
    route: str = ""  # the route's id (``RouteKey.id``) when about one route
    alias: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "route": self.route or None,
            "alias": self.alias or None,
            "message": self.message,
        }


class EventLog:
    """A bounded ring of events; ``record`` is all a producer needs."""

    def __init__(self, capacity: int = CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._clock = clock
        self._seq = 0

    def record(self, kind: str, message: str, *, route: str = "", alias: str = "") -> Event:
        self._seq += 1
        event = Event(self._seq, self._clock(), kind, message, route, alias)
        self._ring.append(event)
        return event

    def route(self, kind: str, spec: RouteSpec, message: str) -> Event:
        """An event about one route, named by its socket's id and its alias."""
        return self.record(kind, message, route=spec.key.id, alias=spec.alias)

    def events(self) -> tuple[Event, ...]:
        """The ring now, oldest first (a copy: events are frozen, the tuple is cheap)."""
        return tuple(self._ring)


def select(
    events: Iterable[Event],
    *,
    route: str | None = None,
    kinds: Iterable[str] = (),
    since: float | None = None,
    limit: int | None = None,
) -> list[Event]:
    """The events of ``route`` (its id), of one of ``kinds`` (all when empty), at or after
    ``since`` (epoch seconds), oldest first; with ``limit``, only the newest ``limit``."""
    wanted = frozenset(kinds)
    found = [
        e
        for e in events
        if (not route or e.route == route)
        and (not wanted or e.kind in wanted)
        and (since is None or e.time >= since)
    ]
    if limit is not None:
        found = found[-limit:] if limit > 0 else []
    return found
