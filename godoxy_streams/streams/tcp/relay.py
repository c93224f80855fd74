"""The TCP relay: one pair of ``asyncio.Protocol`` objects per proxied connection.

``Conn`` is the client side and owns the connection's state; ``Upstream`` is the dialled
side. There is no task per connection once it is up; a short-lived task only dials.

Flow control: when one side's transport is paused for writing (its buffer passed the high
water mark), the other side stops reading until it drains below the low mark, so a
connection never buffers more than about ``HIGH_WATER`` plus one read per direction.

Half-close: a FIN from either side becomes ``write_eof()`` on the other; the connection is
closed when both directions are done. An upstream that cannot half-close (TLS, e.g. an agent
tunnel) is closed when the client's FIN arrives (a full close and a half-close look the same
here, and waiting would hold both ends forever); the agent ends such a tunnel when its
destination has finished sending.
A reset (or any error) on one side aborts the other with ``SO_LINGER 0``, so the peer sees a
reset too.

``hooked.HookedConn`` / ``HookedUpstream`` add the pre_dial hook and the per-read work (idle
clock, ``on_read`` hook), ``guard`` adds admission, the PROXY protocol and close records; the
classes here are the fast path with none of it.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING, Any, Protocol

from godoxy_streams.streams.context import ConnContext, Hook, OnClose, Outcome
from godoxy_streams.streams.deadlines import Deadlines
from godoxy_streams.streams.options import Dialer, StreamOptions
from godoxy_streams.streams.sockets import Address, dial_reason, where
from godoxy_streams.streams.stats import StreamStats

if TYPE_CHECKING:
    from godoxy_streams.streams.admission import Admission, RefusalLog
    from godoxy_streams.streams.pool import Pool

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
_LINGER0 = struct.pack("ii", 1, 0)


class ConnOwner(Protocol):
    """What a connection knows of the stream that accepted it (``stream.TCPStream``): settings,
    counters, hooks and bookkeeping. The layers name this Protocol, not the stream class, so
    they import nothing above them."""

    name: str
    target: Address
    options: StreamOptions
    stats: StreamStats
    loop: asyncio.AbstractEventLoop
    conns: set[Conn]
    connect: Dialer
    pre_dial: Hook | None
    on_read: Hook | None
    on_close: OnClose | None
    admission: Admission | None
    admitted: int
    need_peer: bool
    refusals: RefusalLog
    pool: Pool | None
    dials: Deadlines[Conn]  # the dial timeouts of its connections

    @property
    def log(self) -> Any: ...

    def conn_gone(self, conn: Conn) -> None: ...

    def call_hook(self, hook: Hook, ctx: ConnContext) -> None: ...


def reset(transport: asyncio.BaseTransport) -> None:
    """Abort ``transport`` so that its peer sees a reset (RST), not a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]


def end_writing(ut: asyncio.Transport) -> None:
    """Pass the client's FIN on; an upstream that cannot half-close (TLS) is closed instead,
    or it would wait forever."""
    if ut.can_write_eof():
        ut.write_eof()
    else:
        ut.close()


class Upstream(asyncio.Protocol):
    """The dialled side of a connection; its own protocol factory (``__call__``)."""

    __slots__ = ("conn", "target", "transport", "paused")

    def __init__(self, conn: Conn, target: tuple[str, int]) -> None:
        self.conn = conn
        self.target = target
        self.paused = False

    def __call__(self) -> Upstream:
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.conn.upstream_made(self.transport)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.transport.write(data)
        conn.stream.stats.bytes_out += len(data)

    def eof_received(self) -> bool:
        conn = self.conn
        keep = conn.upstream_eof()  # an agent's tunnel (the only dialer) is TLS, which has
        return keep and conn.stream.options.dialer is None  # no half-close: it closes

    def pause_writing(self) -> None:
        self.paused = True
        self.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        conn = self.conn
        if not conn.eof_in:  # reading again after an EOF would report it twice
            conn.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost(exc)


class Conn(asyncio.Protocol):
    """The client side of a connection, and the connection's state."""

    __slots__ = (
        "stream",
        "transport",
        "up",
        "ut",
        "early",
        "eof_in",
        "eof_out",
        "sides",
        "lost",
        "dialing",
    )

    upstream_cls: type[Upstream] = Upstream

    def __init__(self, stream: ConnOwner) -> None:
        self.stream = stream
        self.up: Upstream | None = None
        self.ut: asyncio.Transport | None = None
        self.early: list[bytes] | None = None
        self.eof_in = False  # client -> upstream direction finished
        self.eof_out = False  # upstream -> client direction finished
        self.sides = 1
        self.lost = False

    # --- client transport events ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        stream = self.stream
        stream.conns.add(self)
        stats = stream.stats
        stats.active += 1
        stats.total += 1
        self.dialing: asyncio.Future[Any] | None = None
        self.start()

    def start(self) -> None:
        """Begin the connection's life: dial (``HookedConn`` runs pre_dial first)."""
        self.dial(self.stream.target)

    def dial(self, target: tuple[str, int]) -> None:
        """Start the upstream dial: a task of ``create_connection`` itself (no wrapping
        coroutine), the stream's ``dials`` for the timeout, and a done callback."""
        stream = self.stream
        up = self.up = self.upstream_cls(self, target)
        task = self.dialing = stream.loop.create_task(stream.connect(up, target[0], target[1]))
        task.add_done_callback(self.dialed)
        stream.dials.add(self)

    def dial_timed_out(self) -> None:
        """The dial took the stream's ``dial_timeout`` (``dials`` calls this)."""
        if self.dialing is not None:
            self.dialing.cancel()

    def dialed(self, task: asyncio.Future[Any]) -> None:
        if self.dialing is task:
            self.dialing = None
        self.stream.dials.discard(self)
        if task.cancelled():
            if self.lost:
                return  # the client left (or was killed) first
            exc: BaseException = TimeoutError("dial timed out")
        else:
            error = task.exception()
            if error is None:
                return
            exc = error
        self.dial_failed(exc, dial_reason(exc), self.up.target if self.up else None)

    def dial_failed(
        self, exc: BaseException, reason: str, target: tuple[str, int] | None = None
    ) -> None:
        self.note("dial_failed")
        stream = self.stream
        stream.stats.count_dial_error(reason)
        stream.log.bind(dst=where(target or stream.target), reason=reason).warning(
            f"dial failed ({reason}): {exc!r}; closing the client connection"
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        ut = self.ut
        if ut is not None:
            ut.write(data)
            self.stream.stats.bytes_in += len(data)
        else:
            self.hold(data)

    def eof_received(self) -> bool:
        self.eof_in = True
        ut = self.ut
        if ut is not None:
            end_writing(ut)
            if self.eof_out:
                self.finish()
        return True

    def pause_writing(self) -> None:
        ut = self.ut
        if ut is not None:
            ut.pause_reading()

    def resume_writing(self) -> None:
        ut = self.ut
        if ut is not None and not self.eof_out:
            ut.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        task = self.dialing
        if task is not None:
            task.cancel()
        self.stopped()
        ut = self.ut
        if ut is not None:
            if exc is None:
                ut.close()
            else:
                reset(ut)
        self.side_gone()

    # --- upstream events ---

    def upstream_made(self, ut: asyncio.Transport) -> None:
        if self.lost:
            # The client left while this dial was completing. If the connection is already
            # over (sides == 0), this side is not counted: its loss must not end it twice.
            if self.sides:
                self.sides += 1
            ut.close()
            return
        self.sides += 1
        self.ut = ut
        early = self.early
        if early is not None:
            self.early = None
            data = b"".join(early)
            ut.write(data)
            self.stream.stats.bytes_in += len(data)
            if self.up is not None and not self.up.paused and not self.eof_in:
                self.transport.resume_reading()
        if self.eof_in:
            end_writing(ut)

    def upstream_eof(self) -> bool:
        self.eof_out = True
        self.transport.write_eof()
        if self.eof_in:
            self.finish()
        return True

    def upstream_lost(self, exc: Exception | None) -> None:
        if not self.lost:
            if exc is None:
                self.transport.close()
            else:
                reset(self.transport)
        self.side_gone()

    # --- helpers ---

    def hold(self, data: bytes) -> None:
        """Keep client bytes that arrive before the upstream is connected (bounded)."""
        early = self.early
        if early is None:
            early = self.early = []
        early.append(data)
        if sum(map(len, early)) >= HIGH_WATER:
            self.transport.pause_reading()

    def finish(self) -> None:
        """Both directions are done: close both sides (buffered bytes are still sent)."""
        self.transport.close()
        if self.ut is not None:
            self.ut.close()

    def kill(self) -> None:
        """Cut the connection now."""
        self.note("shutdown")
        self.lost = True
        if self.dialing is not None:
            self.dialing.cancel()
        reset(self.transport)
        if self.ut is not None:
            reset(self.ut)

    def side_gone(self) -> None:
        self.sides -= 1
        if self.sides == 0:
            self.stream.conn_gone(self)
            self.up = None  # no cycle left with the upstream's protocol: freed now, not by the GC

    def note(self, outcome: Outcome) -> None:
        """How the connection ends, if not known yet (a no-op here; ``guard`` keeps it)."""

    def touched(self) -> None:
        """Traffic seen (a no-op here; ``HookedConn`` keeps the idle clock and calls hooks)."""

    def stopped(self) -> None:
        """The client side is gone (a no-op here; ``HookedConn`` stops its idle timer)."""

    def buffered(self) -> int:
        """Bytes held by this connection in user space (write buffers and early data)."""
        size = self.transport.get_write_buffer_size()
        if self.ut is not None:
            size += self.ut.get_write_buffer_size()
        if self.early is not None:
            size += sum(map(len, self.early))
        return size
