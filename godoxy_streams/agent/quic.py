"""QUIC for the agent's datagram channel: both ends' configurations, the client-certificate
check, and the framing of a flow's datagrams.

Mutual TLS: aioquic verifies the server's certificate but has no public switch to ask a
client for one. The agent's connections are set to ask (``ask_for_client_certificate``, on
aioquic's TLS context before the handshake) and the certificate the client proved it holds
is verified against the CA after the handshake (``client_certificate_error``); nothing a
connection sends is read before that. No session tickets are issued, so no handshake can
skip the certificate (no resumption, no 0-RTT).

Framing (see docs/agent-protocol.md): a flow is one bidirectional QUIC stream, opened by the
daemon with the 78-byte stream header; the agent answers ``PROBE_OK`` on it. A datagram of a
flow travels as one QUIC DATAGRAM frame: the flow's number (its stream id / 4, a QUIC
variable-length integer) then the payload. One too large for a frame travels on the flow's
stream instead, as a 2-byte length and the payload.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import Alert, verify_certificate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from godoxy_streams.errors import ConfigError

ALPN_DATAGRAM = "godoxy-streams-datagram/1"
PACKET_SIZE = 1200  # QUIC's minimum: fits every path without discovering its MTU
DATAGRAM_ROOM = 1150  # flow number + payload of one DATAGRAM frame in a PACKET_SIZE packet
FRAME_MAX = 65536  # the largest DATAGRAM frame either end accepts
IDLE_TIMEOUT = 60.0  # a connection with no packets this long ends (the daemon pings)
MAX_FLOWS = 4096  # flows one daemon connection may have open at once
QUEUE_MAX = 1024  # datagrams waiting for the congestion window; more are dropped
RECORD = struct.Struct(">H")  # a datagram on the flow's stream: its length, then the bytes


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
    """Make a new server-side connection ask for a client certificate, and let its client
    open ``MAX_FLOWS`` flows at once (both before the handshake starts)."""
    quic._local_max_streams_bidi.value = MAX_FLOWS
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


def flow_prefix(stream_id: int) -> bytes:
    """The flow number that starts each of the flow's DATAGRAM frames."""
    n = stream_id >> 2
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    return struct.pack(">Q", 0xC000000000000000 | n)


def split_datagram(frame: bytes) -> tuple[int, bytes]:
    """(stream id, payload) of a DATAGRAM frame; ``ValueError`` when it is too short."""
    if not frame:
        raise ValueError("empty frame")
    size = 1 << (frame[0] >> 6)
    if len(frame) < size:
        raise ValueError("truncated flow number")
    n = int.from_bytes(frame[:size], "big") & ((1 << (8 * size - 2)) - 1)
    return n << 2, frame[size:]


class Records:
    """Reassembles the length-prefixed datagrams of a flow's stream (any split)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self.buffer + data
        out = []
        at = 0
        while len(buffer) - at >= 2:
            (size,) = RECORD.unpack_from(buffer, at)
            if len(buffer) - at - 2 < size:
                break
            out.append(buffer[at + 2 : at + 2 + size])
            at += 2 + size
        self.buffer = buffer[at:]
        return out


def record(payload: bytes) -> bytes:
    """A datagram as it travels on a flow's stream."""
    return RECORD.pack(len(payload)) + payload


class FlowLink(QuicConnectionProtocol):
    """A QUIC connection that carries flows (both ends): sends a flow's datagram as a frame
    or a record, and transmits once per loop turn however many were sent in it."""

    def __init__(self, quic: QuicConnection, **kwargs: object) -> None:
        super().__init__(quic)
        self.dropped = 0  # datagrams dropped while the congestion window was full
        self._flush_pending = False

    def send_datagram(self, stream_id: int, prefix: bytes, payload: bytes) -> None:
        quic = self._quic
        if len(prefix) + len(payload) <= DATAGRAM_ROOM:
            if len(quic._datagrams_pending) >= QUEUE_MAX:
                self.dropped += 1
                return
            quic.send_datagram_frame(prefix + payload)
        else:
            quic.send_stream_data(stream_id, record(payload))
        self.flush_soon()

    def flush_soon(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.transmit()
