"""Mutual TLS for the agent link: create a private CA with an agent and a daemon certificate, and
build the server and client ``ssl.SSLContext`` objects that use them."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from godoxy_streams.errors import ConfigError

DAEMON_CN = "godoxy-streams daemon"
AGENT_CN = "godoxy-streams agent"
_BACKDATE = datetime.timedelta(minutes=5)  # tolerate small clock skew between hosts
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class CertFiles:
    """Where ``create_certs`` wrote each certificate and key."""

    ca: Path
    ca_key: Path
    agent: Path
    agent_key: Path
    daemon: Path
    daemon_key: Path

    @classmethod
    def in_folder(cls, folder: Path) -> CertFiles:
        return cls(
            ca=folder / "ca.pem",
            ca_key=folder / "ca-key.pem",
            agent=folder / "agent.pem",
            agent_key=folder / "agent-key.pem",
            daemon=folder / "daemon.pem",
            daemon_key=folder / "daemon-key.pem",
        )

    def all(self) -> tuple[Path, ...]:
        return (self.ca, self.ca_key, self.agent, self.agent_key, self.daemon, self.daemon_key)


def create_certs(folder: Path, server_names: Sequence[str], *, days: int = 825) -> CertFiles:
    """Create a CA, an agent (server) and a daemon (client) certificate in ``folder``.

    ``server_names`` are the names and IP addresses the daemon uses to reach the agent; the
    agent certificate is valid for exactly those. Existing files are never overwritten.
    """
    if days < 1:
        raise ConfigError(f"certificate validity must be at least 1 day, not {days}")
    sans = _subject_alt_names(server_names)
    files = CertFiles.in_folder(folder)
    _make_folder(folder)
    for path in files.all():
        if os.path.lexists(path):
            raise ConfigError(f"{path} already exists; refusing to overwrite it")

    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - _BACKDATE, now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"godoxy-streams CA {secrets.token_hex(4)}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    agent_key, agent_cert = leaf(AGENT_CN, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    daemon_key, daemon_cert = leaf(DAEMON_CN, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    contents = (
        (files.ca, _cert_pem(ca_cert), _CERT_MODE),
        (files.ca_key, _key_pem(ca_key), _KEY_MODE),
        (files.agent, _cert_pem(agent_cert), _CERT_MODE),
        (files.agent_key, _key_pem(agent_key), _KEY_MODE),
        (files.daemon, _cert_pem(daemon_cert), _CERT_MODE),
        (files.daemon_key, _key_pem(daemon_key), _KEY_MODE),
    )
    written: list[Path] = []
    try:
        for path, data, mode in contents:
            _write_new(path, data, mode)
            written.append(path)
    except BaseException:
        for path in written:  # no half-made set: a later run would refuse to overwrite it
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return files


def instructions(files: CertFiles, agent_address: str) -> str:
    """What to copy where, as plain text for the operator. Names files; never holds keys."""
    port = agent_address.rpartition(":")[2]
    return f"""\
Certificates created.

On the agent host, copy:
    {files.ca}
    {files.agent}
    {files.agent_key}   (private: mode 0600, readable only by the agent)
and start the agent with them, e.g.:
    godoxy-streams agent --tls-ca ca.pem --tls-cert agent.pem --tls-key agent-key.pem
It listens on {port}/tcp and {port}/udp (UDP flows over QUIC); the daemon must reach both.

On the daemon host, copy:
    {files.ca}
    {files.daemon}
    {files.daemon_key}   (private: mode 0600, readable only by the daemon)
for example to /etc/godoxy/, and add the agent to the daemon configuration:

    docker:
      - url: agent://{agent_address}
        tls_ca: /etc/godoxy/ca.pem
        tls_cert: /etc/godoxy/daemon.pem
        tls_key: /etc/godoxy/daemon-key.pem

The host in the url must be one of the names the agent certificate was created for.

Keep {files.ca_key} offline, on neither host: it signs certificates that both sides trust.
"""


def server_context(ca: Path, cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    """A TLS server context that requires a client certificate issued by ``ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, ca, cert, key, alpn)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0  # the daemon never resumes a session: tickets would cost each handshake
    return ctx


def client_context(ca: Path, cert: Path, key: Path, alpn: Sequence[str]) -> ssl.SSLContext:
    """A TLS client context that verifies the server (and its name) against ``ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _configure(ctx, ca, cert, key, alpn)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _configure(ctx: ssl.SSLContext, ca: Path, cert: Path, key: Path, alpn: Sequence[str]) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca_data = _read(ca, "CA certificate")
    try:
        x509.load_pem_x509_certificates(ca_data)
        ctx.load_verify_locations(cadata=ca_data.decode("ascii"))
    except (ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"CA certificate {ca} is not a PEM certificate: {exc}") from None
    try:
        x509.load_pem_x509_certificates(_read(cert, "certificate"))
    except ValueError as exc:
        raise ConfigError(f"certificate {cert} is not a PEM certificate: {exc}") from None
    try:
        serialization.load_pem_private_key(_read(key, "private key"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the key is encrypted; the agent link needs an unencrypted key.
        raise ConfigError(f"private key {key} is not an unencrypted PEM key: {exc}") from None
    try:
        # The password callback keeps OpenSSL from prompting on a terminal.
        ctx.load_cert_chain(cert, key, password=_no_password)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"private key {key} does not match certificate {cert}: {exc}") from None
    ctx.set_alpn_protocols(list(alpn))


def _no_password() -> str:
    raise ValueError("encrypted private keys are not supported")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _subject_alt_names(server_names: Sequence[str]) -> x509.SubjectAlternativeName:
    if isinstance(server_names, str):
        raise ConfigError("server names must be a list of names, not one string")
    entries: list[x509.GeneralName] = []
    for raw in server_names:
        name = raw.strip()
        if not name or any(c.isspace() for c in name):
            raise ConfigError(f"server name {raw!r} is empty or has spaces")
        literal = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(literal))
        except ValueError:
            if not name.isascii():
                raise ConfigError(
                    f"server name {raw!r} is not ASCII; give its IDNA (xn--) form"
                ) from None
            entry = x509.DNSName(name.lower())
        if entry not in entries:
            entries.append(entry)
    if not entries:
        raise ConfigError("at least one server name (DNS name or IP address) is needed")
    return x509.SubjectAlternativeName(entries)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=False)
    except FileExistsError:
        if not folder.is_dir():
            raise ConfigError(f"{folder} exists and is not a directory") from None
        return
    except OSError as exc:
        raise ConfigError(f"cannot create {folder}: {exc.strerror or exc}") from None
    folder.chmod(_DIR_MODE)  # mkdir's mode is reduced by the umask


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file ``path`` that has ``mode`` from the moment it exists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            if mode == _KEY_MODE and hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode)  # exactly 0600 whatever the umask
            out.write(data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
