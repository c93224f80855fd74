"""Serving the status API within a budget of its own, so that no client of the API, however
many or slow, takes a descriptor or a moment the routes need.

- At most ``cap`` connections at once (``limits.api_connections``): one more is answered 503
  and closed at once. The daemon keeps ``cap`` descriptors (and the listener's) out of the
  data plane's budget, so the API counts against nothing the routes need.
- A connection that has not completed its first request's headers ``HEADER_TIMEOUT`` seconds
  after it opened is closed (slowloris: a trickle of bytes does not extend it); an idle
  keep-alive connection is closed after ``IDLE_TIMEOUT``, which also bounds the headers of
  each later request on it (aiohttp's keep-alive timer).
- Request lines and header lines are bounded (``MAX_LINE``, ``MAX_HEADERS``). No handler
  reads a body: what a client still sends after its headers is drained for ``LINGER``
  seconds at most, then the connection closes. A client that stops reading the answer is
  cut when its writes stay paused for ``WRITE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from godoxy_streams.budget_views import ApiView

HEADER_TIMEOUT = 5.0
IDLE_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0
LINGER = 1.0
MAX_LINE = 8190
MAX_HEADERS = 64
BACKLOG = 128
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n\r\ntoo many calls"
)


class _Busy(asyncio.Protocol):
    """A connection beyond the cap: answered 503 and closed, nothing read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(BUSY)
        writer.close()


class _Guarded(asyncio.Protocol):
    """One API connection: aiohttp's handler inside, counted while open, with the header
    and write deadlines of the module docstring."""

    def __init__(self, inner: RequestHandler, gate: ApiGate) -> None:
        self.inner = inner
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.headers_due: asyncio.TimerHandle | None = None
        self.stalled: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.gate.connections[self.inner] = self
        self.headers_due = self.gate.loop.call_later(HEADER_TIMEOUT, self._cut)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None  # the transport closes itself, as with aiohttp's handler alone

    def pause_writing(self) -> None:
        if self.stalled is None:
            self.stalled = self.gate.loop.call_later(WRITE_TIMEOUT, self._cut)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.stalled is not None:
            self.stalled.cancel()
            self.stalled = None
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.request_started()
        if self.stalled is not None:
            self.stalled.cancel()
        self.gate.closed(self)
        self.inner.connection_lost(exc)

    def request_started(self) -> None:
        """The first request's headers are complete: no header deadline any more."""
        if self.headers_due is not None:
            self.headers_due.cancel()
            self.headers_due = None

    def _cut(self) -> None:
        if self.transport is not None:
            self.gate.cut += 1
            self.transport.abort()


class ApiGate:
    """The protocol factory of the API's listener: the cap and the counters."""

    def __init__(self, server: web.Server, cap: int) -> None:
        self.server = server
        self.cap = cap
        self.loop = asyncio.get_running_loop()
        self.open = 0  # counted from the factory call: accepts come in batches
        self.connections: dict[object, _Guarded] = {}  # by aiohttp's handler, once made
        self.refused = 0  # connections turned away at the cap
        self.cut = 0  # connections closed for a missed deadline

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.cap:
            self.refused += 1
            return _Busy()
        self.open += 1
        return _Guarded(self.server(), self)

    def closed(self, conn: _Guarded) -> None:
        self.open -= 1
        self.connections.pop(conn.inner, None)

    def started(self, request: web.BaseRequest) -> None:
        """A request's headers are complete (see ``_Guarded.request_started``)."""
        conn = self.connections.get(request.protocol)
        if conn is not None:
            conn.request_started()

    def view(self) -> ApiView:
        return ApiView(cap=self.cap, open=self.open, refused=self.refused, cut=self.cut)


class ApiServer:
    """The status API's listener and aiohttp runner."""

    def __init__(self, app: web.Application, cap: int) -> None:
        app.middlewares.insert(0, self._middleware)
        self.runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT,
            lingering_time=LINGER,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
            shutdown_timeout=1.0,
        )
        self.cap = cap
        self.gate: ApiGate | None = None
        self._server: asyncio.AbstractServer | None = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.gate is not None:
            self.gate.started(request)
        response: web.StreamResponse = await handler(request)
        return response

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the port bound. ``OSError`` if it cannot."""
        await self.runner.setup()
        assert self.runner.server is not None
        self.gate = ApiGate(self.runner.server, self.cap)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.gate, host, port, reuse_address=True, backlog=BACKLOG
        )
        return int(self._server.sockets[0].getsockname()[1])

    def view(self) -> ApiView | None:
        return self.gate.view() if self.gate is not None else None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.runner.cleanup()
