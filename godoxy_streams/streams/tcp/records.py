"""Close records of TCP connections (``serve(on_close=)``): the ``Counted`` layer over
``guard.Guarded`` and the upstream classes that count the bytes coming back.

Only streams with ``on_close`` get these classes. Their per-read cost is one integer
addition per read and direction; everything else happens once per connection: the clocks
at accept (``time.time()`` for the record, the loop's monotonic clock for the duration),
the outcome (the first decisive event wins, see ``common.Outcome``), and the record, made
and handed over when both sides are closed.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from godoxy_streams.streams.context import ConnRecord, Outcome, deliver
from godoxy_streams.streams.tcp.guard import Guarded
from godoxy_streams.streams.tcp.hooked import HookedUpstream
from godoxy_streams.streams.tcp.relay import Upstream


class Counted(Guarded):
    """``Guarded`` that counts its bytes, knows how it ended, and makes its record."""

    if not TYPE_CHECKING:  # the classes ``guard.conn_class`` makes hold the slots
        __slots__ = ()

    outcome: Outcome | None
    nin: int  # client -> upstream, as relayed
    nout: int  # upstream -> client
    started: float
    t0: float

    def begin(self) -> None:
        self.outcome = None
        self.nin = self.nout = 0
        self.started = time.time()
        self.t0 = self.stream.loop.time()

    def data_received(self, data: bytes) -> None:
        ut = self.ut
        if ut is not None:
            ut.write(data)
            n = len(data)
            self.stream.stats.bytes_in += n
            self.nin += n
        else:
            self.hold(data)

    def attach(self, ut: asyncio.Transport) -> None:
        early = self.early
        if early is not None and not self.lost:
            self.nin += sum(map(len, early))
        super().attach(ut)

    def note(self, outcome: Outcome) -> None:
        if self.outcome is None:
            self.outcome = outcome

    def eof_received(self) -> bool:
        self.note("client_closed")
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.note("client_closed" if exc is None else "reset")
        super().connection_lost(exc)

    def upstream_eof(self) -> bool:
        self.note("upstream_closed")
        return super().upstream_eof()

    def upstream_lost(self, exc: Exception | None) -> None:
        self.note("upstream_closed" if exc is None else "reset")
        super().upstream_lost(exc)

    def ended(self) -> None:
        stream = self.stream
        if stream.on_close is not None:
            deliver(stream.on_close, self.record(), stream.log)

    def record(self) -> ConnRecord:
        stream = self.stream
        up = self.up
        return ConnRecord(
            "tcp",
            self.client,
            self.peer,
            self.local_addr(),
            up.target if up is not None else stream.target,
            self.nin,
            self.nout,
            self.started,
            stream.loop.time() - self.t0,
            self.outcome or "client_closed",
            stream.name,
        )


class CountedHooked(Counted):
    """``Counted`` over ``HookedConn``: each read also keeps the idle clock and hooks."""

    if not TYPE_CHECKING:
        __slots__ = ()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.touched()


class CountedUpstream(Upstream):
    """``Upstream`` that counts the bytes it relays into its connection."""

    __slots__ = ()
    conn: Counted

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.transport.write(data)
        n = len(data)
        conn.stream.stats.bytes_out += n
        conn.nout += n


class CountedHookedUpstream(HookedUpstream):
    """``HookedUpstream`` that counts the bytes it relays into its connection."""

    __slots__ = ()
    conn: Counted

    def data_received(self, data: bytes) -> None:
        CountedUpstream.data_received(self, data)  # type: ignore[arg-type]
        self.conn.touched()


def counted_layers(hooked: bool) -> tuple[tuple[type, ...], type[Upstream]]:
    """The record layer and upstream class of a (hooked or plain) recorded connection."""
    if hooked:
        return (CountedHooked,), CountedHookedUpstream
    return (Counted,), CountedUpstream
