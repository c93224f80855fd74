"""The reconciler's entries in the event timeline: a route in conflict for a listen socket,
and a route that takes the socket over when its holder goes away.

Compares the conflicts of two passes, so each conflict is recorded once (again when its
holder changes) and a takeover once, whether the listener was kept (a retarget) or rebound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from godoxy_streams.decide.desired import Conflict, identity
from godoxy_streams.events import EventLog
from godoxy_streams.model import RouteKey
from godoxy_streams.runtime.manager import RunningRoute


def note_conflicts(
    events: EventLog,
    before: Sequence[Conflict],
    after: Sequence[Conflict],
    running: Mapping[RouteKey, RunningRoute],
) -> None:
    """Record the conflicts of ``after`` that ``before`` did not have, and the routes of
    ``before``'s conflicts that now hold their socket."""
    seen = {(identity(c.route), c.route.key, identity(c.holder)) for c in before}
    for c in after:
        if (identity(c.route), c.route.key, identity(c.holder)) not in seen:
            events.route("conflict", c.route, f"{c.route.origin.name}: {c.message}")
    still = {(identity(c.route), c.route.key) for c in after}
    for c in before:
        route = c.route
        holder = running.get(route.key)
        if (identity(route), route.key) in still or holder is None:
            continue
        spec = holder.spec
        if identity(route) in {identity(m, spec.proto) for m in spec.members}:
            text = f"{route.origin.name} took {route.key} over from {c.holder.origin.name}"
            events.route("takeover", route, text)
