"""Types and small helpers shared by the TCP and UDP engines.

Options, per-connection context and close record, counters, the hook types, and the socket
edge: binding a listen socket (with ``OSError`` translated into the ``ListenError`` tree) and
naming why a dial failed. Nothing here runs per packet.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from godoxy_streams.errors import BindNotAllowed, ListenError, PortInUse
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.limits import ConcurrencyCounter

Address = tuple[str, int]
Dialer = Callable[
    [Callable[[], asyncio.Protocol], str, int],
    Coroutine[Any, Any, tuple[asyncio.BaseTransport, asyncio.Protocol]],
]
# Opens a UDP session's upstream: a datagram socket connected to (host, port), e.g. an agent's
# flow; the callback is called with that socket if the far end ends it first.
DatagramDialer = Callable[
    [str, int, Callable[[socket.socket], None]], Coroutine[Any, Any, socket.socket]
]
BACKLOG = max(socket.SOMAXCONN, 4096)  # the kernel caps it at net.core.somaxconn
Proto = Literal["tcp", "udp"]


@dataclass(frozen=True)
class StreamOptions:
    """Per-stream tuning; defaults match ``model.RouteSpec``."""

    dial_timeout: float = 5.0
    idle_timeout: float | None = None  # TCP: close a connection idle this long (both ways)
    on_stop: Literal["drain", "kill"] = "drain"
    drain_timeout: float = 5.0
    udp_timeout: float = 60.0  # UDP: a session idle this long (either way) expires
    max_sessions: int = 10_000  # UDP: new sessions are refused beyond this
    # Admission (see ``admission``); all off by default, and free when off.
    acl: Acl | None = None  # judges the effective client (after a PROXY header)
    peer_acl: Acl | None = None  # judges the socket peer when a PROXY header named another
    max_connections: int | None = None  # TCP: open connections of this stream
    per_source_max: int | None = None  # open connections / UDP sessions per source
    per_source_rate: float | None = None  # new connections / UDP sessions per second per source
    per_source_burst: int = 20
    global_limit: ConcurrencyCounter | None = None  # shared by every stream of the daemon
    # PROXY protocol (TCP only; see ``guard``).
    proxy_protocol: Literal["v1", "v2"] | None = None  # send a header to the upstream
    proxy_protocol_trusted: Acl | None = None  # peers that must send a header (others: must not)
    proxy_header_timeout: float = 3.0
    # How upstream connections are made: ``loop.create_connection`` unless a dialer is given
    # (e.g. an agent tunnel); called as ``dialer(protocol_factory, host, port)``.
    dialer: Dialer | None = None
    # How UDP sessions' upstream sockets are made: a connected socket unless given.
    datagram_dialer: DatagramDialer | None = None

    @property
    def guarded(self) -> bool:
        """Whether any admission or PROXY protocol option is set."""
        return (
            self.acl is not None
            or self.peer_acl is not None
            or self.max_connections is not None
            or self.per_source_max is not None
            or self.per_source_rate is not None
            or self.global_limit is not None
            or self.proxy_protocol is not None
            or self.proxy_protocol_trusted is not None
        )


DEFAULT_OPTIONS = StreamOptions()


@dataclass(frozen=True, slots=True)
class ConnContext:
    """What a hook learns about one TCP connection or UDP session."""

    proto: Proto
    client: Address
    local: Address
    target: Address
    stream: str = ""


Hook = Callable[[ConnContext], Awaitable[None] | None]

Outcome = Literal[
    "client_closed",  # the client finished first (FIN or close)
    "upstream_closed",  # the upstream finished first
    "dial_failed",  # the upstream could not be reached (or pre_dial failed)
    "timed_out",  # TCP idle timeout; UDP session expiry
    "denied",  # an access list said no
    "limited",  # a connection cap, per-source cap or per-source rate said no
    "proxy_error",  # PROXY header missing, malformed, late, or sent by an untrusted peer
    "reset",  # either side reset the connection (or failed with an error)
    "shutdown",  # cut by the stream's close (kill, or the end of a drain)
    "refused",  # refused by the pre_dial hook
    "no_upstream",  # no pool member was available
]


@dataclass(frozen=True, slots=True)
class ConnRecord:
    """How one TCP connection or UDP session went, for access logs (``serve(on_close=)``)."""

    proto: Proto
    client: Address  # effective client (the PROXY header's source, else the peer)
    peer: Address  # socket peer
    local: Address  # the address the client reached
    target: Address
    bytes_in: int  # client -> upstream
    bytes_out: int  # upstream -> client
    started: float  # time.time() at accept
    duration: float  # seconds
    outcome: Outcome
    stream: str = ""


OnClose = Callable[[ConnRecord], None]


@dataclass(slots=True)
class StreamStats:
    """Plain counters, updated per read batch (not per byte)."""

    active: int = 0  # live connections / sessions
    total: int = 0  # connections accepted / sessions created
    bytes_in: int = 0  # client -> upstream
    bytes_out: int = 0  # upstream -> client
    dial_errors: dict[str, int] = field(default_factory=dict)  # by reason
    refused: int = 0  # refused by the pre_dial hook
    sessions_refused: int = 0  # UDP: session table full
    dropped: int = 0  # UDP: datagrams dropped (socket full, session not ready, errors)
    denied: int = 0  # refused by an access list (UDP: datagrams)
    limited: int = 0  # refused by a cap or rate (UDP: datagrams)
    proxy_errors: int = 0  # PROXY header missing, malformed, late or untrusted
    no_upstream: int = 0  # refused because no pool member was available (UDP: sessions)

    def count_dial_error(self, reason: str) -> None:
        self.dial_errors[reason] = self.dial_errors.get(reason, 0) + 1


def deliver(on_close: OnClose, record: ConnRecord, log: Any) -> None:
    """Hand a close record over; a failing callback is logged, never raised into the engine."""
    try:
        on_close(record)
    except Exception:
        log.exception("on_close callback failed")


def sock_addr(raw: Any) -> Address:
    """``(host, port)`` of a socket address from ``get_extra_info``; ``("", 0)`` if none."""
    if isinstance(raw, tuple) and len(raw) >= 2:
        return (str(raw[0]), int(raw[1]))
    return ("", 0)


def client_address(addr: tuple[object, ...]) -> Address:
    """``(host, port)`` of a peer, an IPv4-mapped IPv6 host (dual-stack socket) unmapped."""
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return (host, int(addr[1]))  # type: ignore[call-overload]


def where(addr: Address | tuple[str, int, int, int]) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def literal_family(host: str) -> socket.AddressFamily | None:
    """The family of an IP literal, or None for a name that needs resolving."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def dial_reason(exc: BaseException) -> str:
    """A short, stable name for why an upstream dial failed (a ``dial_errors`` key)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, socket.gaierror):
        return "resolve"
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN):
            return "unreachable"
        if exc.errno == errno.ETIMEDOUT:
            return "timeout"
        if exc.errno == errno.ECONNRESET:
            return "reset"
        return errno.errorcode.get(exc.errno, "oserror").lower()
    return type(exc).__name__.lower()


def translate_bind_error(exc: OSError, proto: Proto, addr: Address) -> ListenError:
    """The ``ListenError`` for a failed bind or listen."""
    what = f"{proto} {where(addr)}"
    if exc.errno == errno.EADDRINUSE:
        return PortInUse(f"{what}: address already in use")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BindNotAllowed(f"{what}: permission denied")
    return ListenError(f"{what}: {exc.strerror or exc}")


def listen_socket(
    proto: Proto, host: str, port: int, family: socket.AddressFamily
) -> socket.socket:
    """A bound, non-blocking socket (listening, for TCP). Never SO_REUSEPORT.

    ``::`` is bound dual-stack (it overlaps IPv4 too, as ``model.binds_overlap`` assumes);
    any other IPv6 address is v6-only.
    """
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise translate_bind_error(exc, proto, (host, port)) from exc
    try:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        if proto == "tcp":
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise translate_bind_error(exc, proto, (host, port)) from exc
    return sock


async def resolve_bind(proto: Proto, host: str, port: int) -> tuple[str, int, socket.AddressFamily]:
    """The bind host and family; ``""`` is ``0.0.0.0``; a name is resolved (first answer)."""
    if host == "":
        return "0.0.0.0", port, socket.AF_INET
    family = literal_family(host)
    if family is not None:
        return host, port, family
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=kind, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ListenError(f"{proto} {where((host, port))}: cannot resolve: {exc}") from exc
    fam, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), port, socket.AddressFamily(fam)
