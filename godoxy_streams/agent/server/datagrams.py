"""The agent's datagram channel: a QUIC server (mutual TLS, ALPN ``godoxy-streams-datagram/1``)
on the agent's port number, over UDP, that relays UDP flows to the host's containers.

A daemon opens a flow with an OPEN message (the stream header, ``header``) on the connection's
control stream. Once the destination passes the same allow-list as a TCP tunnel (UDP this
time), the agent opens a UDP socket connected to it, answers ANSWER, and relays: the flow's
DATAGRAM frames (and DATA messages, for datagrams too large for a frame) to the destination,
replies back the same way. END from the daemon ends the flow; a refused header or destination,
or a socket that cannot be opened, is answered END alone. For a probe header the agent
answers ANSWER, then END at once. New clients must first echo a Retry token (no state for
spoofed sources); ``handshakes`` bounds the handshakes under way. Open flows whose destination
no label publishes any more are ended (``RECHECK``). See ``quic`` for
the certificates, ``flow_wire`` for the wire format.
"""

from __future__ import annotations

import asyncio
import socket
from functools import partial

from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent
from aioquic.quic.packet import QuicErrorCode
from loguru import logger

from godoxy_streams.agent.quic.config import ask_for_client_certificate, client_certificate_error
from godoxy_streams.agent.quic.flow_link import FlowLink, SocketFlow
from godoxy_streams.agent.quic.socket import QuicSocket, bind_quic
from godoxy_streams.agent.server.destinations import Destinations
from godoxy_streams.agent.server.handshakes import (
    HANDSHAKE_TIMEOUT,
    AdmittingQuicServer,
    Handshakes,
)
from godoxy_streams.agent.wire.flow_wire import ANSWER, END, OPEN
from godoxy_streams.agent.wire.header import HeaderError, decode
from godoxy_streams.errors import EngineError

MAX_FLOWS = 16384  # flows one daemon connection may have open (or opening) at once
RECHECK = 5.0  # seconds between checks that open flows' destinations are still published


class AgentLink(FlowLink):
    """One daemon's QUIC connection to the agent."""

    def __init__(self, quic: QuicConnection, *, server: DatagramServer, **_: object) -> None:
        super().__init__(quic)
        ask_for_client_certificate(quic)
        self.server = server
        self.trusted = False
        self.flows: dict[int, SocketFlow] = {}
        self.targets: dict[int, tuple[str, int]] = {}  # each open flow's destination
        self.opening: dict[int, asyncio.Task[None]] = {}
        self.source: str | None = None  # the client's address while its handshake counts
        self._too_slow: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, QuicSocket):
            transport = transport.pinned()  # replies from the address this client dialled
        super().connection_made(transport)

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        if self.source is None and not self.trusted and self._too_slow is None:
            self.source = str(addr[0])
            self.server.handshakes.begin(self.source)
            self._too_slow = self._loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timed_out)
        super().datagram_received(data, addr)

    def _handshake_over(self) -> None:
        if self.source is not None:
            self.server.handshakes.end(self.source)
            self.source = None
        if self._too_slow is not None:
            self._too_slow.cancel()

    def _handshake_timed_out(self) -> None:
        self._handshake_over()
        if not self.trusted:
            self._refuse_connection("handshake not completed in time")

    def _refuse_connection(self, why: str) -> None:
        self.server.refused += 1
        logger.warning(f"datagram connection from {self._peer()} refused: {why}")
        self.close_with(QuicErrorCode.CONNECTION_REFUSED, why)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self._handshake_over()
            if self.trusted:
                super().quic_event_received(event)
        elif isinstance(event, HandshakeCompleted):
            self._verify()
        elif self.trusted:  # nothing is read before the client's certificate is verified
            super().quic_event_received(event)

    def _verify(self) -> None:
        self._handshake_over()
        try:
            error = client_certificate_error(self._quic)
        except Exception as exc:  # a certificate the verifier chokes on is not trusted
            error = f"client certificate: {exc!r}"
        if error is None:
            self.trusted = True
            self.server.links.add(self)
            return
        self._refuse_connection(error)

    def _peer(self) -> str:
        paths = self._quic._network_paths
        return str(paths[0].addr) if paths else "?"

    def on_datagram(self, flow: int, payload: bytes) -> None:
        sink = self.flows.get(flow)
        if sink is not None:
            sink.deliver(payload)

    def on_message(self, kind: int, flow: int, body: bytes) -> None:
        if kind == OPEN:
            if flow in self.flows or flow in self.opening:
                return self.protocol_error(f"flow {flow} opened twice")
            if len(self.flows) + len(self.opening) >= MAX_FLOWS:
                return self._refuse(flow, f"{MAX_FLOWS} flows open already")
            self.opening[flow] = asyncio.ensure_future(self._open(flow, body))
        elif kind == END:
            task = self.opening.pop(flow, None)
            if task is not None:
                task.cancel()
            self._drop(flow)
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
            target = (header.host, header.port)
            try:
                sock = await _connected_socket(*target)
            except OSError as exc:
                logger.warning(f"flow to {header.host}:{header.port} failed: {exc!r}")
                return self._refuse(flow, None)
        finally:
            self.opening.pop(flow, None)
        sink = SocketFlow(self, flow, sock)
        if self._closed.is_set() or self.violated:
            sink.close()
            return
        self.send_message(ANSWER, flow)
        if header.probe:
            sink.close()
            self.send_message(END, flow)
            return
        self.flows[flow] = sink
        self.targets[flow] = target
        sink.start()
        self.server.flows += 1

    def _refuse(self, flow: int, why: str | None) -> None:
        """Answer END alone (``why``: a refusal, counted and logged)."""
        if why is not None:
            self.server.refused += 1
            logger.warning(f"flow from {self._peer()} refused: {why}")
        if not self._closed.is_set():
            self.send_message(END, flow)

    def _drop(self, flow: int) -> bool:
        self.targets.pop(flow, None)
        sink = self.flows.pop(flow, None)
        if sink is None:
            return False
        sink.close()
        return True

    def end(self, flow: int) -> None:
        """End a flow from the agent's side."""
        if self._drop(flow):
            self.send_message(END, flow)

    def on_terminated(self, why: str) -> None:
        self.server.links.discard(self)
        self.server.dropped_before += self.dropped
        for task in self.opening.values():
            task.cancel()
        self.opening.clear()
        for flow in list(self.flows):
            self._drop(flow)


async def _connected_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to (host, port)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


class DatagramServer:
    """The QUIC side of the agent port."""

    def __init__(self, configuration: QuicConfiguration, destinations: Destinations) -> None:
        self.configuration = configuration
        self.destinations = destinations
        self.links: set[AgentLink] = set()
        self.handshakes = Handshakes()
        self.flows = 0  # relayed since start
        self.refused = 0  # connections and flows
        self.dropped_before = 0  # datagrams dropped by connections that have ended
        self._socket: QuicSocket | None = None
        self._server: QuicServer | None = None
        self._recheck: asyncio.Task[None] | None = None

    @property
    def open_flows(self) -> int:
        return sum(len(link.flows) for link in self.links)

    @property
    def dropped(self) -> int:
        return self.dropped_before + sum(link.dropped for link in self.links)

    async def start(self, host: str, port: int) -> None:
        self._server = AdmittingQuicServer(
            configuration=self.configuration,
            create_protocol=partial(AgentLink, server=self),
            retry=True,
            handshakes=self.handshakes,
        )
        self._socket = await bind_quic(host, port, self._server)
        self._recheck = asyncio.ensure_future(self._recheck_flows())

    async def _recheck_flows(self) -> None:
        """End the flows whose destination no running container's labels publish any more
        (an open flow is a socket to an address, which Docker may give to another
        container)."""
        while True:
            await asyncio.sleep(RECHECK)
            if not any(link.flows for link in self.links):
                continue
            try:
                await self.destinations.refresh()
            except EngineError:
                continue  # no answer is no news: the flows stay until the engine answers
            allowed = self.destinations.allowed
            for link in list(self.links):
                for flow, (host, port) in list(link.targets.items()):
                    if ("udp", host, port) not in allowed:
                        logger.info(f"flow to {host}:{port} ended: no label publishes it now")
                        link.end(flow)

    def close(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        for link in list(self.links):
            link.close()
            link.on_terminated("the agent stopped")  # its flows' sockets close now
        if self._server is not None:
            self._server.close()
