"""The agent's server: one TLS port (client certificate required) that dispatches each
connection by its ALPN protocol.

- ``http/1.1``: the agent API. ``/agent/version``, ``/agent/capabilities``, ``/agent/health``,
  and the engine's read-only endpoints exactly as ``socket-proxy`` filters them (list, inspect,
  events; environment variables removed; anything else 403); with ``lifecycle``, also the
  start/stop/pause/unpause/kill of sleep/wake containers (``--allow-lifecycle``), so the
  daemon wakes this host's containers through the agent.
- ``godoxy-streams-stream/1``: one tunnelled TCP connection. The first ``HEADER_SIZE`` bytes
  are the stream header (``header``); a malformed one, a bad checksum, or a destination that no
  running container's labels publish closes the connection. Otherwise the agent dials the
  destination, answers ``PROBE_OK`` once it is connected, and relays both ways (for a probe
  header it closes after the answer). A failed dial closes with no answer.

The same port number over UDP is the datagram channel (``datagram_server``: QUIC, the same
certificates), when the agent is given its QUIC configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

import aiohttp
from aiohttp import web
from aioquic.quic.configuration import QuicConfiguration
from loguru import logger

from godoxy_streams import __version__
from godoxy_streams.agent.quic.config import ALPN_DATAGRAM
from godoxy_streams.agent.server.datagrams import DatagramServer
from godoxy_streams.agent.server.destinations import Destinations
from godoxy_streams.agent.wire.header import (
    ALPN_HTTP,
    ALPN_STREAM,
    HEADER_SIZE,
    PROBE_OK,
    HeaderError,
    decode,
)
from godoxy_streams.errors import EngineError
from godoxy_streams.sources.socket_proxy import SocketProxy

PROTOCOL_VERSION = 1
HEADER_TIMEOUT = 5.0
DIAL_TIMEOUT = 5.0
CHUNK = 256 * 1024


class AgentServer:
    def __init__(
        self,
        engine: str,
        namespace: str,
        context: ssl.SSLContext,
        datagrams: QuicConfiguration | None = None,
        lifecycle: bool = False,
    ) -> None:
        self.engine = engine
        self.context = context
        self.datagram_config = datagrams
        self.datagrams: DatagramServer | None = None
        self.destinations = Destinations(engine, namespace)
        self.proxy = SocketProxy(engine, namespace if lifecycle else None)
        self.tunnels = 0  # relayed since start
        self.open = 0  # relaying now
        self.refused = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: web.Server | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port bound."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/agent/version", self._version)
        app.router.add_get("/agent/capabilities", self._capabilities)
        app.router.add_get("/agent/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self.proxy.handle)
        app.on_shutdown.append(self.proxy.on_shutdown)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        self._http = self._runner.server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._dispatch, host, port, ssl=self.context, ssl_handshake_timeout=HEADER_TIMEOUT
        )
        bound = int(self._server.sockets[0].getsockname()[1])
        logger.info(f"agent on {host}:{bound} (mutual TLS; ALPN {ALPN_STREAM}, {ALPN_HTTP})")
        if self.datagram_config is not None:
            self.datagrams = DatagramServer(self.datagram_config, self.destinations)
            await self.datagrams.start(host, bound)
            logger.info(f"agent on {host}:{bound}/udp (QUIC, mutual TLS; ALPN {ALPN_DATAGRAM})")
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.datagrams is not None:
            self.datagrams.close()
        for task in list(self._tasks):
            task.cancel()
        await self._runner.cleanup()
        await self.proxy.close()

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self) -> asyncio.Protocol:
        return _Dispatch(self)

    def http_protocol(self) -> asyncio.Protocol:
        assert self._http is not None
        return self._http()

    def stream_protocol(self) -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=CHUNK)

        def started(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(self._tunnel(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return asyncio.StreamReaderProtocol(reader, started)

    # -- the API -----------------------------------------------------------------------------
    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "protocol": PROTOCOL_VERSION})

    async def _capabilities(self, _: web.Request) -> web.Response:
        return web.json_response({"tcp": True, "udp": self.datagram_config is not None})

    async def _health(self, _: web.Request) -> web.Response:
        try:
            await self.destinations.refresh()
        except EngineError as exc:
            return web.json_response(
                {"status": "engine unreachable", "error": str(exc)}, status=503
            )
        counts = {"tunnels": self.tunnels, "open": self.open, "refused": self.refused}
        if self.datagrams is not None:
            counts["flows"] = self.datagrams.flows
            counts["flows_open"] = self.datagrams.open_flows
            counts["flows_refused"] = self.datagrams.refused
            counts["flows_dropped"] = self.datagrams.dropped
            counts["handshakes_dropped"] = self.datagrams.handshakes.dropped
        return web.json_response({"status": "ok", **counts})

    # -- tunnels -----------------------------------------------------------------------------
    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            try:
                raw = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), HEADER_TIMEOUT)
                header = decode(raw)
            except (HeaderError, asyncio.IncompleteReadError, TimeoutError) as exc:
                return self._refuse(peer, f"bad stream header: {exc}")
            try:
                permitted = await self.destinations.permits("tcp", header.host, header.port)
            except EngineError as exc:
                return self._refuse(peer, f"cannot check the destination: {exc}")
            if not permitted:
                return self._refuse(
                    peer, f"{header.host}:{header.port} is not published by any label here"
                )
            try:
                up_r, up_w = await asyncio.wait_for(
                    asyncio.open_connection(header.host, header.port, limit=CHUNK), DIAL_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                logger.warning(f"tunnel to {header.host}:{header.port} failed: {exc!r}")
                return
            writer.write(PROBE_OK)  # the destination answered: the daemon may start relaying
            if header.probe:
                up_w.close()
                return
            self.tunnels += 1
            self.open += 1
            inbound = asyncio.ensure_future(_pump(reader, up_w))
            # The daemon's end is a full close (no half-close over TLS): end the destination's
            # connection too, so a destination that waits for more cannot hold the tunnel.
            inbound.add_done_callback(lambda _: up_w.close())
            try:
                # TLS cannot half-close here: when the destination has finished sending, the
                # tunnel ends (its close reaches the daemon as the upstream's end).
                await _pump(up_r, writer)
            finally:
                self.open -= 1
                inbound.cancel()
                up_w.close()
        finally:
            writer.close()

    def _refuse(self, peer: object, why: str) -> None:
        self.refused += 1
        logger.warning(f"tunnel from {peer} refused: {why}")


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close; a reset ends both directions."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class _Dispatch(asyncio.Protocol):
    """The first protocol of every connection: hands the TLS transport to the protocol its
    ALPN names (the handshake is complete when ``connection_made`` runs)."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = transport.get_extra_info("ssl_object")
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        if alpn == ALPN_STREAM:
            protocol = self.server.stream_protocol()
        elif alpn == ALPN_HTTP:
            protocol = self.server.http_protocol()
        else:
            logger.warning(f"connection without a known ALPN protocol ({alpn!r}) closed")
            transport.close()
            return
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


async def serve_agent(
    host: str,
    port: int,
    engine: str,
    namespace: str,
    context: ssl.SSLContext,
    destinations: Destinations | None = None,
    datagrams: QuicConfiguration | None = None,
    lifecycle: bool = False,
) -> None:
    """Run the agent until SIGTERM or SIGINT (``destinations``: another allow-list;
    ``datagrams``: the QUIC configuration that turns the UDP channel on)."""
    import signal

    server = AgentServer(engine, namespace, context, datagrams, lifecycle)
    if destinations is not None:
        server.destinations = destinations
    await server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with contextlib.suppress(EngineError, aiohttp.ClientError, OSError):
            await server.destinations.refresh()
        await stop.wait()
    finally:
        await server.close()
