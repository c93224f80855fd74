"""Desired state: every candidate route in, the winners keyed by listen socket plus the
conflicts out (docs/labels.md "Two claims on one port"). Pure and deterministic.

Order of claim on a socket: the route already holding it, then static-file routes, then the
older container (creation time), then the container name, the engine's name, the alias. A
later claimant that pools with the winner (``RouteSpec.pools_with``: the same
``load_balance`` mode, or a replica of the same compose service) and agrees on every listener
setting joins the winner's pool instead of conflicting; the winner stays the first member.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from godoxy_streams.model import Member, RouteKey, RouteSpec, keys_overlap

Identity = tuple[str, str, str, str]
# The routes that can interact (conflict or pool) share a group: same protocol and port, or,
# for a port picked automatically, the one route itself.
SocketGroup = tuple[str, str, int] | tuple[str, str, str, str]


def identity(route: RouteSpec | Member, proto: str = "") -> Identity:
    """Who a route (or pool member) belongs to, beyond its listen socket: origin, alias and
    protocol."""
    if isinstance(route, RouteSpec):
        proto = route.proto
    return (route.origin.kind, route.origin.id or route.origin.name, route.alias, proto)


@dataclass(frozen=True)
class Conflict:
    """``route`` wants a socket that ``holder`` keeps."""

    route: RouteSpec
    holder: RouteSpec

    @property
    def message(self) -> str:
        wanted, held = self.route.key, self.holder.key
        socket = f"listen socket {wanted}" + (f" overlaps {held}, which" if wanted != held else "")
        text = (
            f'{socket} is held by {self.holder.origin.name} (route "{self.holder.alias}"); '
            "this route takes over when the holder goes away"
        )
        if self.route.pools_with(self.holder):
            differs = ", ".join(self.holder.pool_mismatch(self.route))
            text += f" (it cannot join the holder's pool: {differs} differ)"
        return text


@dataclass(frozen=True)
class DesiredState:
    routes: Mapping[RouteKey, RouteSpec] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


def socket_group(key: RouteKey) -> SocketGroup:
    """The group of a listen socket: routes of different groups never conflict or pool."""
    if key.port:
        return ("port", key.proto, key.port)
    return ("auto", key.proto, key.bind, key.owner)


def held_identities(holders: Iterable[RouteSpec]) -> set[Identity]:
    """Who holds a socket now: the identities of the running routes' members."""
    return {identity(m, r.proto) for r in holders for m in r.members}


def build_desired(
    candidates: Iterable[RouteSpec],
    *,
    holders: Iterable[RouteSpec] = (),
    holding: Collection[Identity] | None = None,
) -> DesiredState:
    """Pick one route (or pool) per listen socket; ``holders`` are the routes running now
    (or, given directly, ``holding`` their members' identities)."""
    if holding is None:
        holding = held_identities(holders)

    def rank(route: RouteSpec) -> tuple[bool, bool, float, str, str, str, str]:
        return (
            identity(route) not in holding,
            route.origin.kind != "file",
            route.origin.created,
            route.origin.name,
            route.origin.engine,
            route.alias,
            route.proto,
        )

    winners: dict[RouteKey, RouteSpec] = {}
    pools: dict[RouteKey, list[Member]] = {}
    by_port: dict[tuple[str, int], list[RouteSpec]] = {}
    conflicts: list[Conflict] = []
    for route in sorted(set(candidates), key=rank):
        key = route.key
        if key in winners:
            winner = winners[key]
            if winner.pools_with(route) and not winner.pool_mismatch(route):
                pools.setdefault(key, list(winner.members)).extend(route.members)
            else:
                conflicts.append(Conflict(route, winner))
            continue
        rivals = by_port.get((key.proto, key.port), []) if key.port else []
        holder = next((r for r in rivals if keys_overlap(r.key, key)), None)
        if holder is not None:
            conflicts.append(Conflict(route, holder))
            continue
        winners[key] = route
        if key.port:
            by_port.setdefault((key.proto, key.port), []).append(route)
    for key, members in pools.items():
        winners[key] = winners[key].model_copy(update={"pool": tuple(members)})
    return DesiredState(winners, tuple(conflicts))
