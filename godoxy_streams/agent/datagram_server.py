"""The agent's datagram channel: a QUIC server (mutual TLS, ALPN ``godoxy-streams-datagram/1``)
on the agent's port number, over UDP, that relays UDP flows to the host's containers.

A daemon opens a flow with an OPEN message (the stream header, ``header``) on the connection's
control stream. Once the destination passes the same allow-list as a TCP tunnel (UDP this
time), the agent opens a UDP socket connected to it, answers ANSWER, and relays: the flow's
DATAGRAM frames (and DATA messages, for datagrams too large for a frame) to the destination,
replies back the same way. END from the daemon ends the flow; a refused header or destination,
or a socket that cannot be opened, is answered END alone. For a probe header the agent
answers ANSWER, then END at once. See ``quic`` for the wire format and the certificates.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import HandshakeCompleted, QuicEvent
from aioquic.quic.packet import QuicErrorCode
from loguru import logger

from godoxy_streams.agent.destinations import Destinations
from godoxy_streams.agent.header import HeaderError, decode
from godoxy_streams.agent.quic import (
    ANSWER,
    DATA,
    END,
    MAX_FLOWS,
    OPEN,
    FlowLink,
    ask_for_client_certificate,
    client_certificate_error,
    flow_prefix,
)
from godoxy_streams.errors import EngineError


class AgentFlow(asyncio.DatagramProtocol):
    """One flow on the agent: a UDP socket connected to the destination."""

    def __init__(self, link: AgentLink, flow: int) -> None:
        self.link = link
        self.flow = flow
        self.prefix = flow_prefix(flow)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.link.send_datagram(self.flow, self.prefix, data)

    def error_received(self, exc: Exception) -> None:
        """An ICMP error of an earlier send (e.g. port unreachable): UDP carries on."""

    def send(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(payload)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AgentLink(FlowLink):
    """One daemon's QUIC connection to the agent."""

    def __init__(self, quic: QuicConnection, *, server: DatagramServer, **_: object) -> None:
        super().__init__(quic)
        ask_for_client_certificate(quic)
        self.server = server
        self.trusted = False
        self.flows: dict[int, AgentFlow] = {}
        self.opening: dict[int, asyncio.Task[None]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self._verify()
        elif self.trusted:  # nothing is read before the client's certificate is verified
            super().quic_event_received(event)

    def _verify(self) -> None:
        error = client_certificate_error(self._quic)
        if error is None:
            self.trusted = True
            self.server.links.add(self)
            return
        self.server.refused += 1
        logger.warning(f"datagram connection from {self._peer()} refused: {error}")
        self.close(error_code=QuicErrorCode.CONNECTION_REFUSED, reason_phrase=error)

    def _peer(self) -> str:
        paths = self._quic._network_paths
        return str(paths[0].addr) if paths else "?"

    def on_datagram(self, flow: int, payload: bytes) -> None:
        sink = self.flows.get(flow)
        if sink is not None:
            sink.send(payload)

    def on_message(self, kind: int, flow: int, body: bytes) -> None:
        if kind == DATA:
            self.on_datagram(flow, body)
        elif kind == OPEN:
            if flow in self.flows or flow in self.opening:
                return self.protocol_error(f"flow {flow} opened twice")
            if len(self.flows) + len(self.opening) >= MAX_FLOWS:
                return self._refuse(flow, f"{MAX_FLOWS} flows open already")
            self.opening[flow] = asyncio.ensure_future(self._open(flow, body))
        elif kind == END:
            task = self.opening.pop(flow, None)
            if task is not None:
                task.cancel()
            sink = self.flows.pop(flow, None)
            if sink is not None:
                sink.close()
        else:
            self.protocol_error(f"unexpected control message type {kind}")

    async def _open(self, flow: int, raw: bytes) -> None:
        try:
            try:
                header = decode(raw)
            except HeaderError as exc:
                return self._refuse(flow, f"bad stream header: {exc}")
            try:
                permitted = await self.server.destinations.permits("udp", header.host, header.port)
            except EngineError as exc:
                return self._refuse(flow, f"cannot check the destination: {exc}")
            if not permitted:
                why = f"udp {header.host}:{header.port} is not published by any label here"
                return self._refuse(flow, why)
            sink = AgentFlow(self, flow)
            try:
                await self._loop.create_datagram_endpoint(
                    lambda: sink, remote_addr=(header.host, header.port)
                )
            except OSError as exc:
                logger.warning(f"flow to {header.host}:{header.port} failed: {exc!r}")
                return self._refuse(flow, None)
        finally:
            self.opening.pop(flow, None)
        if self._closed.is_set():
            sink.close()
            return
        self.send_message(ANSWER, flow)
        if header.probe:
            sink.close()
            self.send_message(END, flow)
            return
        self.flows[flow] = sink
        self.server.flows += 1

    def _refuse(self, flow: int, why: str | None) -> None:
        """Answer END alone (``why``: a refusal, counted and logged)."""
        if why is not None:
            self.server.refused += 1
            logger.warning(f"flow from {self._peer()} refused: {why}")
        if not self._closed.is_set():
            self.send_message(END, flow)

    def end(self, flow: int) -> None:
        """End a flow from the agent's side."""
        sink = self.flows.pop(flow, None)
        if sink is not None:
            sink.close()
            self.send_message(END, flow)

    def on_terminated(self, why: str) -> None:
        self.server.links.discard(self)
        for task in self.opening.values():
            task.cancel()
        self.opening.clear()
        for sink in self.flows.values():
            sink.close()
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
