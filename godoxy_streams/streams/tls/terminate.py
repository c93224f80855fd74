"""TLS termination on an accepted connection whose ClientHello was already read.

The SNI listener has consumed the client's first bytes to choose a route, so the TLS server
cannot be started with ``loop.start_tls`` (which reads the hello from the socket). Instead
``terminate`` puts the event loop's own TLS protocol (uvloop's under uvloop, asyncio's
otherwise: both are MemoryBIO state machines driven by the transport) on the transport and
feeds it the bytes already read, through the buffered-protocol calls the transport itself
would make. When the handshake completes, the protocol hands its plaintext transport to the
route's connection class, so admission, hooks, PROXY out, pools and close records work as
for any connection; a failed or late handshake never reaches the route.

TLS has no half-close here: ``TLSSide`` closes the client (close_notify) when the upstream
finishes, and a client's close_notify ends the connection once the upstream got the EOF.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from godoxy_streams.streams.tcp.relay import Conn

if TYPE_CHECKING:
    from godoxy_streams.streams.tcp.stream import TCPStream


class ServerContexts(Protocol):
    """Where a terminating listener gets its server contexts (``runtime.certificates``)."""

    @property
    def generation(self) -> int:
        """Changes whenever the certificates do: a context chosen earlier may be stale."""
        ...

    def server_context(self, name: str | None, client_ca: str | None) -> ssl.SSLContext | None:
        """The context for a normalised server name (client certificates from
        ``client_ca`` required when given); None when no certificate serves it."""
        ...


class TLSSide(Conn):
    """The client side of a terminated connection: its transport cannot half-close."""

    if not TYPE_CHECKING:  # the classes ``tls_class`` makes hold the slots
        __slots__ = ()

    def upstream_eof(self) -> bool:
        self.eof_out = True
        self.transport.close()  # close_notify, once the buffered bytes are out
        if self.eof_in:
            self.finish()
        return True

    def eof_received(self) -> bool:
        Conn.eof_received(self)
        return False  # the TLS protocol closes the transport itself


_CLASSES: dict[type[Conn], type[Conn]] = {}


def tls_class(base: type[Conn]) -> type[Conn]:
    """``base`` with ``TLSSide`` right above ``Conn`` (made once per base)."""
    if base is Conn:
        return TLSSide
    made = _CLASSES.get(base)
    if made is None:
        made = _CLASSES[base] = cast(
            "type[Conn]", type(f"TLS{base.__name__}", (base, TLSSide), {"__slots__": ()})
        )
    return made


def protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's TLS protocol class (``SSLProtocol``)."""
    module = type(loop).__module__
    if module.startswith("uvloop"):
        import uvloop.loop

        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    from asyncio import sslproto

    return sslproto.SSLProtocol


def terminate(
    stream: TCPStream,
    transport: asyncio.Transport,
    data: bytes,
    context: ssl.SSLContext,
    *,
    timeout: float,
    done: Callable[[BaseException | None], None],
) -> asyncio.BaseProtocol:
    """Run the server side of a TLS handshake on ``transport``, whose first bytes ``data``
    were read already; then relay its plaintext through ``stream`` (``prepare``d).
    ``done`` is called once with None or the handshake's error. Returns the TLS protocol."""
    loop = stream.loop
    conn = tls_class(stream.conn_cls)(stream)
    waiter = loop.create_future()
    waiter.add_done_callback(lambda f: done(None if f.cancelled() else f.exception()))
    tls = protocol_class(loop)(
        loop,
        conn,
        context,
        waiter,
        server_side=True,
        call_connection_made=True,
        ssl_handshake_timeout=timeout,
    )
    transport.set_protocol(tls)
    tls.connection_made(transport)
    view = memoryview(data)
    while view and not transport.is_closing():
        buffer = tls.get_buffer(len(view))
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        tls.buffer_updated(n)
        view = view[n:]
    return cast(asyncio.BaseProtocol, tls)
