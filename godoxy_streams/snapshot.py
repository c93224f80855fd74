"""The read model: one immutable picture of the daemon for everything that only looks.

The status API, metrics, the page and ``godoxy-streams routes`` read a ``Snapshot``: routes
with their state, members and counters; the sockets shared by routes chosen by TLS server
name; the engines' states; the containers and why each is or is not exposed. The runtime
and the reconciler build it (``reconcile.snapshot``) from their own state; observers never
reach into the reconciler, the manager or a stream. Plain frozen data (the costly parts read
on first use), no I/O. Besides: the event timeline and each running route's recent history
(``route_history``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from godoxy_streams.budget_views import ApiView, DescriptorView
from godoxy_streams.errors import LabelError
from godoxy_streams.events import Event
from godoxy_streams.model import RouteSpec
from godoxy_streams.route_history import RouteHistory

RouteState = Literal["running", "sleeping", "unhealthy", "error", "conflict"]
ROUTE_STATES: tuple[RouteState, ...] = ("running", "sleeping", "unhealthy", "error", "conflict")


@dataclass(frozen=True, slots=True)
class Counters:
    """A route's counters when the snapshot was taken (zeros for a route that is not bound)."""

    active: int = 0  # open TCP connections / live UDP sessions
    total: int = 0  # connections accepted / sessions created
    bytes_in: int = 0  # client -> upstream
    bytes_out: int = 0  # upstream -> client
    dial_errors: tuple[tuple[str, int], ...] = ()  # by reason
    refused: int = 0
    denied: int = 0
    limited: int = 0
    proxy_errors: int = 0
    sessions_refused: int = 0
    evicted: int = 0
    dropped: int = 0
    no_upstream: int = 0


@dataclass(frozen=True, slots=True)
class MemberView:
    """One pool member: where it is, whether it takes connections and why not, its counters."""

    key: str
    host: str
    port: int
    container: str
    state: str  # healthy, sleeping, starting, unhealthy, down, failing
    available: bool
    docker_health: str | None = None
    active: int = 0
    total: int = 0
    failures: int = 0
    last_error: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "host": self.host,
            "port": self.port,
            "container": self.container,
            "state": self.state,
            "docker_health": self.docker_health,
            "active": self.active,
            "total": self.total,
            "failures": self.failures,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class LiveState:
    """What a bound route's stream says now: its counters and its members."""

    counters: Counters = Counters()
    members: tuple[MemberView, ...] = ()


NOT_BOUND = LiveState()


def _not_bound() -> LiveState:
    return NOT_BOUND


@dataclass(frozen=True)
class RouteView:
    """One route as observers see it: its spec, state, bound port, counters and members
    (``members`` is empty for a route with no pool state: one that is not bound).

    ``live`` reads the counters and members; it is called once, when first asked, so a page
    of 50 routes out of 10,000 reads only those 50 streams.

    ``path`` is what serves clients from other hosts: ``kernel`` (nftables DNAT; ``kernel``
    holds the kernel's counters, ``counters`` the userspace listener's, which still serves
    local clients) or ``userspace``; ``path_reason`` says why (None: the fast path is off)."""

    spec: RouteSpec
    state: RouteState
    error: str | None = None
    listen_port: int | None = None
    notice: str | None = None  # something the operator should know, e.g. a kept port was taken
    live: Callable[[], LiveState] = field(default=_not_bound, repr=False, compare=False)
    socket_id: str = ""  # ``spec.key.id`` when the caller has it at hand
    path: str = "userspace"
    path_reason: str | None = None
    kernel: Counters | None = None

    @cached_property
    def now(self) -> LiveState:
        return self.live()

    @property
    def counters(self) -> Counters:
        return self.now.counters

    @property
    def members(self) -> tuple[MemberView, ...]:
        return self.now.members

    def by_path(self) -> tuple[tuple[str, Counters], ...]:
        """The counters of each path that served this route."""
        if self.kernel is None:
            return (("userspace", self.counters),)
        return (("userspace", self.counters), ("kernel", self.kernel))

    @cached_property
    def id(self) -> str:
        """Stable and URL-safe: the listen socket's id (``RouteKey.id``); a route in conflict
        for a socket adds ``~`` and a hash of its origin and alias (it shares the socket)."""
        socket = self.socket_id or self.spec.key.id
        if self.state != "conflict":
            return socket
        origin = self.spec.origin
        owner = f"{origin.engine}/{origin.id or origin.name}/{self.spec.alias}"
        return f"{socket}~{hashlib.sha256(owner.encode()).hexdigest()[:8]}"

    @property
    def listen(self) -> str:
        """``host:port`` of the socket (the configured port while not bound)."""
        bind = self.spec.bind
        host = f"[{bind}]" if ":" in bind else bind
        return f"{host}:{self.listen_port or self.spec.listen_port or 0}"

    def as_json(self) -> dict[str, Any]:
        """The route object of ``/api/routes``."""
        row = self.spec.public_dict()
        if self.members:
            row["members"] = [m.as_json() for m in self.members]
        counters, both = self.counters, self.by_path()
        row.update(
            id=self.id,
            listen_port=self.listen_port,
            shared_socket=self.spec.key.socket if self.spec.sni else None,
            state=self.state,
            error=self.error,
            active=sum(c.active for _, c in both),
            bytes_in=sum(c.bytes_in for _, c in both),
            bytes_out=sum(c.bytes_out for _, c in both),
            dial_errors=sum(count for _, count in counters.dial_errors),
            notice=self.notice,
            path=self.path,
            path_reason=self.path_reason,
        )
        if self.kernel is not None:
            row["paths"] = {name: _path_json(c) for name, c in both}
        return row


def _path_json(c: Counters) -> dict[str, int]:
    return {
        "active": c.active,
        "total": c.total,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "refused": c.refused,
    }


SNI_OUTCOMES = (
    "routed",
    "no_match",
    "not_tls",
    "malformed",
    "timed_out",
    "empty",
    "overloaded",
    "no_certificate",
)


@dataclass(frozen=True, slots=True)
class SNISocketView:
    """A listen socket shared by routes chosen by TLS server name, and what became of the
    connections it accepted (``SNI_OUTCOMES``: handed to a route, or why not)."""

    socket: str  # proto/host:port
    routes: int  # routes registered on it
    accepted: int = 0
    outcomes: tuple[tuple[str, int], ...] = ()  # by outcome
    handshakes: int = 0  # terminated handshakes completed
    handshake_failed: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "socket": self.socket,
            "routes": self.routes,
            "accepted": self.accepted,
            **dict(self.outcomes),
            "handshakes": self.handshakes,
            "handshake_failed": self.handshake_failed,
        }


@dataclass(frozen=True, slots=True)
class SourceView:
    """One Docker engine as the daemon follows it."""

    name: str
    endpoint: str
    state: str = "connecting"  # connecting, connected, disconnected
    since: float = 0.0
    error: str | None = None
    synced: bool = False  # the first sync completed or failed once
    version: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "state": self.state,
            "since": self.since,
            "error": self.error,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class ContainerView:
    """A labelled container and why it is or is not exposed."""

    name: str
    id: str
    engine: str
    state: str
    exposed: bool
    reason: str

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "id": self.id[:12],
            "engine": self.engine,
            "state": self.state,
            "exposed": self.exposed,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class SleeperView:
    """A container with sleep/wake: its state and counters."""

    name: str
    engine: str
    state: str  # awake, waking, asleep
    idle_timeout: float
    idle_for: float | None = None  # seconds without traffic so far (awake only)
    sleeps: int = 0
    wakes: int = 0
    wake_failures: int = 0
    clients_failed: int = 0  # clients closed or dropped because a wake failed
    last_wake: float | None = None  # seconds the last successful wake took

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "engine": self.engine,
            "state": self.state,
            "idle_timeout": self.idle_timeout,
            "idle_for": self.idle_for,
            "sleeps": self.sleeps,
            "wakes": self.wakes,
            "wake_failures": self.wake_failures,
            "clients_failed": self.clients_failed,
            "last_wake": self.last_wake,
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything observers show, taken at one moment. What costs a walk over every route or
    container (counters, members, container reasons) or a copy of a ring (a route's history)
    is read when first asked, so a request pays only for what it shows."""

    routes_of: Callable[[], tuple[RouteView, ...]] = tuple
    bound: int | None = None  # routes bound to their socket, when known without the views
    errors: tuple[LabelError, ...] = ()
    containers_of: Callable[[], tuple[ContainerView, ...]] = tuple
    sources: tuple[SourceView, ...] = ()
    static_synced: bool = True
    passes: int = 0  # reconcile passes so far
    last_sync: float = 0.0  # when the last pass finished (time.time())
    agent_channels: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    sni_sockets: tuple[SNISocketView, ...] = ()
    sleepers: tuple[SleeperView, ...] = ()
    timeline: tuple[Event, ...] = ()  # the event ring, oldest first
    history_of: Callable[[str], RouteHistory | None] = field(default=lambda _: None)
    descriptors: DescriptorView | None = None
    api: ApiView | None = None
    fast_path: Mapping[str, object] = field(default_factory=dict)  # enabled, reason, docker_user

    @cached_property
    def routes(self) -> tuple[RouteView, ...]:
        """Every route (the views are made when first asked)."""
        return self.routes_of()

    @cached_property
    def containers(self) -> tuple[ContainerView, ...]:
        """The labelled containers (worked out when first asked)."""
        return self.containers_of()

    @property
    def ready(self) -> bool:
        """Every source synced once (or failed once) and one pass ran."""
        return self.static_synced and all(s.synced for s in self.sources) and self.passes > 0

    @property
    def running(self) -> int:
        """Routes bound to their socket (healthy, sleeping or not)."""
        if self.bound is not None:
            return self.bound
        return sum(1 for r in self.routes if r.state in ("running", "sleeping", "unhealthy"))

    def routes_document(self) -> dict[str, Any]:
        """The body of ``/api/routes``."""
        return {
            "routes": [route.as_json() for route in self.routes],
            "errors": [error.as_dict() for error in self.errors],
            "containers": [c.as_json() for c in self.containers],
            "sni_sockets": [s.as_json() for s in self.sni_sockets],
            "sleepers": [s.as_json() for s in self.sleepers],
        }

    def health_document(self) -> dict[str, object]:
        """The body of ``/healthz``."""
        body: dict[str, object] = {
            "status": "ok" if self.ready else "starting",
            "sources": [s.as_json() for s in self.sources],
            "routes_running": self.running,
            "last_sync": self.last_sync or None,
        }
        if self.descriptors is not None:
            body["descriptors"] = self.descriptors.as_json(self.api)
        if self.agent_channels:
            body["agent_flows"] = {k: dict(v) for k, v in self.agent_channels.items()}
        if self.fast_path:
            body["fast_path"] = dict(self.fast_path)
        return body
