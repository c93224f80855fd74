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


def certificate_set(base: Path, **names: str) -> dict[str, CertFiles]:
    """``certificates`` for each keyword: its folder under ``base``, its comma-separated
    server names (``a="a.test,b.test"``)."""
    return {key: certificates(base / key, *value.split(",")) for key, value in names.items()}


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


def install(folder: Path, stem: str, files: CertFiles, *, bundle: bool = False) -> Path:
    """Put the server certificate of ``files`` into a certificate folder as ``stem``: a
    ``.crt``/``.key`` pair, or one ``.pem`` bundle. Returns the certificate file."""
    folder.mkdir(parents=True, exist_ok=True)
    if bundle:
        path = folder / f"{stem}.pem"
        path.write_bytes(files.agent.read_bytes() + files.agent_key.read_bytes())
        return path
    path = folder / f"{stem}.crt"
    path.write_bytes(files.agent.read_bytes())
    (folder / f"{stem}.key").write_bytes(files.agent_key.read_bytes())
    return path


def handshake(
    client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str | None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A TLS handshake in memory (no socket). A failure raises the ssl.SSLError the client
    sees when it has one (an alert), else the server's (TLS 1.3 clients finish first, so a
    server refusing the client's certificate raises its own)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {c: False, s: False}
    for _ in range(20):
        for obj in (c, s):
            try:
                if not done[obj]:
                    obj.do_handshake()
                    done[obj] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                if obj is c:
                    raise
                c_in.write(s_out.read())
                try:
                    c.do_handshake()
                    c.read(1)
                except ssl.SSLWantReadError:
                    pass
                raise
            s_in.write(c_out.read())
            c_in.write(s_out.read())
        if all(done.values()):
            return c, s
    raise AssertionError("the handshake did not finish")
