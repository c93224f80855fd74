"""Agent mTLS material: the files create_certs writes, their certificates, the operator
instructions, and real handshakes over loopback with server_context/client_context."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from godoxy_streams.agent.certs import (
    CertFiles,
    client_context,
    create_certs,
    instructions,
    server_context,
)
from godoxy_streams.errors import ConfigError

ALPN = ["godoxy-streams-stream/1", "http/1.1"]
NAMES = ["agent.test", "127.0.0.1", "::1"]
LOOPBACK = "127.0.0.1"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return create_certs(tmp_path_factory.mktemp("pki") / "certs", NAMES)


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """A second, unrelated CA with the same server names."""
    return create_certs(tmp_path_factory.mktemp("other") / "certs", NAMES)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- files --------------------------------------------------------------------------------


def test_files_and_modes(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "certs"
    files = create_certs(folder, NAMES)
    assert files == CertFiles(
        ca=folder / "ca.pem",
        ca_key=folder / "ca-key.pem",
        agent=folder / "agent.pem",
        agent_key=folder / "agent-key.pem",
        daemon=folder / "daemon.pem",
        daemon_key=folder / "daemon-key.pem",
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in files.all())
    assert _mode(folder) == 0o700
    for key in (files.ca_key, files.agent_key, files.daemon_key):
        assert _mode(key) == 0o600, key
        text = key.read_text()
        assert text.startswith("-----BEGIN PRIVATE KEY-----"), key  # PKCS8, unencrypted
        loaded = serialization.load_pem_private_key(text.encode(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        assert isinstance(loaded.curve, ec.SECP256R1)
    for cert in (files.ca, files.agent, files.daemon):
        assert _mode(cert) & 0o022 == 0, cert  # never writable by others
        assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")


def test_keys_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        files = create_certs(tmp_path / "certs", NAMES)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "certs") == 0o700
    assert {_mode(k) for k in (files.ca_key, files.agent_key, files.daemon_key)} == {0o600}


def test_existing_folder_is_used_and_its_mode_kept(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    files = create_certs(tmp_path, ["agent.test"])
    assert files.ca.parent == tmp_path
    assert _mode(tmp_path) == 0o755


@pytest.mark.parametrize("name", ["ca.pem", "ca-key.pem", "agent-key.pem", "daemon.pem"])
def test_refuses_to_overwrite(tmp_path: Path, name: str) -> None:
    existing = tmp_path / name
    existing.write_text("keep me")
    with pytest.raises(ConfigError, match=str(existing)):
        create_certs(tmp_path, NAMES)
    assert existing.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing else written


def test_second_run_refuses_and_keeps_the_first_set(tmp_path: Path) -> None:
    files = create_certs(tmp_path, NAMES)
    before = {p: p.read_bytes() for p in files.all()}
    with pytest.raises(ConfigError, match="already exists"):
        create_certs(tmp_path, NAMES)
    assert {p: p.read_bytes() for p in files.all()} == before


def test_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "agent-key.pem").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="agent-key.pem"):
        create_certs(tmp_path, NAMES)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "names",
    [[], [""], ["  "], ["two words"], ["bücher.example"]],
    ids=["none", "empty", "blank", "space", "non-ascii"],
)
def test_refuses_bad_server_names(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(ConfigError):
        create_certs(tmp_path / "certs", names)
    assert not (tmp_path / "certs").exists()


def test_refuses_a_single_string_as_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="list"):
        create_certs(tmp_path, "agent.test")


def test_refuses_non_positive_days(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="day"):
        create_certs(tmp_path, NAMES, days=0)


# --- certificates -------------------------------------------------------------------------


def test_ca_certificate(pki: CertFiles) -> None:
    ca = _cert(pki.ca)
    assert ca.subject == ca.issuer
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ca.verify_directly_issued_by(ca)


def test_agent_certificate(pki: CertFiles) -> None:
    agent = _cert(pki.agent)
    san = agent.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agent.test"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = agent.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not agent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    agent.verify_directly_issued_by(_cert(pki.ca))


def test_daemon_certificate(pki: CertFiles) -> None:
    daemon = _cert(pki.daemon)
    cn = daemon.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["godoxy-streams daemon"]
    eku = daemon.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        daemon.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    daemon.verify_directly_issued_by(_cert(pki.ca))


def test_certificates_are_not_signed_by_another_ca(pki: CertFiles, other_pki: CertFiles) -> None:
    other_ca = _cert(other_pki.ca)
    assert other_ca.subject != _cert(pki.ca).subject
    for path in (pki.agent, pki.daemon):
        with pytest.raises((ValueError, TypeError)):
            _cert(path).verify_directly_issued_by(other_ca)


@pytest.mark.parametrize(
    "name",
    [x509.DNSName("agent.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    ids=["dns", "ip"],
)
def test_agent_chain_verifies_as_a_server(
    pki: CertFiles, name: x509.DNSName | x509.IPAddress
) -> None:
    """cryptography's RFC 5280 verifier accepts ca -> agent for the agent's names."""
    store = Store([_cert(pki.ca)])
    verifier = PolicyBuilder().store(store).build_server_verifier(name)
    chain = verifier.verify(_cert(pki.agent), [])
    assert chain[-1] == _cert(pki.ca)


def test_validity_days(tmp_path: Path) -> None:
    files = create_certs(tmp_path, NAMES, days=30)
    for path in (files.ca, files.agent, files.daemon):
        cert = _cert(path)
        span = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 30 <= span.days <= 31, path


def test_bracketed_ipv6_and_duplicates(tmp_path: Path) -> None:
    files = create_certs(tmp_path, ["[::1]", "::1", "Agent.Test", "agent.test"])
    san = _cert(files.agent).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(san.value) == [
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("agent.test"),
    ]


# --- instructions -------------------------------------------------------------------------


def test_instructions_name_every_path_and_hold_no_key(pki: CertFiles) -> None:
    text = instructions(pki, "agent.test:8890")
    for path in pki.all():
        assert str(path) in text, path
    assert "PRIVATE KEY" not in text
    for path in pki.all():
        for line in path.read_text().splitlines()[1:-1]:  # no PEM body line of any file
            assert line not in text
    assert "godoxy-streams agent --tls-ca ca.pem --tls-cert agent.pem --tls-key agent-key.pem" in (
        text
    )
    assert "offline" in text


def test_instructions_config_snippet(pki: CertFiles) -> None:
    text = instructions(pki, "10.0.0.5:8890")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "docker:")
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    snippet = yaml.safe_load(textwrap.dedent("\n".join(lines[start:end])))
    assert snippet == {
        "docker": [
            {
                "url": "agent://10.0.0.5:8890",
                "tls_ca": "/etc/godoxy/ca.pem",
                "tls_cert": "/etc/godoxy/daemon.pem",
                "tls_key": "/etc/godoxy/daemon-key.pem",
            }
        ]
    }


# --- contexts -----------------------------------------------------------------------------


def test_context_settings(pki: CertFiles) -> None:
    server = server_context(pki.ca, pki.agent, pki.agent_key, ALPN)
    client = client_context(pki.ca, pki.daemon, pki.daemon_key, ALPN)
    for ctx in (server, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname
    assert [c["subject"] for c in server.get_ca_certs()] == [
        c["subject"] for c in client.get_ca_certs()
    ]
    assert len(server.get_ca_certs()) == 1  # the CA file only, not the system store


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
@pytest.mark.parametrize("factory", [server_context, client_context])
def test_missing_file_is_named(
    pki: CertFiles, tmp_path: Path, which: str, factory: Callable[..., ssl.SSLContext]
) -> None:
    args = {"ca": pki.ca, "cert": pki.agent, "key": pki.agent_key}
    args[which] = tmp_path / f"missing-{which}.pem"
    with pytest.raises(ConfigError, match=f"missing-{which}.pem"):
        factory(args["ca"], args["cert"], args["key"], ALPN)


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
@pytest.mark.parametrize("content", [b"", b"not pem at all\n", b"\xff\xfe\x00garbage"])
def test_invalid_file_is_named(pki: CertFiles, tmp_path: Path, which: str, content: bytes) -> None:
    args = {"ca": pki.ca, "cert": pki.agent, "key": pki.agent_key}
    bad = tmp_path / f"bad-{which}.pem"
    bad.write_bytes(content)
    args[which] = bad
    with pytest.raises(ConfigError, match=f"bad-{which}.pem"):
        server_context(args["ca"], args["cert"], args["key"], ALPN)


def test_key_in_place_of_certificate_is_named(pki: CertFiles) -> None:
    with pytest.raises(ConfigError, match="certificate .*agent-key.pem"):
        client_context(pki.ca, pki.agent_key, pki.agent_key, ALPN)
    with pytest.raises(ConfigError, match="CA certificate .*ca-key.pem"):
        client_context(pki.ca_key, pki.daemon, pki.daemon_key, ALPN)


def test_mismatched_key_is_refused(pki: CertFiles) -> None:
    with pytest.raises(ConfigError, match="daemon-key.pem.*agent.pem"):
        server_context(pki.ca, pki.agent, pki.daemon_key, ALPN)


def test_encrypted_key_is_refused_without_prompting(pki: CertFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pki.agent_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="encrypted-key.pem"):
        server_context(pki.ca, pki.agent, encrypted, ALPN)


# --- handshakes over loopback -------------------------------------------------------------


@dataclass
class Side:
    """What one end of a connection saw."""

    error: BaseException | None = None
    alpn: str | None = None
    peer: object = None  # getpeercert()
    received: bytes = b""
    version: str | None = None


def _connect(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str = "agent.test"
) -> tuple[Side, Side]:
    """One TLS connection over 127.0.0.1: the server answers b"pong" to b"ping"."""
    server, client = Side(), Side()
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except BaseException as exc:
            server.error = exc
            return
        conn.settimeout(TIMEOUT)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                server.alpn = tls.selected_alpn_protocol()
                server.peer = tls.getpeercert()
                server.version = tls.version()
                server.received = tls.recv(4)
                tls.sendall(b"pong")
        except BaseException as exc:
            server.error = exc
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                client.alpn = tls.selected_alpn_protocol()
                client.peer = tls.getpeercert()
                client.version = tls.version()
                tls.sendall(b"ping")
                client.received = tls.recv(4)
    except (OSError, ssl.SSLError) as exc:
        client.error = exc
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive()
    return server, client


def _contexts(pki: CertFiles, alpn: Sequence[str] = ALPN) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return (
        server_context(pki.ca, pki.agent, pki.agent_key, ALPN),
        client_context(pki.ca, pki.daemon, pki.daemon_key, alpn),
    )


def _subject_cn(peer: object) -> str:
    assert isinstance(peer, dict), peer
    subject = peer["subject"]
    assert isinstance(subject, tuple)
    return str(next(value for rdn in subject for key, value in rdn if key == "commonName"))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mutual_tls_handshake(pki: CertFiles, version: ssl.TLSVersion) -> None:
    server_ctx, client_ctx = _contexts(pki)
    client_ctx.maximum_version = version
    server, client = _connect(server_ctx, client_ctx)
    assert server.error is None and client.error is None, (server.error, client.error)
    assert server.alpn == client.alpn == "godoxy-streams-stream/1"
    assert server.received == b"ping" and client.received == b"pong"
    assert server.version == client.version == version.name.replace("_", ".")
    assert _subject_cn(server.peer) == "godoxy-streams daemon"  # the server saw the client cert
    assert _subject_cn(client.peer) == "godoxy-streams agent"


def test_alpn_http_only_client_gets_http(pki: CertFiles) -> None:
    server, client = _connect(*_contexts(pki, alpn=["http/1.1"]))
    assert server.error is None and client.error is None, (server.error, client.error)
    assert server.alpn == client.alpn == "http/1.1"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ip_address_names_verify(pki: CertFiles, host: str) -> None:
    """The daemon may address the agent by IP literal: the IP SANs satisfy hostname checks."""
    server, client = _connect(*_contexts(pki), server_hostname=host)
    assert server.error is None and client.error is None, (server.error, client.error)


def test_strict_x509_verification_accepts_the_chain(pki: CertFiles) -> None:
    """Newer Pythons default to VERIFY_X509_STRICT; the generated chain must pass it."""
    server_ctx, client_ctx = _contexts(pki)
    for ctx in (server_ctx, client_ctx):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server, client = _connect(server_ctx, client_ctx)
    assert server.error is None and client.error is None, (server.error, client.error)


def _refused(side: Side) -> bool:
    """The connection never carried application data to this side."""
    return side.error is not None or side.received not in (b"ping", b"pong")


def test_client_without_certificate_is_refused(pki: CertFiles) -> None:
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki.ca)
    client_ctx.set_alpn_protocols(ALPN)
    server, client = _connect(server_context(pki.ca, pki.agent, pki.agent_key, ALPN), client_ctx)
    assert isinstance(server.error, ssl.SSLError), server.error
    assert server.received == b""
    assert _refused(client)


def test_client_certificate_from_another_ca_is_refused(
    pki: CertFiles, other_pki: CertFiles
) -> None:
    server_ctx = server_context(pki.ca, pki.agent, pki.agent_key, ALPN)
    # Trusts the right CA for the server, but presents a certificate the agent's CA never issued.
    client_ctx = client_context(pki.ca, other_pki.daemon, other_pki.daemon_key, ALPN)
    server, client = _connect(server_ctx, client_ctx)
    assert isinstance(server.error, ssl.SSLCertVerificationError), server.error
    assert server.received == b""
    assert _refused(client)


def test_server_certificate_from_another_ca_is_refused(
    pki: CertFiles, other_pki: CertFiles
) -> None:
    server_ctx = server_context(other_pki.ca, other_pki.agent, other_pki.agent_key, ALPN)
    client_ctx = client_context(pki.ca, pki.daemon, pki.daemon_key, ALPN)
    server, client = _connect(server_ctx, client_ctx)
    assert isinstance(client.error, ssl.SSLCertVerificationError), client.error
    assert "certificate verify failed" in str(client.error)
    assert _refused(server)


def test_server_certificate_for_another_name_fails_hostname_check(pki: CertFiles) -> None:
    server, client = _connect(*_contexts(pki), server_hostname="other.test")
    assert isinstance(client.error, ssl.SSLCertVerificationError), client.error
    assert "Hostname mismatch" in (client.error.verify_message or "")
    assert _refused(server)


def test_daemon_certificate_cannot_serve(pki: CertFiles) -> None:
    """The client certificate (EKU clientAuth only) is refused as a server's, names aside."""
    server_ctx = server_context(pki.ca, pki.daemon, pki.daemon_key, ALPN)
    client_ctx = client_context(pki.ca, pki.daemon, pki.daemon_key, ALPN)
    client_ctx.check_hostname = False  # it has no names: leave only the purpose check
    server, client = _connect(server_ctx, client_ctx)
    assert isinstance(client.error, ssl.SSLCertVerificationError), client.error
    assert client.error.verify_message == "unsuitable certificate purpose"
    assert _refused(server)


def test_agent_certificate_cannot_be_a_client(pki: CertFiles) -> None:
    """The server certificate (EKU serverAuth only) is refused as a client's."""
    server_ctx = server_context(pki.ca, pki.agent, pki.agent_key, ALPN)
    client_ctx = client_context(pki.ca, pki.agent, pki.agent_key, ALPN)
    server, client = _connect(server_ctx, client_ctx)
    assert isinstance(server.error, ssl.SSLCertVerificationError), server.error
    assert server.error.verify_message == "unsuitable certificate purpose"
    assert _refused(client)
