"""TLS helpers for tests: real ClientHellos from Python's ``ssl`` (MemoryBIO, no socket),
re-fragmenting a hello into several records, the captured ``openssl s_client`` hellos, and
contexts over certificates made by ``agent.certs.create_certs`` (server: the "agent"
certificate, client: the "daemon" one, both from one CA)."""

from __future__ import annotations

import ssl
from pathlib import Path

from godoxy_streams.agent.certs import CertFiles, create_certs

DATA = Path(__file__).parent / "unit" / "data" / "tls"
# openssl s_client hellos captured once (OpenSSL 3.0): (file, server name, ALPN, TLS 1.3)
CAPTURED = [
    ("openssl-tls13-sni-alpn.bin", "a.example.test", ("h2", "http/1.1"), True),
    ("openssl-tls12-sni.bin", "b.example.test", (), False),
    ("openssl-no-sni.bin", None, (), True),
]


def client_hello(
    server_hostname: str | None,
    *,
    maximum: ssl.TLSVersion | None = None,
    alpn: list[str] | None = None,
) -> bytes:
    """The first flight of a Python ``ssl`` client (one ClientHello record)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def refragment(flight: bytes, size: int) -> bytes:
    """The same handshake message in records of ``size`` payload bytes."""
    version = flight[1:3]
    message = flight[5 : 5 + int.from_bytes(flight[3:5])]
    out = bytearray()
    for i in range(0, len(message), size):
        part = message[i : i + size]
        out += b"\x16" + version + len(part).to_bytes(2) + part
    return bytes(out)


def captured(name: str) -> bytes:
    return (DATA / name).read_bytes()


def certificates(folder: Path, *names: str) -> CertFiles:
    """A CA, a server certificate for ``names`` and a client certificate, in ``folder``."""
    return create_certs(folder, list(names))


def server_context(files: CertFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.agent, files.agent_key)
    return ctx


def client_context(ca: Path, files: CertFiles | None = None) -> ssl.SSLContext:
    """A client trusting ``ca``; with ``files``, presenting their client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if files is not None:
        ctx.load_cert_chain(files.daemon, files.daemon_key)
    return ctx
