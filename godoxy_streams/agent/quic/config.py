"""QUIC for the agent's datagram channel: both ends' configurations and the client-certificate
check.

Mutual TLS: aioquic verifies the server's certificate but has no public switch to ask a
client for one. The agent's connections are set to ask (``ask_for_client_certificate``, on
aioquic's TLS context before the handshake) and the certificate the client proved it holds
is verified against the CA (read once, at start) after the handshake
(``client_certificate_error``); nothing a connection sends is read before that. No session
tickets are issued, so no handshake can skip the certificate (no resumption, no 0-RTT).
The wire format of flows is in ``flow_wire``; the connections that carry them in
``flow_link``.
"""

from __future__ import annotations

from pathlib import Path

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import Alert, verify_certificate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from godoxy_streams.errors import ConfigError

ALPN_DATAGRAM = "godoxy-streams-datagram/1"
PACKET_SIZE = 1200  # QUIC's minimum: fits every path without discovering its MTU
FRAME_MAX = 65536  # the largest DATAGRAM frame either end accepts
IDLE_TIMEOUT = 30.0  # a connection with no packets this long ends (the daemon pings)


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
    """The agent's end; ``ca`` (read now) verifies clients' certificates
    (``client_certificate_error``)."""
    config = _configuration(False, cert, key)
    try:
        config.cadata = ca.read_bytes()
        if not x509.load_pem_x509_certificates(config.cadata):
            raise ValueError("no certificate in it")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"CA certificate {ca}: {exc}") from None
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
            certificate=cert, chain=tls._peer_certificate_chain, cadata=quic.configuration.cadata
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
