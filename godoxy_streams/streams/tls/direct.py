"""TLS termination from the first byte, on a shared socket whose every route terminates TLS
without asking for client certificates.

There the listener need not read the ClientHello itself (``listener.HelloReader``) and then
hand its bytes to a TLS protocol (``terminate``): each accepted connection gets the loop's
TLS protocol at once (``DirectTLS``, made per listener by ``direct_class``), over one base
context (``BaseContext``) whose server-name callback, which OpenSSL runs inside the
ClientHello, picks the route and switches the connection to that route's certificate. When
the handshake is done, ``Handoff`` gives the plaintext transport to the route's connection
class, as ``terminate`` does. Nothing of the connection is read twice and no byte is copied
in Python before OpenSSL sees it.

What the client meets is the same as on the ``HelloReader`` path: the same pending caps
(in all, and per source, until its ClientHello is in), the same hello and handshake timeouts
(the latter counted from the accept here, from the ClientHello there),
an ``unrecognized_name`` alert for a name no route claims or no certificate serves,
``internal_error`` for a certificate that cannot be used, and the same counters. Two things
differ, and ``SNIStats`` says so: OpenSSL, not ``clienthello``, judges the first flight, so a
client that is not TLS or sends a broken hello is told with an alert (or closed) rather than
reset; and a client that closes before its ClientHello is complete counts as ``empty``.

A socket with a passthrough route, or a route that requires client certificates, keeps the
``HelloReader`` path: switching contexts in the callback does not carry the new context's
verify mode over to the connection (OpenSSL keeps the first one's).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, Protocol, cast

from godoxy_streams.streams.tcp.relay import reset
from godoxy_streams.streams.tls.clienthello import (
    ALERT_INTERNAL_ERROR,
    ALERT_UNRECOGNIZED_NAME,
    alert,
)
from godoxy_streams.streams.tls.pending import PendingHellos
from godoxy_streams.streams.tls.routing import PendingHello, Refusal, SNIRoute, SNIStats
from godoxy_streams.streams.tls.terminate import protocol_class, tls_class


class Owner(Protocol):
    """What a direct connection needs of its listener (``listener.SNIListener``)."""

    stats: SNIStats
    handshaking: set[asyncio.Transport]
    direct_context: BaseContext
    pending: PendingHellos

    def enter(self, reader: PendingHello, transport: asyncio.Transport) -> bool: ...

    def hello_timed_out(self, transport: asyncio.Transport) -> None: ...

    def note(self, transport: asyncio.BaseTransport, kind: str, detail: str) -> None: ...

    def choose(self, raw_name: str | None) -> tuple[SNIRoute, ssl.SSLContext | None] | Refusal: ...


TLS12_RECORD = 0x0303  # the record version of an alert before any ServerHello (1.2 and 1.3)
# OpenSSL's reasons for a first flight that is not a TLS record at all
NOT_TLS_REASONS = frozenset(
    {"HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL"}
)


class TLSObject:
    """What the loop's TLS protocol drives a direct connection through: the interface of
    ``ssl.SSLObject`` that the protocol uses (handshake, read, write, pending, the
    certificate, cipher and compression, unwrap), with the C object's own methods in place
    of ``SSLObject``'s Python ones, so no call of the handshake or the relay runs a Python
    frame of the ``ssl`` module. Anything else is the C object's (``__getattr__``)."""

    __slots__ = (
        "_raw",
        "do_handshake",
        "read",
        "write",
        "pending",
        "getpeercert",
        "cipher",
        "compression",
        "unwrap",
        "accept",
        "__weakref__",  # the server-name callback finds its owner through a weak reference
    )

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.do_handshake = raw.do_handshake
        self.read = raw.read
        self.write = raw.write
        self.pending = raw.pending
        self.getpeercert = raw.getpeercert
        self.cipher = raw.cipher
        self.compression = raw.compression
        self.unwrap = raw.shutdown
        self.accept: DirectTLS | None = None

    @property
    def context(self) -> ssl.SSLContext:
        return cast(ssl.SSLContext, self._raw.context)

    @context.setter
    def context(self, ctx: ssl.SSLContext) -> None:
        self._raw.context = ctx

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # ``_raw`` itself, before ``__init__``
            raise AttributeError(name)
        return getattr(self._raw, name)


class BaseContext(ssl.SSLContext):
    """The context every connection of a direct socket starts with: no certificate of its
    own, TLS 1.2 and up (the version is chosen before the callback switches contexts), and
    a callback that routes by the server name. The loop's TLS protocol makes its TLS object
    (``wrap_bio``: a ``TLSObject``) while it is built (asyncio) or in ``connection_made``
    (uvloop); right after each, ``claim`` marks the object with its connection, for the
    callback."""

    made: TLSObject | None

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> TLSObject:
        made = TLSObject.__new__(TLSObject)  # the owner the callback is given: made first
        raw = self._wrap_bio(  # type: ignore[attr-defined]
            incoming, outgoing, server_side, server_hostname, owner=made, session=session
        )
        TLSObject.__init__(made, raw)
        self.made = made
        return made

    def claim(self, accept: DirectTLS) -> None:
        made = self.made
        if made is not None:
            self.made = None
            made.accept = accept


def base_context() -> BaseContext:
    ctx = BaseContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.made = None
    ctx.sni_callback = cast(Any, _server_name)  # its first argument: our TLSObject
    return ctx


def _server_name(sslobj: TLSObject, name: str | None, _: ssl.SSLContext) -> int | None:
    accept: DirectTLS | None = getattr(sslobj, "accept", None)
    if accept is None:  # not claimed, or a ClientHello after the handshake (renegotiation)
        return ALERT_INTERNAL_ERROR
    return accept.hello(sslobj, name)


class Handoff(asyncio.Protocol):
    """The app protocol of every handshake on a direct socket: once it is done, the
    connection becomes the chosen route's (one instance per listener, no state)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj: TLSObject = transport.get_extra_info("ssl_object")
        accept = sslobj.accept
        assert accept is not None
        sslobj.accept = None  # no cycle left between the two: both freed on close, not by the GC
        route = accept.route
        assert route is not None
        accept.ended = True
        listener = accept.listener
        listener.handshaking.discard(accept.client)
        listener.stats.handshakes += 1
        conn = tls_class(route.stream.conn_cls)(route.stream)
        transport.set_protocol(conn)
        conn.connection_made(transport)


class DirectTLS:
    """The per-connection part mixed into the loop's TLS protocol (``direct_class``): the
    pending caps and hello timeout, routing in the server-name callback, and the outcome."""

    if not TYPE_CHECKING:  # the class ``direct_class`` makes holds the slots
        __slots__ = ()
    listener: Owner
    wraps_when_made: bool  # the loop's TLS protocol makes its TLS object in connection_made
    client: asyncio.Transport
    route: SNIRoute | None
    source: str | None
    ended: bool

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]  # (no cast: a call per connection)
        self.route = None
        self.ended = False
        listener = self.listener
        if not listener.enter(self, self.client):
            self.ended = True
            return
        super().connection_made(transport)  # type: ignore[misc]
        if self.wraps_when_made:  # uvloop's protocol made its TLS object just now
            listener.direct_context.claim(self)

    def hello(self, sslobj: TLSObject, raw_name: str | None) -> int | None:
        """The ClientHello is in (OpenSSL's server-name callback): choose the route and
        its certificate, or refuse with an alert."""
        if self.route is not None or self.ended:  # a hello after a HelloRetryRequest
            return None if not self.ended else ALERT_UNRECOGNIZED_NAME
        listener = self.listener
        listener.pending.leave(self)
        choice = listener.choose(raw_name)
        if isinstance(choice, Refusal):
            return self.refuse(choice)
        route, context = choice
        if context is None:  # a passthrough route joined: too late, OpenSSL has the hello
            why = f"route {route.stream.name!r} passes TLS through; this socket terminated it"
            return self.refuse(Refusal("no_match", why, ALERT_UNRECOGNIZED_NAME))
        sslobj.context = context
        self.route = route
        listener.handshaking.add(self.client)
        return None

    def refuse(self, refusal: Refusal) -> int:
        """Fail the handshake with a fatal alert. The loop's TLS protocol drops what
        OpenSSL wrote when a handshake fails, so the alert goes out here, first."""
        self.ended = True
        self.listener.note(self.client, refusal.kind, refusal.detail)
        self.client.write(alert(TLS12_RECORD, refusal.description))
        return refusal.description

    def timed_out(self) -> None:
        """No ClientHello within the hello timeout (``pending.PendingHellos``)."""
        self.ended = True
        self.listener.hello_timed_out(self.client)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:  # still waiting for its hello, or handshaking (ended: neither)
            self.ended = True
            self.count_failure(exc)
            listener = self.listener
            listener.pending.leave(self)
            listener.handshaking.discard(self.client)
        super().connection_lost(exc)  # type: ignore[misc]

    def count_failure(self, exc: Exception | None) -> None:
        listener = self.listener
        stats = listener.stats
        if self.route is not None:
            stats.handshake_failed += 1
            listener.note(self.client, "handshake_failed", repr(exc))
        elif isinstance(exc, ssl.SSLError):
            if exc.reason in NOT_TLS_REASONS:
                stats.not_tls += 1
                listener.note(self.client, "not_tls", f"not TLS ({exc.reason})")
            else:
                stats.malformed += 1
                listener.note(self.client, "malformed", f"a broken ClientHello ({exc.reason})")
        else:  # closed (or reset) before its ClientHello was complete
            stats.empty += 1

    def drop(self) -> None:
        """The listener closes: reset this connection."""
        self.ended = True
        self.listener.pending.leave(self)
        reset(self.client)


def direct_class(loop: asyncio.AbstractEventLoop, listener: Owner) -> type:
    """The loop's TLS protocol with ``DirectTLS`` mixed in, for ``listener`` (made once by
    it: the class holds the listener, so instances need not)."""
    return type(
        "DirectTLS",
        (DirectTLS, protocol_class(loop)),
        {
            "__slots__": ("client", "route", "source", "ended"),
            "listener": listener,
            "wraps_when_made": type(loop).__module__.startswith("uvloop"),
        },
    )
