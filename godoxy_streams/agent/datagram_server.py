"""The agent's datagram channel: a QUIC server (mutual TLS, ALPN ``godoxy-streams-datagram/1``)
on the agent's port number, over UDP, that relays UDP flows to the host's containers.

Each flow is a QUIC stream the daemon opens with the stream header (``header``). Once the
destination passes the same allow-list as a TCP tunnel (UDP this time), the agent opens a
UDP socket connected to it, answers ``PROBE_OK``, and relays: the flow's DATAGRAM frames (and
records on its stream, for datagrams too large for a frame) to the destination, replies back
the same way. The daemon's end of the stream ends the flow; a refused header or destination,
or a socket that cannot be opened, ends the stream with no answer. For a probe header the
agent answers and ends the flow at once. See ``quic`` for the framing and the certificates.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode
from loguru import logger

from godoxy_streams.agent.destinations import Destinations
from godoxy_streams.agent.header import HEADER_SIZE, PROBE_OK, HeaderError, decode
from godoxy_streams.agent.quic import (
    FlowLink,
    Records,
    ask_for_client_certificate,
    client_certificate_error,
    flow_prefix,
    split_datagram,
)
from godoxy_streams.errors import EngineError


class AgentFlow(asyncio.DatagramProtocol):
    """One flow on the agent: a UDP socket connected to the destination."""

    def __init__(self, link: AgentLink, stream_id: int) -> None:
        self.link = link
        self.stream_id = stream_id
        self.prefix = flow_prefix(stream_id)
        self.records = Records()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.link.send_datagram(self.stream_id, self.prefix, data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error of an earlier send (e.g. port unreachable): UDP carries on."""

    def send(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Opening:
    """A flow whose header is arriving or whose destination is being checked."""

    __slots__ = ("data", "task", "ended")

    def __init__(self) -> None:
        self.data = b""
        self.task: asyncio.Task[None] | None = None
        self.ended = False


class AgentLink(FlowLink):
    """One daemon's QUIC connection to the agent."""

    def __init__(self, quic: QuicConnection, *, server: DatagramServer, **_: object) -> None:
        super().__init__(quic)
        ask_for_client_certificate(quic)
        self.server = server
        self.trusted = False
        self.flows: dict[int, AgentFlow] = {}
        self.opening: dict[int, _Opening] = {}
        self.refused: set[int] = set()  # streams refused whose end has not come yet

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self._terminated()
        elif isinstance(event, HandshakeCompleted):
            self._verify()
        elif not self.trusted:
            return  # nothing is read before the client's certificate is verified
        elif isinstance(event, DatagramFrameReceived):
            try:
                stream_id, payload = split_datagram(event.data)
            except ValueError:
                return
            flow = self.flows.get(stream_id)
            if flow is not None:
                flow.send(payload)
        elif isinstance(event, StreamDataReceived):
            self._stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, StreamReset):
            self._stream_data(event.stream_id, b"", True)

    def _verify(self) -> None:
        error = client_certificate_error(self._quic)
        if error is None:
            self.trusted = True
            self.server.links.add(self)
            return
        self.server.refused += 1
        logger.warning(f"datagram connection from {self._peer()} refused: {error}")
        self._quic.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase=error)

    def _peer(self) -> str:
        paths = self._quic._network_paths
        return str(paths[0].addr) if paths else "?"

    def _stream_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        flow = self.flows.get(stream_id)
        if flow is not None:
            for payload in flow.records.feed(data):
                flow.send(payload)
            if ended:
                self._end(stream_id)
            return
        if stream_id in self.refused:
            if ended:
                self.refused.discard(stream_id)
            return
        if stream_id & 0x3:  # only streams the daemon opened, in both directions, are flows
            return
        opening = self.opening.get(stream_id)
        if opening is None:
            opening = self.opening[stream_id] = _Opening()
        opening.data += data
        opening.ended |= ended
        if opening.task is None:
            if len(opening.data) >= HEADER_SIZE:
                opening.task = asyncio.ensure_future(self._open(stream_id, opening))
            elif ended:
                del self.opening[stream_id]
                self._refuse(stream_id, "bad stream header: too short", peer_ended=True)

    async def _open(self, stream_id: int, opening: _Opening) -> None:
        try:
            header = decode(opening.data[:HEADER_SIZE])
        except HeaderError as exc:
            return self._refuse(stream_id, f"bad stream header: {exc}", opening.ended)
        try:
            permitted = await self.server.destinations.permits("udp", header.host, header.port)
        except EngineError as exc:
            return self._refuse(stream_id, f"cannot check the destination: {exc}", opening.ended)
        if not permitted:
            why = f"udp {header.host}:{header.port} is not published by any label here"
            return self._refuse(stream_id, why, opening.ended)
        flow = AgentFlow(self, stream_id)
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: flow, remote_addr=(header.host, header.port)
            )
        except OSError as exc:
            logger.warning(f"flow to {header.host}:{header.port} failed: {exc!r}")
            return self._refuse(stream_id, None, opening.ended)
        finally:
            self.opening.pop(stream_id, None)
        if self._closed.is_set() or header.probe or opening.ended:
            flow.close()
            if not self._closed.is_set():
                self._quic.send_stream_data(stream_id, PROBE_OK, end_stream=True)
                self.flush_soon()
            return
        self.flows[stream_id] = flow
        self.server.flows += 1
        self._quic.send_stream_data(stream_id, PROBE_OK)
        for payload in flow.records.feed(opening.data[HEADER_SIZE:]):
            flow.send(payload)
        self.flush_soon()

    def _refuse(self, stream_id: int, why: str | None, peer_ended: bool) -> None:
        """End a stream with no answer (``why``: a refusal, counted and logged); until the
        daemon's end of it arrives (``peer_ended``), later data on it is ignored."""
        self.opening.pop(stream_id, None)
        if why is not None:
            self.server.refused += 1
            logger.warning(f"flow from {self._peer()} refused: {why}")
        if self._closed.is_set():
            return
        if not peer_ended:
            self.refused.add(stream_id)
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        self.flush_soon()

    def _end(self, stream_id: int) -> None:
        flow = self.flows.pop(stream_id)
        flow.close()
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        self.flush_soon()

    def _terminated(self) -> None:
        self.server.links.discard(self)
        for opening in self.opening.values():
            if opening.task is not None:
                opening.task.cancel()
        self.opening.clear()
        for flow in self.flows.values():
            flow.close()
        self.flows.clear()


class DatagramServer:
    """The QUIC side of the agent port."""

    def __init__(self, configuration: QuicConfiguration, destinations: Destinations) -> None:
        self.configuration = configuration
        self.destinations = destinations
        self.links: set[AgentLink] = set()
        self.flows = 0  # relayed since start
        self.refused = 0  # connections and flows
        self._server: QuicServer | None = None

    @property
    def open_flows(self) -> int:
        return sum(len(link.flows) for link in self.links)

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(
            host,
            port,
            configuration=self.configuration,
            create_protocol=partial(AgentLink, server=self),
        )

    def close(self) -> None:
        for link in list(self.links):
            link.close()
        if self._server is not None:
            self._server.close()
