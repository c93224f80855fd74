"""PROXY protocol in: reading the header a trusted peer sends, and turning away a header
from anyone else; the ``ProxyIn`` layer over ``guard.Guarded``, in the classes of streams
with ``proxy_protocol_trusted`` only.

Policy (``StreamOptions.proxy_protocol_trusted``, an ``Acl`` of peers):

- A trusted peer MUST start with a PROXY v1 or v2 header. It is parsed incrementally from
  the bytes that arrive before the dial (``Conn.hold``), within ``proxy_header_timeout``;
  then the header's source is the effective client. LOCAL, ``UNKNOWN``, UNSPEC and UNIX
  headers keep the socket peer as the client. Missing, late, malformed: the connection is
  reset, counted in ``stats.proxy_errors`` and logged (rate-limited); there was no dial.
- An untrusted peer must NOT send one (unlike HAProxy's ``accept-proxy``, which demands a
  header from everyone, so that direct clients keep working): it is handled as usual, dial
  included (server-first protocols must not wait), but its first bytes are held back until
  they are known not to start a header (``proxy_protocol.detect``). A header there is a
  spoofing attempt: reset, counted and logged as above; no client byte reaches the
  upstream (which saw a connection open and close, after our own PROXY header if any).
  While the bytes are still a strict prefix of a signature (say a lone CRLF) they wait for
  more bytes or EOF; the upstream, connected meanwhile, is parked until the verdict.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from godoxy_streams.errors import ProxyProtocolError
from godoxy_streams.streams.proxy_protocol import ProxyHeaderParser, detect
from godoxy_streams.streams.sockets import where
from godoxy_streams.streams.tcp.guard import Guarded
from godoxy_streams.streams.tcp.relay import reset


class ProxyIn(Guarded):
    """The PROXY-in layer over ``Guarded``; see the module docstring."""

    if not TYPE_CHECKING:  # the classes ``guard.conn_class`` makes hold the slots
        __slots__ = ()

    parser: ProxyHeaderParser | None  # set while a trusted peer's header is awaited
    htimer: asyncio.TimerHandle | None  # the header timeout
    sniff: bool  # untrusted peer whose first bytes might still start a header
    parked: asyncio.Transport | None  # the upstream, connected before the sniff's verdict

    def proxy_in_started(self) -> bool:
        """Set up PROXY in; True when a header must be read before anything else (then
        ``header_read`` follows), False to go on at once."""
        self.parser = self.htimer = self.parked = None
        self.sniff = False
        options = self.stream.options
        trusted = options.proxy_protocol_trusted
        if trusted is None:
            return False
        if not trusted.allows(self.peer[0]):
            self.sniff = True
            return False
        self.parser = ProxyHeaderParser()
        self.htimer = self.stream.loop.call_later(
            options.proxy_header_timeout, self.header_timed_out
        )
        return True

    # --- client bytes before the upstream is attached ---

    def hold(self, data: bytes) -> None:
        parser = self.parser
        if parser is not None:
            self.header_data(parser, data)
        elif self.sniff:
            self.sniff_data(data)
        else:
            super().hold(data)

    def header_data(self, parser: ProxyHeaderParser, data: bytes) -> None:
        try:
            header = parser.feed(data)
        except ProxyProtocolError as exc:
            self.proxy_failed(str(exc))
            return
        if header is None:
            return
        self.parser = None
        self.stop_header_timer()
        if header.rest:
            super().hold(header.rest)
        self.header_read(header)

    def sniff_data(self, data: bytes) -> None:
        early = self.early
        verdict = detect(b"".join(early) + data if early else data)
        if verdict:
            self.proxy_failed("an untrusted peer sent a PROXY header")
            return
        super().hold(data)
        if verdict is False:
            self.sniff = False
            self.unpark()

    def header_timed_out(self) -> None:
        self.htimer = None
        if self.parser is not None:
            timeout = self.stream.options.proxy_header_timeout
            self.proxy_failed(f"no complete PROXY header within {timeout:g}s")

    def proxy_failed(self, reason: str) -> None:
        stream = self.stream
        self.parser = None
        self.sniff = False
        self.stop_header_timer()
        stream.stats.proxy_errors += 1
        stream.refusals.note("proxy_error", f"from {where(self.peer)}: {reason}")
        parked = self.parked
        if parked is not None:
            self.parked = None
            reset(parked)
        self.refuse("proxy_error")

    def stop_header_timer(self) -> None:
        timer = self.htimer
        if timer is not None:
            self.htimer = None
            timer.cancel()

    # --- the upstream, parked while the sniff has no verdict ---

    def attach(self, ut: asyncio.Transport) -> None:
        if self.sniff and not self.lost:
            self.sides += 1
            self.parked = ut
            return
        super().attach(ut)

    def unpark(self) -> None:
        ut = self.parked
        if ut is not None:
            self.parked = None
            self.sides -= 1  # attach counts it again
            super().attach(ut)

    def pause_writing(self) -> None:  # flow control reaches a parked upstream too
        if self.parked is not None:
            self.parked.pause_reading()
        super().pause_writing()

    def resume_writing(self) -> None:
        if self.parked is not None and not self.eof_out:
            self.parked.resume_reading()
        super().resume_writing()

    # --- events ---

    def eof_received(self) -> bool:
        if self.parser is not None:
            self.proxy_failed("the connection ended inside the PROXY header")
            return True
        keep = super().eof_received()
        if self.sniff:  # ended before a whole signature: not a header
            self.sniff = False
            self.unpark()
        return keep

    def touched(self) -> None:
        if self.parser is None:  # no on_read for the header itself
            super().touched()

    def stopped(self) -> None:
        self.parser = None
        self.stop_header_timer()
        parked = self.parked
        if parked is not None:
            self.parked = None
            parked.close()
        super().stopped()

    def upstream_lost(self, exc: Exception | None) -> None:
        if self.parked is not None:  # it never got attached
            self.parked = None
        super().upstream_lost(exc)

    def kill(self) -> None:
        parked = self.parked
        self.parked = None
        super().kill()
        if parked is not None:
            reset(parked)
