"""Desired state: every candidate route in, the winners keyed by listen socket plus the
conflicts out (docs/labels.md "Two claims on one port"). Pure and deterministic.

Order of claim on a socket: the route already holding it, then static-file routes, then the
older container (creation time), then the container name, the engine's name, the alias. A
later claimant that pools with the winner (``RouteSpec.pools_with``: the same
``load_balance`` mode, or a replica of the same compose service) and agrees on every listener
setting joins the winner's pool instead of conflicting; the winner stays the first member.
SNI routes on one socket conflict only over a server name they both claim (``keys_overlap``);
the conflict names it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from godoxy_streams.model import Member, RouteKey, RouteSpec, binds_overlap, shared_name

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
    def name(self) -> str | None:
        """The server name the two routes both claim on one socket (SNI routes), or None."""
        wanted, held = self.route.key, self.holder.key
        if wanted.bind != held.bind:
            return None
        return shared_name(wanted, held)

    @property
    def message(self) -> str:
        wanted, held = self.route.key, self.holder.key
        name = self.name
        if name is not None:
            what = f'server name "{name}" on {wanted.socket}'
        elif wanted.socket != held.socket:
            what = f"listen socket {wanted.socket} overlaps {held.socket}, which"
        else:
            what = f"listen socket {wanted.socket}"
        text = (
            f'{what} is held by {self.holder.origin.name} (route "{self.holder.alias}"); '
            "this route takes over when the holder goes away"
        )
        if name is None and bool(wanted.names) != bool(held.names):
            text += " (routes chosen by TLS server name share a socket only with each other)"
        if self.route.pools_with(self.holder):
            differs = ", ".join(self.holder.pool_mismatch(self.route))
            text += f" (it cannot join the holder's pool: {differs} differ)"
        return text


@dataclass(frozen=True)
class DesiredState:
    routes: Mapping[RouteKey, RouteSpec] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


class PortClaims:
    """The winners on one protocol and port so far, indexed so that finding the one a new
    key overlaps (``keys_overlap``) costs one lookup per server name, however many SNI
    routes share the socket."""

    def __init__(self) -> None:
        self.plain: dict[str, RouteSpec] = {}  # bind -> the route holding it
        self.names: dict[str, dict[str, RouteSpec]] = {}  # bind -> SNI pattern -> route

    def holder(self, key: RouteKey) -> RouteSpec | None:
        """The first winner whose key overlaps ``key``, or None."""
        for bind, route in self.plain.items():
            if binds_overlap(bind, key.bind):
                return route
        for bind, claimed in self.names.items():
            if bind == key.bind and key.names:
                hit = next((claimed[n] for n in key.names if n in claimed), None)
                if hit is not None:
                    return hit
            elif binds_overlap(bind, key.bind):
                return next(iter(claimed.values()))
        return None

    def add(self, route: RouteSpec) -> None:
        key = route.key
        if key.names:
            claimed = self.names.setdefault(key.bind, {})
            for name in key.names:
                claimed.setdefault(name, route)
        else:
            self.plain[key.bind] = route


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
    by_port: dict[tuple[str, int], PortClaims] = {}
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
        claims = by_port.setdefault((key.proto, key.port), PortClaims()) if key.port else None
        holder = claims.holder(key) if claims is not None else None
        if holder is not None:
            conflicts.append(Conflict(route, holder))
            continue
        winners[key] = route
        if claims is not None:
            claims.add(route)
    for key, members in pools.items():
        winners[key] = winners[key].model_copy(update={"pool": tuple(members)})
    return DesiredState(winners, tuple(conflicts))
