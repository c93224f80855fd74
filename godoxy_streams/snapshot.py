"""The read model: one immutable picture of the daemon for everything that only looks.

The status API, metrics, the page and ``godoxy-streams routes`` read a ``Snapshot``: routes
with their state, members and counters; the sockets shared by routes chosen by TLS server
name; the engines' states; the containers and why each is or is not exposed. The runtime
and the reconciler build it (``reconcile.snapshot``) from their own state; observers never
reach into the reconciler, the manager or a stream. Plain frozen data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from godoxy_streams.errors import LabelError
from godoxy_streams.model import RouteSpec

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
class RouteView:
    """One route as observers see it: its spec, state, bound port, counters and members
    (``members`` is empty for a route with no pool state: one that is not bound)."""

    spec: RouteSpec
    state: RouteState
    error: str | None = None
    listen_port: int | None = None
    counters: Counters = Counters()
    members: tuple[MemberView, ...] = ()
    notice: str | None = None  # something the operator should know, e.g. a kept port was taken

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
        row.update(
            listen_port=self.listen_port,
            shared_socket=self.spec.key.socket if self.spec.sni else None,
            state=self.state,
            error=self.error,
            active=self.counters.active,
            bytes_in=self.counters.bytes_in,
            bytes_out=self.counters.bytes_out,
            notice=self.notice,
        )
        return row


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
class EventView:
    """One recent event (sleep/wake: a container put to sleep, woken, or failing to)."""

    time: float  # time.time()
    kind: str  # sleep, wake, wake_failed, sleep_failed
    container: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "kind": self.kind,
            "container": self.container,
            "message": self.message,
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
    """Everything observers show, taken at one moment."""

    routes: tuple[RouteView, ...] = ()
    errors: tuple[LabelError, ...] = ()
    containers: tuple[ContainerView, ...] = ()
    sources: tuple[SourceView, ...] = ()
    static_synced: bool = True
    passes: int = 0  # reconcile passes so far
    last_sync: float = 0.0  # when the last pass finished (time.time())
    agent_channels: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    sleepers: tuple[SleeperView, ...] = ()
    events: tuple[EventView, ...] = ()  # recent, oldest first
    sni_sockets: tuple[SNISocketView, ...] = ()

    @property
    def ready(self) -> bool:
        """Every source synced once (or failed once) and one pass ran."""
        return self.static_synced and all(s.synced for s in self.sources) and self.passes > 0

    @property
    def running(self) -> int:
        """Routes bound to their socket (healthy, sleeping or not)."""
        return sum(1 for r in self.routes if r.state in ("running", "sleeping", "unhealthy"))

    def routes_document(self) -> dict[str, Any]:
        """The body of ``/api/routes``."""
        return {
            "routes": [route.as_json() for route in self.routes],
            "errors": [error.as_dict() for error in self.errors],
            "containers": [c.as_json() for c in self.containers],
            "sleepers": [s.as_json() for s in self.sleepers],
            "events": [e.as_json() for e in self.events],
            "sni_sockets": [s.as_json() for s in self.sni_sockets],
        }

    def health_document(self) -> dict[str, object]:
        """The body of ``/healthz``."""
        body: dict[str, object] = {
            "status": "ok" if self.ready else "starting",
            "sources": [s.as_json() for s in self.sources],
            "routes_running": self.running,
            "last_sync": self.last_sync or None,
        }
        if self.agent_channels:
            body["agent_flows"] = {k: dict(v) for k, v in self.agent_channels.items()}
        return body
