"""A UDP stream: one listen socket, a session per client address, each with its own
connected upstream socket.

Datagrams are drained in batches from a non-blocking socket in an ``add_reader`` callback,
in arrival order, so each flow keeps its order with no task or timer per packet. Sessions
carry a last-seen timestamp (set once per batch, by traffic either way) and a sweep every
``udp_timeout / 4`` expires idle ones. The table is bounded by ``max_sessions``; when it is
full, or the stream's share of the descriptor budget is spent, a new client takes the place
of the session idle the longest (``evict_idle``), never of one that is active. Opening
sessions (admission, hook, resolving, table limit) is in ``udp_open``; replies in
``udp_session``. Only datagrams from clients without a session reach the admission checks;
PROXY protocol options are TCP-only and ignored here.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import socket
import time
from typing import Any

from godoxy_streams.streams.admission import Admission, RefusalLog
from godoxy_streams.streams.context import ConnContext, Hook, OnClose
from godoxy_streams.streams.options import DEFAULT_OPTIONS, StreamOptions
from godoxy_streams.streams.sockets import Address, is_wildcard, listen_socket, resolve_bind, where
from godoxy_streams.streams.stats import StreamStats
from godoxy_streams.streams.udp.opener import SessionOpener, literal
from godoxy_streams.streams.udp.pktinfo import ANC_SIZE, enable_pktinfo, reply_cmsg
from godoxy_streams.streams.udp.session import BATCH, MAX_DATAGRAM, Pending, Session

SOCKET_BUFFER = 4 * 1024 * 1024  # asked for; the kernel caps it at net.core.[rw]mem_max
EVICT_IDLE = 1.0  # seconds without traffic before a session may give way to a new client
EVICT_SCAN = 16  # sessions looked at per eviction, oldest first
EVICT_PAUSE = 0.1  # seconds without a scan after one found no idle session


class UDPStream(SessionOpener):
    """Relay UDP datagrams received on ``listen`` to ``target``, per client session."""

    def __init__(
        self,
        listen: Address,
        target: Address,
        *,
        options: StreamOptions = DEFAULT_OPTIONS,
        name: str = "",
    ) -> None:
        self.listen = listen
        self.target = target
        self.options = options
        self.name = name
        self.stats = StreamStats()
        self.sessions: dict[tuple[Any, ...], Session] = {}
        self.pending: dict[tuple[Any, ...], Pending] = {}
        self.pre_dial: Hook | None = None
        self.on_read: Hook | None = None
        self.on_close: OnClose | None = None
        self.admission: Admission | None = None
        self.refusals: RefusalLog
        self.loop: asyncio.AbstractEventLoop
        self.sock: socket.socket
        self._resolved = literal(target)
        self._local: Address | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._hook_tasks: set[asyncio.Future[Any]] = set()
        self._touched_set: set[Session] = set()
        self._hooked = False  # per-datagram work: an on_read hook, or per-session bytes
        self._limit = BATCH
        self._evict_after = 0.0  # no eviction scan before this (monotonic)

    @property
    def local_addr(self) -> Address:
        """The address actually bound (the listen address before ``serve``)."""
        return self._local if self._local is not None else self.listen

    async def serve(
        self,
        pre_dial: Hook | None = None,
        on_read: Hook | None = None,
        on_close: OnClose | None = None,
    ) -> None:
        """Bind and start relaying; returns once datagrams are being received.

        ``on_close`` gets a ``ConnRecord`` once per session, when it ends (expired, closed
        with the stream, or failed to open); datagrams turned away by the admission make
        no record (they are counted in ``stats.denied`` / ``stats.limited``)."""
        if self._local is not None:
            raise RuntimeError("stream is already serving")
        self.loop = asyncio.get_running_loop()
        self.pre_dial, self.on_read, self.on_close = pre_dial, on_read, on_close
        self._hooked = on_read is not None or on_close is not None
        host, port, family = await resolve_bind("udp", *self.listen)
        sock = listen_socket("udp", host, port, family)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass
        wildcard = is_wildcard(host)
        if wildcard:
            enable_pktinfo(sock)
        self.sock = sock
        sockname = sock.getsockname()
        self._local = (str(sockname[0]), int(sockname[1]))
        self.forget_log()
        self.refusals = RefusalLog(lambda: self.log, self.loop)
        self.admission = Admission.build(self.options, self.stats, self.refusals, tcp=False)
        self.loop.add_reader(sock.fileno(), self._readable_pktinfo if wildcard else self._readable)
        self._schedule_sweep()

    def retarget(self, target: Address) -> None:
        """Send new sessions to ``target``; live sessions keep their upstream."""
        self.target = target
        self._resolved = literal(target)

    async def close(self, *, on_stop: str | None = None, grace: float | None = None) -> None:
        """Stop at once: close the listen socket and every session.

        ``on_stop`` and ``grace`` are accepted for symmetry with TCP; a UDP session has
        nothing to drain once the listen socket, its only way back to the client, is closed.
        """
        if self._local is None or self.sock.fileno() < 0:
            return
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pending in self.pending.values():
            if pending.task is not None:
                pending.task.cancel()
        self.pending.clear()
        for session in self.sessions.values():
            session.close()
        self.stats.active -= len(self.sessions)
        sessions = list(self.sessions.values()) if self._guarded() else []
        self.sessions.clear()
        for session in sessions:
            self.session_ended(session, "shutdown")
        self.refusals.close()
        if self.admission is not None:
            self.admission.close()
        for task in list(self._hook_tasks):
            task.cancel()
        await asyncio.sleep(0)

    # --- the listen socket ---

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        sessions = self.sessions
        hooked = self._hooked
        now = time.monotonic()
        limit = self._limit
        count = nbytes = dropped = 0
        while count < limit:
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                break
            except OSError:
                count += 1
                continue
            count += 1
            session = sessions.get(addr)
            if session is None:
                self.new_session(addr, data, None, None)
                continue
            nbytes += len(data)
            session.last = now
            try:
                session.send(data)
            except OSError:
                dropped += 1
            if hooked:
                self._touched(session, len(data))
        self._batch_done(count, limit, nbytes, dropped)

    def _readable_pktinfo(self) -> None:
        recvmsg = self.sock.recvmsg
        sessions = self.sessions
        hooked = self._hooked
        now = time.monotonic()
        limit = self._limit
        count = nbytes = dropped = 0
        while count < limit:
            try:
                data, anc, _flags, addr = recvmsg(MAX_DATAGRAM, ANC_SIZE)
            except BlockingIOError:
                break
            except OSError:
                count += 1
                continue
            count += 1
            session = sessions.get(addr)
            if session is None:
                cmsg, local = reply_cmsg(anc)
                self.new_session(addr, data, cmsg, local)
                continue
            nbytes += len(data)
            session.last = now
            try:
                session.send(data)
            except OSError:
                dropped += 1
            if hooked:
                self._touched(session, len(data))
        self._batch_done(count, limit, nbytes, dropped)

    def _batch_done(self, count: int, limit: int, nbytes: int, dropped: int) -> None:
        """Once per read batch: the next batch size, the counters, the on_read hooks."""
        self._limit = BATCH if count > 1 or count >= limit else 1  # see Session.readable
        stats = self.stats
        stats.bytes_in += nbytes
        if dropped:
            stats.dropped += dropped
        if self._touched_set:
            self._call_touched()

    def _call_touched(self) -> None:
        touched, self._touched_set = self._touched_set, set()
        for session in touched:
            if session.ctx is not None:
                self.call_hook(session.ctx)

    def _touched(self, session: Session, nbytes: int) -> None:
        session.nin += nbytes
        if self.on_read is not None:
            self._touched_set.add(session)

    def _guarded(self) -> bool:
        """Whether ended sessions need ``session_ended`` (slots, member counts, records)."""
        return self.admission is not None or self.on_close is not None or self.pool is not None

    # --- expiry and hooks ---

    def _schedule_sweep(self) -> None:
        period = max(self.options.udp_timeout / 4, 0.01)
        self._sweeper = self.loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        deadline = time.monotonic() - self.options.udp_timeout
        expired = [addr for addr, s in self.sessions.items() if s.last <= deadline]
        guarded = self._guarded()
        for addr in expired:
            session = self.sessions.pop(addr)
            session.close()
            if guarded:
                self.session_ended(session, "timed_out")
        self.stats.active -= len(expired)
        if expired:
            self.log.debug(f"expired {len(expired)} idle session(s)")
        self._schedule_sweep()

    def evict_idle(self) -> bool:
        """End the session idle the longest among the ``EVICT_SCAN`` oldest, if it has been
        idle ``EVICT_IDLE`` seconds (less for a shorter ``udp_timeout``); the active ones
        looked at move to the back (a second chance), so each call looks at others; after a
        scan that found none, the next waits ``EVICT_PAUSE`` (a flood of newcomers costs no
        scan per datagram). Whether a session was ended."""
        now = time.monotonic()
        if now < self._evict_after:
            return False
        sessions = self.sessions
        floor = now - min(EVICT_IDLE, self.options.udp_timeout / 2)
        idlest = None
        for addr in list(itertools.islice(sessions, EVICT_SCAN)):
            session = sessions[addr]
            if session.last > floor:
                sessions[addr] = sessions.pop(addr)
            elif idlest is None or session.last < sessions[idlest].last:
                idlest = addr
        if idlest is None:
            self._evict_after = now + EVICT_PAUSE
            return False
        self.stats.evicted += 1
        self.end_session(idlest, "evicted")
        return True

    def call_hook(self, ctx: ConnContext) -> None:
        hook = self.on_read
        if hook is None:
            return
        try:
            result = hook(ctx)
        except Exception:
            self.log.exception("on_read hook failed")
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    def __repr__(self) -> str:
        return f"<UDPStream {self.name or ''} {where(self.local_addr)} -> {where(self.target)}>"
