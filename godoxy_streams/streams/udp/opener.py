"""Opening UDP sessions: the table limit, the pre_dial hook, resolving a named target, and
the upstream socket; a mixin of ``UDPStream``.

The common case (no hook, an IP target) opens the session synchronously inside the read
batch. Otherwise the session is pending: its datagrams queue in order (bounded, ``PENDING_MAX``;
more are dropped and counted) while a task runs the hook and the resolution, then they are
sent as the session opens. With a hook, the session goes where the stream points once the
hook is done (a pooled stream picks its member only then): a hook may wait for the upstream.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from typing import Any

from godoxy_streams.errors import Refused
from godoxy_streams.streams.admission import Admission, RefusalLog
from godoxy_streams.streams.context import ConnContext, ConnRecord, Hook, OnClose, Outcome, deliver
from godoxy_streams.streams.logs import LazyLog
from godoxy_streams.streams.options import StreamOptions
from godoxy_streams.streams.pool import PooledStream, PoolMember
from godoxy_streams.streams.sockets import (
    Address,
    client_address,
    dial_reason,
    literal_family,
    where,
)
from godoxy_streams.streams.stats import StreamStats
from godoxy_streams.streams.udp.pktinfo import Cmsg
from godoxy_streams.streams.udp.session import Pending, RecordedSession, Session

Resolved = tuple[socket.AddressFamily, Any]


def literal(target: Address) -> Resolved | None:
    """The target as a socket address when its host is an IP literal (no resolving)."""
    family = literal_family(target[0])
    return None if family is None else (family, target)


class SessionOpener(PooledStream, LazyLog):
    """The session-opening half of ``UDPStream``."""

    log_protocol = "udp"

    name: str
    target: Address
    options: StreamOptions
    stats: StreamStats
    sessions: dict[tuple[Any, ...], Session]
    pending: dict[tuple[Any, ...], Pending]
    pre_dial: Hook | None
    on_read: Hook | None
    on_close: OnClose | None
    admission: Admission | None
    refusals: RefusalLog
    loop: asyncio.AbstractEventLoop
    sock: socket.socket
    _resolved: Resolved | None

    @property
    def local_addr(self) -> Address:
        raise NotImplementedError

    def call_hook(self, ctx: ConnContext) -> None:
        raise NotImplementedError

    def evict_idle(self) -> bool:
        raise NotImplementedError

    def room_for_one(self, admission: Admission | None) -> bool:
        """Whether a new session may go on: there is room in the table (``max_sessions``)
        and the descriptor budget, or the session idle the longest made room
        (``evict_idle``). A full table is counted here; a spent budget is the admission's
        to refuse, count and log."""
        full = len(self.sessions) + len(self.pending) >= self.options.max_sessions
        if not full and (admission is None or admission.room()):
            return True
        if self.evict_idle():
            return True
        if full:
            self.stats.sessions_refused += 1
        return not full

    def new_session(self, addr: Any, data: bytes, cmsg: Cmsg | None, local: str | None) -> None:
        pending = self.pending.get(addr)
        if pending is not None:
            if not pending.add(data):
                self.stats.dropped += 1
            return
        admission = self.admission
        if admission is not None and not admission.allowed(addr[0]):
            return  # dropped: counted and logged by the admission
        if not self.room_for_one(admission):
            return
        key = None
        if admission is not None:
            key = admission.take(addr[0])
            if key is None:
                return
        member = None
        if self.balancing and self.pre_dial is None:
            member = self.pick_member(addr, key)
            if member is None:
                return
            target = member.address
            resolved = literal(target)
        else:
            target, resolved = self.target, self._resolved
        ctx = local_addr = None
        if self.pre_dial is not None or self.on_read is not None or self.on_close is not None:
            local_addr = (local, self.local_addr[1]) if local else self.local_addr
            if self.pre_dial is not None or self.on_read is not None:
                ctx = ConnContext("udp", client_address(addr), local_addr, target, self.name)
        if self.pre_dial is None and resolved is not None and self.options.datagram_dialer is None:
            session = self.open_session(addr, resolved, cmsg, ctx, key, local_addr, member=member)
            if session is not None:
                self.send_first(session, [data])
            return
        pending = self.pending[addr] = Pending(data)
        pending.task = self.loop.create_task(
            self.open_later(addr, target, cmsg, ctx, pending, key, local_addr, member)
        )

    def pick_member(self, addr: Any, key: str | None) -> PoolMember | None:
        """The pool member for a new session; None (dropped, counted) when none is available."""
        member = self.pool.pick(str(addr[0])) if self.pool is not None else None
        if member is None:
            self.stats.no_upstream += 1
            self.refusals.note("no_upstream", "no healthy upstream; datagram dropped")
            if key is not None and self.admission is not None:
                self.admission.release(key)
            return None
        member.total += 1
        return member

    def open_session(
        self,
        addr: Any,
        resolved: Resolved,
        cmsg: Cmsg | None,
        ctx: ConnContext | None,
        key: str | None = None,
        local: Address | None = None,
        started: float | None = None,
        dialled: socket.socket | None = None,
        member: PoolMember | None = None,
    ) -> Session | None:
        """Open the session's upstream socket (or take the ``dialled`` one) and start it, as
        one of ``member``'s sessions when the stream is balanced."""
        family, sockaddr = resolved
        if dialled is not None:
            sock = dialled
        else:
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError as exc:
                self.dial_failed(exc, self.target)
                self.not_opened("dial_failed", addr, key, local, self.target, started)
                return None
            try:
                sock.setblocking(False)
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                target = (str(sockaddr[0]), int(sockaddr[1]))
                self.dial_failed(exc, target)
                self.not_opened("dial_failed", addr, key, local, target, started)
                return None
        if self.on_close is None:
            session = self.sessions[addr] = Session(self, addr, sock, cmsg, ctx)
        else:
            target = (str(sockaddr[0]), int(sockaddr[1]))
            session = self.sessions[addr] = RecordedSession(
                self, addr, sock, cmsg, ctx, local or self.local_addr, target
            )
            if started is not None:
                session.started = started
        session.key = key
        if member is not None:
            session.member = member
            member.active += 1
        session.start()
        stats = self.stats
        stats.active += 1
        stats.total += 1
        return session

    def balancing_changed(self) -> None:
        """Sessions sent to a pool member that left or is out end now: a client that keeps
        sending (so never expires) moves to an available member with its next datagram."""
        pool = self.pool
        if pool is None or not self.sessions:
            return
        now = time.monotonic()
        members = pool.members
        gone = [
            addr
            for addr, s in self.sessions.items()
            if s.member is not None and (s.member not in members or not s.member.available(now))
        ]
        for addr in gone:
            self.end_session(addr, "shutdown")

    def end_session(self, addr: Any, outcome: Outcome) -> None:
        """End a live session now; the client's next datagram opens a new one."""
        session = self.sessions.pop(addr)
        session.close()
        self.stats.active -= 1
        self.session_ended(session, outcome)

    def upstream_lost(self, addr: Any, sock: socket.socket) -> None:
        """A dialled upstream ended from its far side: end the session that uses it."""
        session = self.sessions.get(addr)
        if session is not None and session.sock is sock:
            self.end_session(addr, "reset")

    def session_ended(self, session: Session, outcome: Outcome) -> None:
        """An admitted session ended (expired, or the stream closed): release its admission
        slot, and hand its record to ``on_close``."""
        key = session.key
        if key is not None and self.admission is not None:
            session.key = None
            self.admission.release(key)
        member = session.member
        if member is not None:
            session.member = None
            member.active -= 1
        if self.on_close is not None and isinstance(session, RecordedSession):
            deliver(self.on_close, session.record(outcome), self.log)

    def not_opened(
        self,
        outcome: Outcome,
        addr: Any,
        key: str | None,
        local: Address | None,
        target: Address,
        started: float | None,
    ) -> None:
        """An admitted session could not open: release its slot; record it."""
        if key is not None and self.admission is not None:
            self.admission.release(key)
        if self.on_close is not None:
            client = client_address(addr)
            now = time.time()
            begun = now if started is None else started
            record = ConnRecord(
                "udp",
                client,
                client,
                local or self.local_addr,
                target,
                0,
                0,
                begun,
                max(0.0, now - begun),
                outcome,
                self.name,
            )
            deliver(self.on_close, record, self.log)

    def send_first(self, session: Session, queue: list[bytes]) -> None:
        nbytes = dropped = 0
        for data in queue:
            try:
                session.send(data)
                nbytes += len(data)
            except OSError:
                dropped += 1
        session.nin += nbytes
        self.stats.bytes_in += nbytes
        self.stats.dropped += dropped

    async def open_later(
        self,
        addr: Any,
        target: Address,
        cmsg: Cmsg | None,
        ctx: ConnContext | None,
        pending: Pending,
        key: str | None = None,
        local: Address | None = None,
        member: PoolMember | None = None,
    ) -> None:
        started = time.time() if self.on_close is not None else None
        outcome: Outcome | None = "shutdown"  # if cancelled: the stream closed
        try:
            try:
                if self.pre_dial is not None and ctx is not None:
                    result = self.pre_dial(ctx)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except Refused as exc:
                outcome = "refused"
                self.stats.refused += 1
                self.stats.dropped += len(pending.queue)
                self.refusals.note("refused", f"session refused by pre_dial: {exc}")
                return
            except Exception as exc:
                outcome = "dial_failed"
                self.stats.dropped += len(pending.queue)
                self.dial_failed(exc, target, "pre_dial")
                return
            if self.pre_dial is not None:  # where the stream points now
                if self.balancing:
                    member = self.pick_member(addr, None)
                    if member is None:
                        outcome = "no_upstream"
                        self.stats.dropped += len(pending.queue)
                        return
                    target = member.address
                else:
                    target = self.target
            dialled = None
            try:
                if self.options.datagram_dialer is not None:
                    resolved = (socket.AF_UNSPEC, target)  # the far end resolves a name
                    dialled = await self.options.datagram_dialer(
                        target[0], target[1], lambda sock: self.upstream_lost(addr, sock)
                    )
                else:
                    resolved = literal(target) or await self.resolve(target)
            except OSError as exc:
                outcome = "dial_failed"
                self.stats.dropped += len(pending.queue)
                self.dial_failed(exc, target)
                if member is not None and self.pool is not None:
                    self.pool.failed(member, f"{dial_reason(exc)}: {exc}")
                return
            if self.sock.fileno() >= 0:
                outcome = None  # open_session takes over
            elif dialled is not None:
                dialled.close()
        finally:
            if self.pending.get(addr) is pending:
                del self.pending[addr]
            if outcome is not None:
                self.not_opened(outcome, addr, key, local, target, started)
        if outcome is not None:
            return
        session = self.open_session(addr, resolved, cmsg, ctx, key, local, started, dialled, member)
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
