"""One UDP session: a client address, its own connected upstream socket, and the reply path.

Replies are read from the upstream socket in batches (``add_reader`` + a drain loop, no task
and no per-packet timer) and sent back from the listen socket to the client, with the
arrival address as their source when the listener is a wildcard (``IP_PKTINFO`` /
``IPV6_PKTINFO`` ancillary data). ``RecordedSession`` also counts the session's bytes and
makes its close record (``on_close``). Also here: ``Pending``, the bounded queue of a
session whose hook or dial is still running.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

from godoxy_streams.streams.context import ConnContext, ConnRecord, Outcome
from godoxy_streams.streams.sockets import Address, client_address
from godoxy_streams.streams.udp.pktinfo import Cmsg

if TYPE_CHECKING:
    from godoxy_streams.streams.pool import PoolMember
    from godoxy_streams.streams.udp.owner import SessionOwner

BATCH = 256  # datagrams drained per readiness callback (fairness between sockets)
MAX_DATAGRAM = 65535
PENDING_MAX = 64  # datagrams queued per session while its pre_dial hook / dial runs


class Session:
    """One client address and its connected upstream socket."""

    __slots__ = (
        "stream",
        "client",
        "sock",
        "fd",
        "send",
        "last",
        "cmsg",
        "ctx",
        "limit",
        "key",
        "nin",
        "member",
    )

    def __init__(
        self,
        stream: SessionOwner,
        client: tuple[object, ...],
        sock: socket.socket,
        cmsg: Cmsg | None,
        ctx: ConnContext | None,
    ) -> None:
        self.stream = stream
        self.client = client
        self.sock = sock
        self.fd = sock.fileno()
        self.send = sock.send
        self.last = time.monotonic()
        self.cmsg = cmsg
        self.ctx = ctx
        self.limit = 1
        self.key: str | None = None  # the admission key while admitted
        self.nin = 0  # client -> upstream bytes, counted when the stream records sessions
        self.member: PoolMember | None = None  # the pool member it was sent to, if balanced

    def start(self) -> None:
        self.stream.loop.add_reader(self.fd, self.readable)

    def close(self) -> None:
        self.stream.loop.remove_reader(self.fd)
        self.sock.close()

    def readable(self) -> int:
        """Relay upstream replies to the client, from the arrival address when known.

        Adaptive batch: after a callback that found a single datagram, the next one reads
        one and returns (no EAGAIN round trip, which costs a syscall and an exception in
        Python); after a burst, it drains up to ``BATCH``. The poll is level-triggered, so
        nothing is left behind either way. Returns the bytes relayed.
        """
        stream = self.stream
        recv = self.sock.recv
        listen = stream.sock
        client = self.client
        cmsg = self.cmsg
        limit = self.limit
        count = nbytes = dropped = 0
        while count < limit:
            try:
                data = recv(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:  # an ICMP error of an earlier send (e.g. port unreachable)
                count += 1
                continue
            count += 1
            nbytes += len(data)
            try:
                if cmsg is None:
                    listen.sendto(data, client)
                else:
                    listen.sendmsg((data,), cmsg, 0, client)
            except OSError:
                dropped += 1
        self.limit = BATCH if count > 1 or count >= limit else 1
        self.last = time.monotonic()
        stats = stream.stats
        stats.bytes_out += nbytes
        if dropped:
            stats.dropped += dropped
        if stream.on_read is not None and self.ctx is not None:
            stream.call_hook(self.ctx)
        return nbytes


class RecordedSession(Session):
    """A ``Session`` that counts its replies' bytes and makes its ``ConnRecord``."""

    __slots__ = ("nout", "local", "target", "started", "t0")

    def __init__(
        self,
        stream: SessionOwner,
        client: tuple[object, ...],
        sock: socket.socket,
        cmsg: Cmsg | None,
        ctx: ConnContext | None,
        local: Address,
        target: Address,
    ) -> None:
        super().__init__(stream, client, sock, cmsg, ctx)
        self.nout = 0
        self.local = local
        self.target = target
        self.started = time.time()
        self.t0 = self.last

    def readable(self) -> int:
        nbytes = super().readable()
        self.nout += nbytes
        return nbytes

    def record(self, outcome: Outcome) -> ConnRecord:
        client = client_address(self.client)
        return ConnRecord(
            "udp",
            client,
            client,
            self.local,
            self.target,
            self.nin,
            self.nout,
            self.started,
            time.monotonic() - self.t0,
            outcome,
            self.stream.name,
        )


class Pending:
    """A session being set up: datagrams wait here, in order and bounded."""

    __slots__ = ("queue", "task")

    def __init__(self, first: bytes) -> None:
        self.queue: list[bytes] = [first]
        self.task: asyncio.Task[None] | None = None

    def add(self, data: bytes) -> bool:
        if len(self.queue) >= PENDING_MAX:
            return False
        self.queue.append(data)
        return True
