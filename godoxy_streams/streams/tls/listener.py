"""One listen socket shared by TCP routes that select their clients by TLS server name.

Each accepted connection starts with a ``HelloReader``: it reads the ClientHello
(``clienthello``: any segmentation, at most ``MAX_FLIGHT`` bytes, within
``hello_timeout``), the name table (``server_names``) picks the route, and the connection is handed
to that route's ``TCPStream`` (``prepare``d, with no listener of its own):

- passthrough: ``TCPStream.adopt`` relays everything from the first byte (the bytes read
  are replayed to the upstream unchanged), so the upstream's own TLS works end to end;
- termination (the route has ``contexts``): ``terminate`` completes the handshake with the
  route's certificate for that name (and its client CA, if any) and the stream relays the
  plaintext.

When every route of the socket terminates TLS and none requires client certificates, the
connection skips ``HelloReader`` and starts inside TLS at once (``direct``: OpenSSL reads the
ClientHello and its server-name callback picks the route), with the same caps, timeouts,
alerts and counters.

Either way the route's stream applies its ACL, limits, PROXY protocol out, pool, counters
and close records, as for a connection it accepted itself (when terminating, once the
handshake is done: a denied client costs a handshake). No route and no default: a
fatal ``unrecognized_name`` alert, then close. Not TLS, malformed, too large, too slow: a
reset (``direct``: OpenSSL's alert, or a close). Every outcome is counted (``SNIStats``)
and refusals are logged at most once a second per kind. At most ``max_pending``
connections may be inside their ClientHello, and ``max_pending_per_source`` from one client
address (an IPv6 /64), so that one client holding connections open cannot keep the others
out.

Routes join and leave with ``set_routes`` (oldest first: an older route keeps a name two
claim); live connections stay with the stream they were handed to.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from loguru import logger

from godoxy_streams.errors import ConfigError
from godoxy_streams.server_names import Conflict, NameTable, server_name
from godoxy_streams.streams.admission import RefusalLog
from godoxy_streams.streams.limits import source_key
from godoxy_streams.streams.sockets import (
    BACKLOG,
    Address,
    client_address,
    listen_socket,
    resolve_bind,
    sock_addr,
    where,
)
from godoxy_streams.streams.tcp.relay import reset
from godoxy_streams.streams.tls.clienthello import (
    ALERT_INTERNAL_ERROR,
    ALERT_UNRECOGNIZED_NAME,
    ClientHello,
    ClientHelloError,
    ClientHelloReader,
    alert,
)
from godoxy_streams.streams.tls.direct import Handoff, base_context, direct_class
from godoxy_streams.streams.tls.pending import PendingHellos
from godoxy_streams.streams.tls.routing import PendingHello, Refusal, SNIRoute, SNIStats
from godoxy_streams.streams.tls.terminate import terminate

HELLO_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 10.0
MAX_PENDING = 4096
MAX_PENDING_PER_SOURCE = 64
CHOSEN_MAX = 1024  # server names whose route and context ``choose`` remembers


class SNIListener:
    """See the module docstring."""

    def __init__(
        self,
        listen: Address,
        *,
        name: str = "",
        hello_timeout: float = HELLO_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_pending: int = MAX_PENDING,
        max_pending_per_source: int = MAX_PENDING_PER_SOURCE,
    ) -> None:
        self.listen = listen
        self.name = name
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        self.stats = SNIStats()
        self.table: NameTable[SNIRoute] = NameTable()
        # choose's memory: route, context and certificates' generation by raw server name
        self.chosen: dict[str | None, tuple[SNIRoute, ssl.SSLContext | None, int]] = {}
        self.pending = PendingHellos(hello_timeout, max_pending, max_pending_per_source)
        self.handshaking: set[asyncio.Transport] = set()
        self.loop: asyncio.AbstractEventLoop
        self.refusals: RefusalLog
        self.log = logger.bind(protocol="tcp", listen=where(listen), stream=name or "sni")
        self._server: asyncio.AbstractServer | None = None
        self._local: Address | None = None
        self.direct = False  # every route terminates, none asks for client certificates
        self.direct_cls: type  # the loop's TLS protocol for that case (``direct_class``)
        self.direct_context = base_context()
        self.handoff = Handoff()

    @property
    def local_addr(self) -> Address:
        return self._local if self._local is not None else self.listen

    async def serve(self) -> None:
        """Bind and start accepting (``ListenError`` if the socket cannot be had)."""
        self.loop = self.pending.loop = asyncio.get_running_loop()
        self.direct_cls = direct_class(self.loop, self)
        host, port, family = await resolve_bind("tcp", *self.listen)
        sock = listen_socket("tcp", host, port, family)
        self._local = sock_addr(sock.getsockname())
        self.log = logger.bind(protocol="tcp", listen=where(self._local), stream=self.name or "sni")
        self.refusals = RefusalLog(lambda: self.log, self.loop)
        try:
            self._server = await self.loop.create_server(self.accepted, sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise

    def set_routes(self, routes: Sequence[SNIRoute]) -> list[Conflict[SNIRoute]]:
        """Serve these routes from now on, oldest first; returns the names claimed twice
        (the older route keeps each)."""
        for route in routes:
            if route.stream.options.proxy_protocol_trusted is not None:
                raise ValueError(
                    f"route {route.stream.name!r}: PROXY protocol in is not supported on a "
                    "shared TLS socket"
                )
        table = NameTable((route, route.names) for route in routes)
        self.table = table
        self.chosen.clear()
        self.direct = bool(routes) and all(
            route.contexts is not None and route.client_ca is None for route in routes
        )
        return table.conflicts

    async def close(self) -> None:
        """Stop accepting and drop connections still being read or handshaken; connections
        already handed to a route are its stream's to close."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for reader in self.pending.close():
            reader.drop()
        for transport in list(self.handshaking):
            reset(transport)
        self.handshaking.clear()
        self.refusals.close()

    # --- per connection ---

    def accepted(self) -> asyncio.BaseProtocol:
        """The protocol of a new connection: TLS from the first byte when every route here
        terminates without client certificates (``direct``), else a ``HelloReader``."""
        if self.direct:
            accept = self.direct_cls(
                self.loop,
                self.handoff,
                self.direct_context,
                None,
                server_side=True,
                call_connection_made=True,
                ssl_handshake_timeout=self.handshake_timeout,
            )
            if not accept.wraps_when_made:  # asyncio's protocol made its TLS object just now
                self.direct_context.claim(accept)
            return accept  # type: ignore[no-any-return]
        return HelloReader(self)

    def enter(self, reader: PendingHello, transport: asyncio.Transport) -> bool:
        """A connection starts waiting for its ClientHello, if the caps allow (else it is
        refused: False)."""
        self.stats.accepted += 1
        reader.source = None
        peer = transport.get_extra_info("peername")
        if not peer:  # reset before we got here
            reset(transport)
            return False
        host = peer[0]
        if ":" in host:  # IPv6: an IPv4-mapped address as IPv4, else its /64
            host = client_address(peer)[0]
            host = host if ":" not in host else source_key(host)
        why = self.pending.enter(reader, host)
        if why is None:
            return True
        self.stats.overloaded += 1
        self.refused(transport, "overloaded", why)
        return False

    def hello_timed_out(self, transport: asyncio.Transport) -> None:
        """A connection's hello timeout passed (``PendingHellos`` let it go already)."""
        self.stats.timed_out += 1
        self.refused(transport, "timed_out", f"no ClientHello within {self.hello_timeout:g}s")

    def note(self, transport: asyncio.BaseTransport, kind: str, detail: str) -> None:
        """Log a refusal (at most once a second per kind)."""
        self.refusals.note(kind, f"{self.peer(transport)}: {detail}")

    def choose(self, raw_name: str | None) -> tuple[SNIRoute, ssl.SSLContext | None] | Refusal:
        """The route for a ClientHello's server name, and (terminating) its server context;
        or why there is none. Counts ``routed``, ``no_match`` and ``no_certificate``.

        A name chosen before is answered from ``chosen`` while the routes (``set_routes``
        empties it) and the route's certificates (their ``generation``) stay the same; a
        route that asks for client certificates is looked up every time (its CA file may
        change)."""
        hit = self.chosen.get(raw_name)
        if hit is not None:
            route, context, generation = hit
            if route.contexts is None or route.contexts.generation == generation:
                self.stats.routed += 1
                return route, context
        choice = self.look_up(raw_name)
        if not isinstance(choice, Refusal) and choice[0].client_ca is None:
            route, context = choice
            chosen = self.chosen
            if len(chosen) >= CHOSEN_MAX:  # names a wildcard or default route matches
                chosen.clear()
            generation = route.contexts.generation if route.contexts is not None else 0
            chosen[raw_name] = (route, context, generation)
        return choice

    def look_up(self, raw_name: str | None) -> tuple[SNIRoute, ssl.SSLContext | None] | Refusal:
        """``choose`` without its memory."""
        stats = self.stats
        name = server_name(raw_name)
        route = self.table.match(name)
        if route is None:
            stats.no_match += 1
            wanted = repr(name) if name else "a ClientHello without a server name"
            return Refusal("no_match", f"no route for {wanted}", ALERT_UNRECOGNIZED_NAME)
        stats.routed += 1
        if route.contexts is None:
            return route, None
        try:
            context = route.contexts.server_context(name, route.client_ca)
        except ConfigError as exc:
            stats.no_certificate += 1
            return Refusal("no_certificate", str(exc), ALERT_INTERNAL_ERROR)
        if context is None:
            stats.no_certificate += 1
            return Refusal(
                "no_certificate", f"no certificate for {name!r}", ALERT_UNRECOGNIZED_NAME
            )
        return route, context

    def dispatch(self, transport: asyncio.Transport, hello: ClientHello, data: bytes) -> None:
        """Hand a connection whose ClientHello is complete to the route for its name."""
        choice = self.choose(hello.server_name)
        if isinstance(choice, Refusal):
            self.refused(transport, choice.kind, choice.detail, hello, choice.description)
            return
        route, context = choice
        if context is None:
            route.stream.adopt(transport, data)
            return
        self.handshaking.add(transport)

        def done(exc: BaseException | None) -> None:
            self.handshaking.discard(transport)
            if exc is None:
                self.stats.handshakes += 1
            else:
                self.stats.handshake_failed += 1
                self.note(transport, "handshake_failed", repr(exc))

        terminate(route.stream, transport, data, context, timeout=self.handshake_timeout, done=done)

    def refused(
        self,
        transport: asyncio.Transport,
        kind: str,
        detail: str,
        hello: ClientHello | None = None,
        description: int = ALERT_UNRECOGNIZED_NAME,
    ) -> None:
        """Turn a client away: with a fatal alert when it spoke TLS, else with a reset."""
        self.note(transport, kind, detail)
        if hello is None:
            reset(transport)
            return
        transport.write(alert(hello.alert_version, description))
        transport.close()

    def rejected(self, transport: asyncio.Transport, exc: ClientHelloError) -> None:
        if exc.kind in ("not_tls", "sslv2"):
            self.stats.not_tls += 1
            self.refused(transport, "not_tls", str(exc))
        else:
            self.stats.malformed += 1
            self.refused(transport, "malformed", str(exc))

    @staticmethod
    def peer(transport: asyncio.BaseTransport) -> str:
        return where(sock_addr(transport.get_extra_info("peername")))

    def __repr__(self) -> str:
        return f"<SNIListener {self.name} {where(self.local_addr)} routes={len(self.table)}>"


class HelloReader(asyncio.Protocol):
    """A connection until its ClientHello is read; then the chosen route's."""

    __slots__ = ("listener", "transport", "reader", "chunks", "source")

    def __init__(self, listener: SNIListener) -> None:
        self.listener = listener
        self.reader = ClientHelloReader()
        self.chunks: list[bytes] = []
        self.source: str | None = None  # the key this connection counts under while pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.listener.enter(self, self.transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        try:
            hello = self.reader.feed(data)
        except ClientHelloError as exc:
            self.finish()
            self.listener.rejected(self.transport, exc)
            return
        if hello is not None:
            self.finish()
            self.listener.dispatch(self.transport, hello, b"".join(self.chunks))

    def eof_received(self) -> bool:
        self.finish()
        if not self.chunks:
            self.listener.stats.empty += 1
            return False
        try:
            self.reader.end()
        except ClientHelloError as exc:
            self.listener.rejected(self.transport, exc)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()

    def timed_out(self) -> None:
        self.listener.hello_timed_out(self.transport)

    def drop(self) -> None:
        """The listener closes: reset this connection."""
        self.finish()
        reset(self.transport)

    def finish(self) -> None:
        """No longer reading a ClientHello."""
        self.listener.pending.leave(self)
