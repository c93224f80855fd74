"""Route models: what a stream route is, as frozen, comparable data.

A ``RouteSpec`` is the validated result of parsing labels or a static route. It is hashable and
compares by value, so later stages can diff the desired routes against the running ones.
``RouteKey`` names the listen socket a route claims, and for an SNI route (one of several TCP
routes sharing a socket, each choosing its clients by TLS server name) the names it claims
there. No I/O here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from godoxy_streams.server_names import NamePattern, parse_pattern

Proto = Literal["tcp", "udp"]
Scheme = Literal["tcp", "udp", "tcp4", "tcp6", "udp4", "udp6"]
OriginKind = Literal["docker", "file", "compose"]
LoadBalanceMode = Literal["round_robin", "least_conn", "ip_hash"]
OnStop = Literal["drain", "kill"]
DockerHealth = Literal["starting", "healthy", "unhealthy"]
ProxyProtocol = Literal["v1", "v2"]
SleepState = Literal["awake", "waking", "asleep"]  # of a container with sleep/wake

DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_UDP_TIMEOUT = 60.0
DEFAULT_DRAIN_TIMEOUT = 5.0
_UNSAFE = re.compile(r"[^0-9A-Za-z.]")  # in a bind address: IPv6 colons, a scope's %


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_post_init(self, context: Any, /) -> None:
        """Share the set of fields given (pydantic keeps one per instance, 700-odd bytes)
        among instances that gave the same fields: about 2 KiB less per route at ten
        thousand routes. Safe because a frozen model's set is never changed in place
        (``model_copy`` changes a copy of it)."""
        given = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.setdefault(frozenset(given), given)
        if shared is not given:
            object.__setattr__(self, "__pydantic_fields_set__", shared)


class HealthCheck(_Frozen):
    """Active health probing of a route's upstream."""

    disable: bool = False
    interval: float = 5.0
    timeout: float = 5.0
    retries: int = 3
    rise: int = 2
    send: str | None = None
    expect: str | None = None


class RouteOrigin(_Frozen):
    """Where a route came from: a container, a compose service or the static routes file."""

    kind: OriginKind
    name: str
    id: str = ""
    created: float = 0.0
    engine: str = "local"
    compose_project: str = ""
    compose_service: str = ""
    health: DockerHealth | None = None  # the container's HEALTHCHECK state, when it has one
    sleep: SleepState | None = None  # None: the container does not sleep (no idle_timeout)


class Member(_Frozen):
    """One upstream of a route: where to dial, and the container (or file entry) behind it."""

    alias: str
    host: str
    port: int
    origin: RouteOrigin

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


SNI_OWNER = "sni:"


class RouteKey(NamedTuple):
    """The listen socket a route claims.

    ``port`` 0 means "picked automatically"; such a route is told apart by ``owner``
    (its origin and alias) until it is bound. An SNI route's ``owner`` is ``sni:`` and its
    server-name patterns (written form, sorted, comma-separated): routes with different
    names share the socket under different keys.
    """

    proto: Proto
    bind: str
    port: int
    owner: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """The server-name patterns of an SNI route's key; () for a plain socket."""
        if self.port and self.owner.startswith(SNI_OWNER):
            return tuple(self.owner[len(SNI_OWNER) :].split(","))
        return ()

    @property
    def socket(self) -> str:
        """``proto/host:port`` without the names."""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        port = str(self.port) if self.port else f"auto({self.owner})"
        return f"{self.proto}/{host}:{port}"

    def __str__(self) -> str:
        names = self.names
        return f"{self.socket} sni {','.join(names)}" if names else self.socket

    @property
    def id(self) -> str:
        """The key in URL-safe characters, the route's id in the status API:
        ``tcp_0.0.0.0_2222``, ``udp_--1_53`` (``::1``: IPv6 colons become ``-``); for a port
        picked automatically ``tcp_0.0.0.0_auto-<10 hex digits of its owner's hash>``; for
        an SNI route ``tcp_0.0.0.0_443_sni-<10 hex digits of its names' hash>``. The same key
        has the same id across restarts and retargets."""
        bind = _UNSAFE.sub("-", self.bind)
        digest = hashlib.sha256(self.owner.encode()).hexdigest()[:10]
        if not self.port:
            return f"{self.proto}_{bind}_auto-{digest}"
        if self.owner:
            return f"{self.proto}_{bind}_{self.port}_sni-{digest}"
        return f"{self.proto}_{bind}_{self.port}"


class RouteSpec(_Frozen):
    """One validated stream route: listen on (scheme, bind, listen_port), forward to target."""

    alias: str
    scheme: Scheme
    bind: str
    listen_port: int | None
    target_host: str
    target_port: int
    origin: RouteOrigin
    proxy_protocol: ProxyProtocol | None = None
    acl_allow: tuple[str, ...] = ()
    acl_deny: tuple[str, ...] = ()
    max_connections: int | None = None
    max_sessions: int = DEFAULT_MAX_SESSIONS
    conn_idle_timeout: float | None = None
    udp_timeout: float = DEFAULT_UDP_TIMEOUT
    on_stop: OnStop = "drain"
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    healthcheck: HealthCheck = HealthCheck()
    load_balance: LoadBalanceMode | None = None
    sni: tuple[str, ...] = ()  # server-name patterns (written form, sorted): an SNI route
    tls_termination: bool = False  # SNI route: complete the handshake, relay plaintext
    tls_client_ca: str | None = None  # terminating: clients need a certificate from this CA
    pool: tuple[Member, ...] = ()  # set by ``desired`` when several routes share this socket

    @property
    def proto(self) -> Proto:
        return "udp" if self.scheme.startswith("udp") else "tcp"

    @property
    def key(self) -> RouteKey:
        if self.listen_port:
            owner = SNI_OWNER + ",".join(sorted(self.sni)) if self.sni else ""
            return RouteKey(self.proto, self.bind, self.listen_port, owner)
        return RouteKey(self.proto, self.bind, 0, f"{self.origin.name}/{self.alias}")

    @property
    def name_patterns(self) -> tuple[NamePattern, ...]:
        """The server-name patterns of an SNI route (``sni``), parsed."""
        return tuple(parse_pattern(text) for text in self.sni)

    @property
    def target(self) -> tuple[str, int]:
        return (self.target_host, self.target_port)

    @property
    def members(self) -> tuple[Member, ...]:
        """The upstreams: the pool, or this route's own target alone."""
        if self.pool:
            return self.pool
        own = Member(
            alias=self.alias, host=self.target_host, port=self.target_port, origin=self.origin
        )
        return (own,)

    @property
    def wakes(self) -> bool:
        """Whether a member's container sleeps and is woken by a client (the listener holds
        new connections while it wakes)."""
        if not self.pool:
            return self.origin.sleep is not None
        return any(m.origin.sleep is not None for m in self.pool)

    @property
    def balance(self) -> LoadBalanceMode:
        """How new connections pick a member (round robin unless the labels say otherwise)."""
        return self.load_balance or "round_robin"

    def listener_part(self) -> RouteSpec:
        """This spec with its alias, targets and origin blanked: two specs whose listener parts
        are equal differ only in name and where they forward to, so a retarget serves (a pool
        whose first member leaves keeps its listener)."""
        return self.model_copy(
            update={
                "alias": "",
                "target_host": "",
                "target_port": 0,
                "origin": RouteOrigin(kind=self.origin.kind, name=""),
                "pool": (),
            }
        )

    def pool_mismatch(self, other: RouteSpec) -> list[str]:
        """The settings in which ``other`` differs from this route, besides alias and target;
        routes may share one listener as a pool only when this is empty."""
        mine = self.listener_part().model_dump(exclude={"origin"})
        theirs = other.listener_part().model_dump(exclude={"origin"})
        return sorted(name for name in mine if mine[name] != theirs[name])

    def pools_with(self, other: RouteSpec) -> bool:
        """Whether ``other`` asks to share this route's listen socket as a pool member: both
        name the same ``load_balance`` mode, or both are replicas of one compose service."""
        if self.key != other.key or not self.listen_port:
            return False
        if self.origin.engine != other.origin.engine:  # each engine may be dialled its own way
            return False
        if self.load_balance is not None and self.load_balance == other.load_balance:
            return True
        mine, theirs = self.origin, other.origin
        return bool(
            mine.compose_service
            and (mine.compose_project, mine.compose_service)
            == (theirs.compose_project, theirs.compose_service)
            and self.load_balance == other.load_balance
        )

    def public_dict(self) -> dict[str, Any]:
        """The route object of ``check --json`` and ``/api/routes``."""
        return {
            "alias": self.alias,
            "scheme": self.scheme,
            "bind": self.bind,
            "listen_port": self.listen_port,
            "target_host": self.target_host,
            "target_port": self.target_port,
            "container": self.origin.name,
            "engine": self.origin.engine,
            "load_balance": self.balance if self.pool else self.load_balance,
            "sni": list(self.sni),
            "tls_termination": self.tls_termination,
            "tls_client_ca": self.tls_client_ca,
            "members": [
                {"alias": m.alias, "host": m.host, "port": m.port, "container": m.origin.name}
                for m in self.pool
            ]
            or [
                {
                    "alias": self.alias,
                    "host": self.target_host,
                    "port": self.target_port,
                    "container": self.origin.name,
                }
            ],
        }


def binds_overlap(a: str, b: str) -> bool:
    """Whether two bind addresses share sockets: equal, or one is the wildcard of the other's
    family (``::`` is dual-stack and so overlaps every IPv4 address too)."""
    if a == b:
        return True
    ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    for wild, other in ((ia, ib), (ib, ia)):
        if wild.is_unspecified:
            if wild.version == other.version or wild.version == 6:
                return True
    return False


def keys_overlap(a: RouteKey, b: RouteKey) -> bool:
    """Whether two listen sockets conflict (same protocol and port, overlapping binds).
    Two SNI keys on one socket (the same bind) conflict only when they claim a name in
    common; an SNI key and a plain key, or SNI keys on different sockets that overlap
    (``0.0.0.0`` and ``127.0.0.1``), always do."""
    if a.proto != b.proto or not a.port or a.port != b.port:
        return False
    if not binds_overlap(a.bind, b.bind):
        return False
    return shared_name(a, b) is not None if a.bind == b.bind and a.names and b.names else True


def shared_name(a: RouteKey, b: RouteKey) -> str | None:
    """A server-name pattern both SNI keys claim (the first in ``a``'s order), or None.
    Patterns are kept in written form, so equal patterns are equal strings; an exact name
    inside another key's wildcard is no overlap (the more specific pattern wins it)."""
    theirs = set(b.names)
    return next((name for name in a.names if name in theirs), None)
