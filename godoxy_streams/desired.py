"""Desired state: every candidate route in, the winners keyed by listen socket plus the
conflicts out (labels.md "Listen-socket conflicts"). Pure and deterministic.

Order of claim on a socket: the route already holding it, then static-file routes, then the
older container (creation time), then the container name, then the alias.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from godoxy_streams.model import RouteKey, RouteSpec, keys_overlap


def identity(route: RouteSpec) -> tuple[str, str, str, str]:
    """Who a route belongs to, beyond its listen socket: origin, alias and protocol."""
    return (route.origin.kind, route.origin.id or route.origin.name, route.alias, route.proto)


@dataclass(frozen=True)
class Conflict:
    """``route`` wants a socket that ``holder`` keeps."""

    route: RouteSpec
    holder: RouteSpec

    @property
    def message(self) -> str:
        wanted, held = self.route.key, self.holder.key
        socket = f"listen socket {wanted}" + (f" overlaps {held}, which" if wanted != held else "")
        return (
            f'{socket} is held by {self.holder.origin.name} (route "{self.holder.alias}"); '
            "this route takes over when the holder goes away"
        )


@dataclass(frozen=True)
class DesiredState:
    routes: Mapping[RouteKey, RouteSpec] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


def build_desired(
    candidates: Iterable[RouteSpec], *, holders: Iterable[RouteSpec] = ()
) -> DesiredState:
    """Pick one route per listen socket; ``holders`` are the routes running now."""
    holding = {identity(route) for route in holders}

    def rank(route: RouteSpec) -> tuple[bool, bool, float, str, str, str]:
        return (
            identity(route) not in holding,
            route.origin.kind != "file",
            route.origin.created,
            route.origin.name,
            route.alias,
            route.proto,
        )

    winners: dict[RouteKey, RouteSpec] = {}
    by_port: dict[tuple[str, int], list[RouteSpec]] = {}
    conflicts: list[Conflict] = []
    for route in sorted(set(candidates), key=rank):
        key = route.key
        if key in winners:
            conflicts.append(Conflict(route, winners[key]))
            continue
        rivals = by_port.get((key.proto, key.port), []) if key.port else []
        holder = next((r for r in rivals if keys_overlap(r.key, key)), None)
        if holder is not None:
            conflicts.append(Conflict(route, holder))
            continue
        winners[key] = route
        if key.port:
            by_port.setdefault((key.proto, key.port), []).append(route)
    return DesiredState(winners, tuple(conflicts))
