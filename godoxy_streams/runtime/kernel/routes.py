"""The kernel fast path's vocabulary: a route as the nftables renderer sees it, the table that
holds them, and the names of what a table already contains. Frozen data, validated on
construction, so that nothing a label wrote can reach an nft script unchecked. No I/O.

A route's ``route_id`` (1-65535) is chosen by the runtime and kept for the route's life: it is
the low half of the conntrack mark of every flow the route forwards (``MARK_BASE | route_id``),
so counters, active-flow counts and ``kill`` find a route's flows by it across re-renders.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Literal

Proto = Literal["tcp", "udp"]
Balance = Literal["round_robin", "ip_hash"]

TABLE_FAMILY = "inet"
TABLE_NAME = "godoxy_streams"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
MARK_BASE = 0x47440000  # "GD": the high half of every conntrack mark this table sets
MARK_MASK = 0xFFFF0000
MAX_ROUTE_ID = 0xFFFF
DEFAULT_SKIP_IFNAMES = ("lo", "docker*", "br-*")
"""Traffic arriving on these interfaces is never DNATed: loopback, and Docker's bridges (a
container dialling the host's port would be sent back into its own bridge, where a reply to
itself cannot return without hairpin NAT); the userspace listener serves them."""

_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:/@+,=()\[\]-]")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,15}\*?$")


def ipv4(text: str) -> str:
    """``text`` as a canonical IPv4 address; ValueError otherwise."""
    return str(ipaddress.IPv4Address(text))


def comment_text(text: str, limit: int = 120) -> str:
    """``text`` made safe inside an nft ``comment "..."`` (no quotes, no newlines)."""
    return _COMMENT_UNSAFE.sub("?", text)[:limit]


def _port(value: int, what: str) -> None:
    if not 1 <= value <= 65535:
        raise ValueError(f"{what} must be 1-65535, not {value}")


def whole_seconds(seconds: float) -> int:
    """A duration in whole seconds, rounded up, at least 1 (conntrack counts in seconds)."""
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"a timeout must be a positive number of seconds, not {seconds}")
    return max(1, math.ceil(seconds))


@dataclass(frozen=True)
class Upstream:
    """One member: where flows are DNATed to; ``key`` names it for ``ip_hash`` (a container
    id keeps its clients when its address changes; default: address and port)."""

    address: str
    port: int
    key: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", ipv4(self.address))
        _port(self.port, "an upstream port")

    @property
    def identity(self) -> str:
        return self.key or f"{self.address}:{self.port}"


@dataclass(frozen=True)
class KernelRoute:
    """One listen socket forwarded by the kernel: (protocol, bind, listen_port) to members.

    ``bind`` ``0.0.0.0`` means every local address. ``max_connections`` caps TCP connections
    or UDP sessions at once (``ct count``); ``per_source_connections`` the same per client
    address; ``rate``/``burst`` are a per-client token bucket on new flows (``burst`` flows at
    once, refilled at ``rate`` a second). ``udp_timeout`` and ``idle_timeout`` become conntrack
    timeout policies. ``members`` may be empty: the route is then left to the userspace
    listener, which refuses for want of a healthy member.
    """

    route_id: int
    protocol: Proto
    bind: str
    listen_port: int
    members: tuple[Upstream, ...]
    balance: Balance = "round_robin"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_connections: int | None = None
    per_source_connections: int | None = None
    rate: float | None = None
    burst: int = 20
    udp_timeout: float | None = None
    idle_timeout: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.route_id <= MAX_ROUTE_ID:
            raise ValueError(f"route_id must be 1-{MAX_ROUTE_ID}, not {self.route_id}")
        if self.protocol not in ("tcp", "udp"):
            raise ValueError(f"protocol must be tcp or udp, not {self.protocol!r}")
        if self.balance not in ("round_robin", "ip_hash"):
            raise ValueError(f"balance must be round_robin or ip_hash, not {self.balance!r}")
        object.__setattr__(self, "bind", ipv4(self.bind))
        _port(self.listen_port, "listen_port")
        for limit in (self.max_connections, self.per_source_connections):
            if limit is not None and limit < 1:
                raise ValueError(f"a connection limit must be at least 1, not {limit}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number, not {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")
        for timeout in (self.udp_timeout, self.idle_timeout):
            if timeout is not None:
                whole_seconds(timeout)
        for entry in self.allow + self.deny:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry

    @property
    def mark(self) -> int:
        return route_mark(self.route_id)

    @property
    def wildcard(self) -> bool:
        return self.bind == "0.0.0.0"

    def label(self) -> str:
        """How comments name this route: ``tcp 0.0.0.0:2222 name``."""
        return comment_text(f"{self.protocol} {self.bind}:{self.listen_port} {self.name}".strip())


@dataclass(frozen=True)
class Socket:
    """A listen socket served by the userspace engine that a kernel wildcard route on the
    same protocol and port must not capture (a specific bind wins, as with sockets)."""

    protocol: Proto
    bind: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "bind", ipv4(self.bind))
        _port(self.port, "a socket's port")


@dataclass(frozen=True)
class KernelTable:
    """Everything the table holds: the routes, the operator's global ACL (checked before a
    route's own), sources whose connections always go to the userspace listener (PROXY
    protocol peers), userspace sockets a wildcard route must leave alone, and interface name
    patterns whose traffic is never DNATed."""

    routes: tuple[KernelRoute, ...] = ()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    userspace_sources: tuple[str, ...] = ()
    userspace_sockets: tuple[Socket, ...] = ()
    skip_ifnames: tuple[str, ...] = DEFAULT_SKIP_IFNAMES

    def __post_init__(self) -> None:
        ids = [r.route_id for r in self.routes]
        if len(set(ids)) != len(ids):
            raise ValueError("two kernel routes share a route_id")
        sockets = [(r.protocol, r.bind, r.listen_port) for r in self.routes]
        if len(set(sockets)) != len(sockets):
            raise ValueError("two kernel routes share a listen socket")
        for entry in self.allow + self.deny + self.userspace_sources:
            ipaddress.ip_network(entry, strict=False)
        for name in self.skip_ifnames:
            if not _IFNAME.match(name):
                raise ValueError(f"not an interface name pattern: {name!r}")


@dataclass(frozen=True)
class TableObjects:
    """The names of what the table holds now, by kind (read back from the kernel), so an
    update can delete what it replaces and keep what carries state."""

    chains: frozenset[str] = field(default_factory=frozenset)
    sets: frozenset[str] = field(default_factory=frozenset)
    maps: frozenset[str] = field(default_factory=frozenset)
    counters: frozenset[str] = field(default_factory=frozenset)
    timeouts: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class RouteCounters:
    """A route's named counters as read back: flows admitted and refused (packets of the
    first packet of each), and packets/bytes each way (whole IP packets)."""

    connections: int = 0
    refused: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0


def route_mark(route_id: int) -> int:
    """The conntrack mark of a route's flows."""
    return MARK_BASE | route_id


def counter_name(route_id: int, what: str) -> str:
    """Name of one of a route's counters: ``r<id>_<what>`` (conns, refused, c2u, u2c)."""
    return f"r{route_id}_{what}"
