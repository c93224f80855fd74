"""Opening UDP sessions: the table limit, the pre_dial hook, resolving a named target, and
the upstream socket; a mixin of ``UDPStream``.

The common case (no hook, an IP target) opens the session synchronously inside the read
batch. Otherwise the session is pending: its datagrams queue in order (bounded) while a task
runs the hook and the resolution, then they are sent as the session opens.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

from godoxy_streams.errors import Refused
from godoxy_streams.streams.common import (
    Address,
    ConnContext,
    Hook,
    StreamOptions,
    StreamStats,
    dial_reason,
    literal_family,
    where,
)
from godoxy_streams.streams.udp_session import Cmsg, Pending, Session, client_address

Resolved = tuple[socket.AddressFamily, Any]


def literal(target: Address) -> Resolved | None:
    """The target as a socket address when its host is an IP literal (no resolving)."""
    family = literal_family(target[0])
    return None if family is None else (family, target)


class SessionOpener:
    """The session-opening half of ``UDPStream``."""

    name: str
    target: Address
    options: StreamOptions
    stats: StreamStats
    sessions: dict[tuple[Any, ...], Session]
    pending: dict[tuple[Any, ...], Pending]
    pre_dial: Hook | None
    on_read: Hook | None
    loop: asyncio.AbstractEventLoop
    sock: socket.socket
    log: Any
    _resolved: Resolved | None

    @property
    def local_addr(self) -> Address:
        raise NotImplementedError

    def call_hook(self, ctx: ConnContext) -> None:
        raise NotImplementedError

    def new_session(self, addr: Any, data: bytes, cmsg: Cmsg | None, local: str | None) -> None:
        pending = self.pending.get(addr)
        if pending is not None:
            if not pending.add(data):
                self.stats.dropped += 1
            return
        if len(self.sessions) + len(self.pending) >= self.options.max_sessions:
            self.stats.sessions_refused += 1
            return
        target, resolved = self.target, self._resolved
        ctx = None
        if self.pre_dial is not None or self.on_read is not None:
            local_addr = (local, self.local_addr[1]) if local else self.local_addr
            ctx = ConnContext("udp", client_address(addr), local_addr, target, self.name)
        if self.pre_dial is None and resolved is not None:
            session = self.open_session(addr, resolved, cmsg, ctx)
            if session is not None:
                self.send_first(session, [data])
            return
        pending = self.pending[addr] = Pending(data)
        pending.task = self.loop.create_task(self.open_later(addr, target, cmsg, ctx, pending))

    def open_session(
        self, addr: Any, resolved: Resolved, cmsg: Cmsg | None, ctx: ConnContext | None
    ) -> Session | None:
        family, sockaddr = resolved
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            self.dial_failed(exc, self.target)
            return None
        try:
            sock.setblocking(False)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            self.dial_failed(exc, (str(sockaddr[0]), int(sockaddr[1])))
            return None
        session = self.sessions[addr] = Session(self, addr, sock, cmsg, ctx)
        session.start()
        stats = self.stats
        stats.active += 1
        stats.total += 1
        return session

    def send_first(self, session: Session, queue: list[bytes]) -> None:
        nbytes = dropped = 0
        for data in queue:
            try:
                session.send(data)
                nbytes += len(data)
            except OSError:
                dropped += 1
        self.stats.bytes_in += nbytes
        self.stats.dropped += dropped

    async def open_later(
        self,
        addr: Any,
        target: Address,
        cmsg: Cmsg | None,
        ctx: ConnContext | None,
        pending: Pending,
    ) -> None:
        try:
            try:
                if self.pre_dial is not None and ctx is not None:
                    result = self.pre_dial(ctx)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except Refused as exc:
                self.stats.refused += 1
                self.stats.dropped += len(pending.queue)
                self.log.bind(dst=where(target)).info(f"session refused by pre_dial: {exc}")
                return
            except Exception as exc:
                self.stats.dropped += len(pending.queue)
                self.dial_failed(exc, target, "pre_dial")
                return
            try:
                resolved = literal(target) or await self.resolve(target)
            except OSError as exc:
                self.stats.dropped += len(pending.queue)
                self.dial_failed(exc, target)
                return
        finally:
            if self.pending.get(addr) is pending:
                del self.pending[addr]
        if self.sock.fileno() < 0:
            return
        session = self.open_session(addr, resolved, cmsg, ctx)
        if session is not None:
            self.send_first(session, pending.queue)

    async def resolve(self, target: Address) -> Resolved:
        infos = await self.loop.getaddrinfo(target[0], target[1], type=socket.SOCK_DGRAM)
        family, _, _, _, sockaddr = infos[0]
        resolved = (socket.AddressFamily(family), sockaddr)
        if self.target == target:
            self._resolved = resolved
        return resolved

    def dial_failed(self, exc: BaseException, target: Address, reason: str = "") -> None:
        reason = reason or dial_reason(exc)
        self.stats.count_dial_error(reason)
        self.log.bind(dst=where(target), reason=reason).warning(
            f"upstream socket failed ({reason}): {exc!r}; dropping the datagram"
        )
