"""TCP connections with admission and PROXY out: ``Guarded``, a mixin over ``relay.Conn``
(or ``hooked.HookedConn``); ``classes.conn_class`` composes the class a stream uses from it
and the other layers its options need. No feature, no layer.

Everything here runs once per connection (accept, upstream made, end), never per read.

Per connection, in order:

1. PROXY in (``proxy_protocol_trusted``; ``proxy_in``): a trusted peer's header is parsed
   before anything else; its source becomes the effective client.
2. Admission (``admission``): the route ACL judges the effective client, ``peer_acl`` the
   socket peer if a header named someone else; then the caps and rates. A refused client
   is reset at once (no dial, no TIME_WAIT here).
3. The dial (after ``pre_dial``, when hooked); PROXY out (``proxy_protocol``): the header is
   written in the upstream's ``connection_made``, before any held client byte.
4. The end (both sides closed): the concurrency slots are released, then the close record.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from godoxy_streams.streams.context import ConnContext, Outcome
from godoxy_streams.streams.proxy_protocol import encode_header, encode_v1_unknown, encode_v2_local
from godoxy_streams.streams.sockets import Address, client_address
from godoxy_streams.streams.tcp.relay import Conn, reset

if TYPE_CHECKING:
    from godoxy_streams.streams.proxy_protocol import ParseOutcome

NOWHERE: Address = ("", 0)


class Guarded(Conn):
    """Admission and PROXY out on top of ``Conn``; see the module docstring."""

    if not TYPE_CHECKING:  # the classes ``classes.conn_class`` makes hold the slots
        __slots__ = ()

    client: Address  # the effective client (a PROXY header's source, else the peer)
    peer: Address  # the socket peer (NOWHERE when the stream does not need it)
    key: str | None  # the admission key while admitted, else None
    dst: Address | None  # the destination a PROXY header named
    local: Address | None  # the address the client reached, once looked up
    ctx: ConnContext | None

    def start(self) -> None:
        stream = self.stream
        self.key = self.dst = self.local = None
        self.peer = self.client = NOWHERE
        self.begin()
        if stream.need_peer:
            peer = self.transport.get_extra_info("peername")
            if not peer:  # reset before we got here (uvloop cannot name it then)
                self.note("reset")
                reset(self.transport)
                return
            self.peer = self.client = client_address(peer)
        if not self.proxy_in_started():
            self.admit()

    def begin(self) -> None:
        """The connection's clocks start (``records.Counted``)."""

    def proxy_in_started(self) -> bool:
        """Whether a PROXY header is awaited first (``proxy_in.ProxyIn``)."""
        return False

    def header_read(self, header: ParseOutcome) -> None:
        """A trusted peer's PROXY header is complete: its source is the client."""
        if header.source is not None and header.family in ("INET", "INET6"):
            self.client = header.source
            self.dst = header.destination
        self.admit()

    def admit(self) -> None:
        """Run the admission checks, then begin as the base class does (dial or pre_dial)."""
        stream = self.stream
        admission = stream.admission
        if admission is None:
            self.key = ""
        else:
            host = self.client[0]
            if admission.by_client:
                proxied_by = self.peer[0] if self.client is not self.peer else None
                if not admission.allowed(host, proxied_by):
                    self.refuse("denied")
                    return
            key = admission.take(host, stream.admitted)
            if key is None:
                self.refuse("limited")
                return
            self.key = key
        stream.admitted += 1
        super().start()

    def refuse(self, outcome: Outcome) -> None:
        """Turn the client away now (with a reset); nothing reaches the upstream."""
        self.note(outcome)
        reset(self.transport)

    def upstream_made(self, ut: asyncio.Transport) -> None:
        if not self.lost:
            version = self.stream.options.proxy_protocol
            if version is not None:
                ut.write(self.proxy_header(version))
        self.attach(ut)

    def attach(self, ut: asyncio.Transport) -> None:
        """Relay through ``ut`` from now on (``ProxyIn`` may park it; ``Counted`` counts)."""
        Conn.upstream_made(self, ut)

    def proxy_header(self, version: Literal["v1", "v2"]) -> bytes:
        """The PROXY header: the effective client, and the destination a PROXY header named
        (as HAProxy passes it on) or else the address the client reached."""
        try:
            return encode_header(version, self.client, self.dst or self.local_addr(), "tcp")
        except ValueError:  # not an IP pair (cannot happen for TCP sockets): say nothing
            return encode_v1_unknown() if version == "v1" else encode_v2_local()

    def local_addr(self) -> Address:
        local = self.local
        if local is None:
            raw = self.transport.get_extra_info("sockname")
            local = self.local = client_address(raw) if raw else NOWHERE
        return local

    def side_gone(self) -> None:
        self.sides -= 1
        if self.sides:
            return
        stream = self.stream
        key = self.key
        if key is not None:
            self.key = None
            stream.admitted -= 1
            if stream.admission is not None:
                stream.admission.release(key)
        stream.conn_gone(self)
        self.ended()
        self.up = None  # no cycle left with the upstream's protocol: freed now, not by the GC

    def ended(self) -> None:
        """The connection is over (``records.Counted`` makes its record)."""

    def context(self, target: tuple[str, int]) -> ConnContext:
        ctx = self.ctx
        if ctx is None:
            ctx = ConnContext("tcp", self.client, self.local_addr(), target, self.stream.name)
            self.ctx = ctx
        return ctx
