"""QUIC for the agent's datagram channel: both ends' configurations, the client-certificate
check, and the wire format of flows.

Mutual TLS: aioquic verifies the server's certificate but has no public switch to ask a
client for one. The agent's connections are set to ask (``ask_for_client_certificate``, on
aioquic's TLS context before the handshake) and the certificate the client proved it holds
is verified against the CA after the handshake (``client_certificate_error``); nothing a
connection sends is read before that. No session tickets are issued, so no handshake can
skip the certificate (no resumption, no 0-RTT).

Wire format (docs/agent-protocol.md, section 5): one QUIC stream per connection, opened by the
daemon, carries control messages both ways: a type byte and a 4-byte flow number, then, for
OPEN, the 78-byte stream header and, for DATA, a 2-byte length and a datagram too large for a
DATAGRAM frame. Every other datagram of a flow is one DATAGRAM frame: the flow number as a QUIC
variable-length integer, then the payload. One stream, however many flows: aioquic visits
every open stream for every packet it sends, so a stream per flow would cost each packet as
much as the number of sessions.
"""

from __future__ import annotations

import struct
from pathlib import Path

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import Alert, verify_certificate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from godoxy_streams.agent.header import HEADER_SIZE
from godoxy_streams.errors import ConfigError

ALPN_DATAGRAM = "godoxy-streams-datagram/1"
PACKET_SIZE = 1200  # QUIC's minimum: fits every path without discovering its MTU
DATAGRAM_ROOM = 1150  # flow number + payload of one DATAGRAM frame in a PACKET_SIZE packet
FRAME_MAX = 65536  # the largest DATAGRAM frame either end accepts
IDLE_TIMEOUT = 60.0  # a connection with no packets this long ends (the daemon pings)
MAX_FLOWS = 16384  # flows one daemon connection may have open (or opening) at once
QUEUE_MAX = 1024  # datagrams waiting for the congestion window; more are dropped
CONTROL_BUFFER_MAX = 4 << 20  # unacknowledged control bytes beyond which DATA is dropped


def client_configuration(ca: Path, cert: Path, key: Path, server_name: str) -> QuicConfiguration:
    """The daemon's end: verifies the agent (and its name) against ``ca``, presents ``cert``."""
    config = _configuration(True, cert, key)
    config.server_name = server_name
    try:
        config.load_verify_locations(cafile=str(ca))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CA certificate {ca}: {exc}") from None
    return config


def server_configuration(ca: Path, cert: Path, key: Path) -> QuicConfiguration:
    """The agent's end; ``ca`` verifies clients' certificates (``client_certificate_error``)."""
    config = _configuration(False, cert, key)
    config.cafile = str(ca)
    return config


def _configuration(is_client: bool, cert: Path, key: Path) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN_DATAGRAM],
        max_datagram_frame_size=FRAME_MAX,
        max_datagram_size=PACKET_SIZE,
        idle_timeout=IDLE_TIMEOUT,
    )
    try:
        config.load_cert_chain(cert, key)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"certificate {cert} / key {key}: {exc}") from None
    return config


def ask_for_client_certificate(quic: QuicConnection) -> None:
    """Make a new server-side connection ask for a client certificate (before the handshake
    starts)."""
    initialize = quic._initialize

    def initialize_and_ask(peer_cid: bytes) -> None:
        initialize(peer_cid)
        quic.tls._request_client_certificate = True

    setattr(quic, "_initialize", initialize_and_ask)  # noqa: B010 (a method of one instance)


def client_certificate_error(quic: QuicConnection) -> str | None:
    """Why the client of a completed handshake is not trusted; None when it is: a
    certificate for client authentication, valid now, issued by the configured CA."""
    tls = quic.tls
    cert = tls._peer_certificate
    if cert is None:
        return "no client certificate"
    try:
        verify_certificate(
            certificate=cert, chain=tls._peer_certificate_chain, cafile=quic.configuration.cafile
        )
    except Alert as exc:
        return f"client certificate: {exc}"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "the certificate is not for client authentication"
    return None


OPEN, ANSWER, END, DATA = 1, 2, 3, 4  # control message types
CONTROL = struct.Struct(">BI")  # type, flow number
LENGTH = struct.Struct(">H")  # of a DATA message's payload
SIZES = {OPEN: CONTROL.size + HEADER_SIZE, ANSWER: CONTROL.size, END: CONTROL.size}


class ProtocolError(ValueError):
    """A control message that breaks the wire format: the connection is closed."""


def message(kind: int, flow: int, body: bytes = b"") -> bytes:
    """A control message (OPEN with the stream header as ``body``; DATA with a datagram)."""
    if kind == DATA:
        return CONTROL.pack(DATA, flow) + LENGTH.pack(len(body)) + body
    return CONTROL.pack(kind, flow) + body


class ControlReader:
    """Reassembles control messages from the control stream, whatever its reads' split."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The complete messages so far, as (type, flow, body); ``ProtocolError`` when a
        type is unknown."""
        buffer = self.buffer + data if self.buffer else data
        out = []
        at = 0
        while len(buffer) - at >= CONTROL.size:
            kind, flow = CONTROL.unpack_from(buffer, at)
            if kind == DATA:
                if len(buffer) - at < CONTROL.size + LENGTH.size:
                    break
                size = CONTROL.size + LENGTH.size + LENGTH.unpack_from(buffer, at + CONTROL.size)[0]
                body_at = CONTROL.size + LENGTH.size
            elif kind in SIZES:
                size, body_at = SIZES[kind], CONTROL.size
            else:
                raise ProtocolError(f"unknown control message type {kind}")
            if len(buffer) - at < size:
                break
            out.append((kind, flow, buffer[at + body_at : at + size]))
            at += size
        self.buffer = buffer[at:]
        return out


def flow_prefix(flow: int) -> bytes:
    """The flow number that starts each of the flow's DATAGRAM frames."""
    if flow < 0x40:
        return bytes((flow,))
    if flow < 0x4000:
        return struct.pack(">H", 0x4000 | flow)
    if flow < 0x40000000:
        return struct.pack(">I", 0x80000000 | flow)
    return struct.pack(">Q", 0xC000000000000000 | flow)


def split_datagram(frame: bytes) -> tuple[int, bytes]:
    """(flow number, payload) of a DATAGRAM frame; ``ValueError`` when it is too short."""
    if not frame:
        raise ValueError("empty frame")
    size = 1 << (frame[0] >> 6)
    if len(frame) < size:
        raise ValueError("truncated flow number")
    return int.from_bytes(frame[:size], "big") & ((1 << (8 * size - 2)) - 1), frame[size:]


class FlowLink(QuicConnectionProtocol):
    """A QUIC connection that carries flows (both ends): control messages on its one stream,
    datagrams as frames, one transmit per loop turn however many were sent in it."""

    CONTROL_STREAM = 0  # the first stream the daemon opens

    def __init__(self, quic: QuicConnection, **kwargs: object) -> None:
        super().__init__(quic)
        self.dropped = 0  # datagrams dropped while the congestion window was full
        self.control = ControlReader()
        self.violated = False  # closing for a protocol violation: read nothing more
        self._flush_pending = False

    def send_message(self, kind: int, flow: int, body: bytes = b"") -> None:
        self._quic.send_stream_data(self.CONTROL_STREAM, message(kind, flow, body))
        self.flush_soon()

    def send_datagram(self, flow: int, prefix: bytes, payload: bytes) -> None:
        quic = self._quic
        if len(prefix) + len(payload) <= DATAGRAM_ROOM:
            if len(quic._datagrams_pending) >= QUEUE_MAX:
                self.dropped += 1
                return
            quic.send_datagram_frame(prefix + payload)
            self.flush_soon()
            return
        stream = quic._streams.get(self.CONTROL_STREAM)
        if stream is not None:
            sender = stream.sender
            if sender._buffer_stop - sender._buffer_start > CONTROL_BUFFER_MAX:
                self.dropped += 1
                return
        self.send_message(DATA, flow, payload)

    def datagram_received(self, data: bytes | str, addr: NetworkAddress) -> None:
        """As aioquic's, but the answer waits for the end of the loop turn, so the packets
        that arrived together are answered (and acknowledged) together."""
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.flush_soon()

    def flush_soon(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        if self.violated and not isinstance(event, ConnectionTerminated):
            return
        if isinstance(event, DatagramFrameReceived):
            try:
                flow, payload = split_datagram(event.data)
            except ValueError:
                return
            self.on_datagram(flow, payload)
        elif isinstance(event, StreamDataReceived):
            if event.stream_id != self.CONTROL_STREAM:
                return self.protocol_error(f"data on stream {event.stream_id}")
            try:
                messages = self.control.feed(event.data)
            except ProtocolError as exc:
                return self.protocol_error(str(exc))
            for kind, flow, body in messages:
                if self.violated:
                    return
                self.on_message(kind, flow, body)
            if event.end_stream:
                self.protocol_error("the control stream ended")
        elif isinstance(event, StreamReset):
            self.protocol_error("the control stream was reset")
        elif isinstance(event, ConnectionTerminated):
            self.on_terminated(event.reason_phrase or str(event.error_code))

    def protocol_error(self, why: str) -> None:
        self.violated = True
        self.close(error_code=QuicErrorCode.PROTOCOL_VIOLATION, reason_phrase=why)

    def on_datagram(self, flow: int, payload: bytes) -> None:
        raise NotImplementedError

    def on_message(self, kind: int, flow: int, body: bytes) -> None:
        raise NotImplementedError

    def on_terminated(self, why: str) -> None:
        raise NotImplementedError
