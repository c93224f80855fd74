"""A TCP stream: one listener that relays every accepted connection to a (swappable) target.

The listener is an ``asyncio`` server on a socket bound here (so bind errors become the
``ListenError`` tree); each connection is a protocol pair from ``relay`` (``hooked`` with
hooks or an idle timeout, ``guard`` with admission, PROXY protocol or ``on_close``; chosen
once, at ``serve``). ``retarget`` swaps the target for new connections only; ``set_pool``
gives the stream several upstreams (``pool``), and while the pool needs a choice new
connections use ``balanced`` on top of that class. ``close`` frees the port at once, then
drains or kills the live connections. A stream without a listener of its own (``prepare``
instead of ``serve``) relays connections a shared listener hands over (``adopt``).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, cast

from godoxy_streams.streams.admission import Admission, RefusalLog
from godoxy_streams.streams.context import ConnContext, Hook, OnClose
from godoxy_streams.streams.deadlines import Deadlines
from godoxy_streams.streams.logs import LazyLog
from godoxy_streams.streams.options import DEFAULT_OPTIONS, Dialer, StreamOptions
from godoxy_streams.streams.pool import PooledStream
from godoxy_streams.streams.sockets import BACKLOG, Address, listen_socket, resolve_bind, where
from godoxy_streams.streams.stats import StreamStats
from godoxy_streams.streams.tcp.balanced import balanced_class
from godoxy_streams.streams.tcp.classes import conn_class
from godoxy_streams.streams.tcp.relay import Conn


class TCPStream(PooledStream, LazyLog):
    """Relay TCP connections accepted on ``listen`` to ``target``."""

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
        self.loop: asyncio.AbstractEventLoop
        self.conns: set[Conn] = set()
        self.pre_dial: Hook | None = None
        self.on_read: Hook | None = None
        self.on_close: OnClose | None = None
        self.admission: Admission | None = None
        self.admitted = 0  # admitted live connections (guarded streams only)
        self.need_peer = False  # whether guarded connections look up their peer
        self.refusals: RefusalLog
        self.dials: Deadlines[Conn]  # the dial timeouts of its connections (``prepare``)
        self.connect: Dialer  # how upstream connections are made (chosen at ``serve``)
        self.conn_cls: type[Conn] = Conn
        self._plain_cls: type[Conn] = Conn
        self._server: asyncio.AbstractServer | None = None
        self._local: Address | None = None
        self._drained: asyncio.Future[None] | None = None
        self._hook_tasks: set[asyncio.Future[Any]] = set()
        self._prepared = False

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
        """Bind and start accepting; returns once the listener accepts connections.

        ``on_close`` gets a ``ConnRecord`` once per connection, when it is over (refused
        ones included)."""
        if self._server is not None:
            raise RuntimeError("stream is already serving")
        host, port, family = await resolve_bind("tcp", *self.listen)
        sock = listen_socket("tcp", host, port, family)
        sockname = sock.getsockname()
        self._local = (str(sockname[0]), int(sockname[1]))
        self.prepare(pre_dial, on_read, on_close)
        try:
            self._server = await self.loop.create_server(self.new_conn, sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            self._local = None
            if self.admission is not None:
                self.admission.close()
            raise

    def prepare(
        self,
        pre_dial: Hook | None = None,
        on_read: Hook | None = None,
        on_close: OnClose | None = None,
    ) -> None:
        """Get ready to relay connections (as ``serve`` does, without a listener of its own:
        a shared listener, SNI, hands them over with ``adopt``)."""
        self.loop = asyncio.get_running_loop()
        self.connect = self.options.dialer or cast(Dialer, self.loop.create_connection)
        self.pre_dial, self.on_read, self.on_close = pre_dial, on_read, on_close
        self.forget_log()
        options = self.options
        self.refusals = RefusalLog(lambda: self.log, self.loop)
        self.dials = Deadlines(options.dial_timeout, Conn.dial_timed_out)
        self.dials.loop = self.loop
        self.admission = admission = Admission.build(options, self.stats, self.refusals, tcp=True)
        hooked = bool(pre_dial or on_read or options.idle_timeout is not None)
        proxy_in = options.proxy_protocol_trusted is not None
        self.need_peer = bool(
            hooked
            or on_close
            or proxy_in
            or options.proxy_protocol
            or (admission is not None and admission.by_client)
        )
        self._plain_cls = conn_class(
            hooked=hooked, guarded=options.guarded, recorded=on_close is not None, proxy_in=proxy_in
        )
        self.balancing_changed()
        self._prepared = True

    def adopt(self, transport: asyncio.Transport, data: bytes = b"") -> None:
        """Relay a connection another listener accepted (after ``prepare``), from its start:
        ``data``, the bytes that listener read already, goes upstream first."""
        conn = self.conn_cls(self)
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if data and not transport.is_closing():
            conn.data_received(data)

    def new_conn(self) -> Conn:
        return self.conn_cls(self)

    def retarget(self, target: Address) -> None:
        """Send new connections to ``target``; live ones keep their upstream."""
        self.target = target

    def balancing_changed(self) -> None:
        """New connections use the balanced class while the pool needs a choice."""
        self.conn_cls = balanced_class(self._plain_cls) if self.balancing else self._plain_cls

    async def close(self, *, on_stop: str | None = None, grace: float | None = None) -> None:
        """Stop listening now; then drain (up to ``grace``) or kill the live connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        mode = on_stop or self.options.on_stop
        if mode not in ("drain", "kill"):
            raise ValueError(f"on_stop must be 'drain' or 'kill', not {mode!r}")
        wait = self.options.drain_timeout if grace is None else grace
        if self.conns and mode == "drain" and wait > 0:
            self.log.info(f"draining {len(self.conns)} connection(s) for up to {wait:g}s")
            await self._wait_gone(wait)
        if self.conns:
            self.log.info(f"closing {len(self.conns)} connection(s)")
            for conn in list(self.conns):
                conn.kill()
            await self._wait_gone(5.0)
        for task in list(self._hook_tasks):
            task.cancel()
        if self._prepared:
            self._prepared = False
            self.refusals.close()
            self.dials.close()
        self._release_share()

    async def _wait_gone(self, timeout: float) -> None:
        if not self.conns:
            return
        if self._drained is None or self._drained.done():
            self._drained = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), timeout)
        except TimeoutError:
            pass

    def conn_gone(self, conn: Conn) -> None:
        """Called by a connection once both of its sides are closed."""
        self.conns.discard(conn)
        self.stats.active -= 1
        if not self.conns and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if not self._prepared:  # closed already
            self._release_share()

    def _release_share(self) -> None:
        """Once closed and without connections: the descriptor budget's share goes back."""
        if self.admission is not None and not self.conns:
            self.admission.close()

    def call_hook(self, hook: Hook, ctx: ConnContext) -> None:
        """Run a per-read hook; an async one runs as an owned task."""
        try:
            result = hook(ctx)
        except Exception:
            self.log.exception("on_read hook failed")
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Future[Any]) -> None:
        self._hook_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.opt(exception=task.exception()).error("on_read hook failed")

    def buffered_bytes(self) -> int:
        """Bytes buffered in user space by all live connections (flow-control checks)."""
        return sum(conn.buffered() for conn in self.conns)

    def __repr__(self) -> str:
        return f"<TCPStream {self.name or ''} {where(self.local_addr)} -> {where(self.target)}>"
