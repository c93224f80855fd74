"""The certificates TLS termination serves, from the operator's configuration only.

``CertificateDirectory`` reads a folder of ``NAME.crt`` + ``NAME.key`` pairs and PEM bundles
(``NAME.pem``: certificate chain and key in one file); a certificate serves the DNS names of
its own subjectAltName (wildcards included), whatever the file is called; ``default.*``
also serves ClientHellos whose name no certificate has. Where several certificates name
the same server name, the one valid longest wins. ``refresh`` reloads when a file changed
(size, mtime or inode; a poll every few seconds, and the daemon's SIGHUP, call it),
``reload`` always does. A file that cannot be used is an error naming it (in ``errors`` and
the log), never an exception: the certificate it held before stays in service.

``CertificateSource`` is what the rest needs of a store, so another provider (ACME, say)
can stand in for the folder. ``TLSContexts`` turns a source into ``ssl.SSLContext`` objects:
one per certificate, built when it is loaded, plus one per certificate and client CA
(``tls_client_ca``: the client must present a certificate that CA issued), built on first
use and kept until the certificate or the CA file changes.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from loguru import logger

from godoxy_streams.errors import ConfigError
from godoxy_streams.server_names import NamePattern, NameTable, sni_pattern

CERT_SUFFIXES = (".crt", ".pem", ".cer")
KEY_SUFFIX = ".key"
DEFAULT_STEM = "default"
Signature = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True, eq=False)
class Certificate:
    """One usable certificate chain and key, and the server context that serves it."""

    cert_file: Path
    key_file: Path  # the same file for a PEM bundle
    names: tuple[NamePattern, ...]  # its subjectAltName DNS names
    not_after: datetime.datetime
    context: ssl.SSLContext

    def new_context(self) -> ssl.SSLContext:
        """A fresh server context with this certificate (to add settings to)."""
        return server_context(self.cert_file, self.key_file)


class CertificateSource(Protocol):
    """Where terminating listeners get certificates."""

    @property
    def generation(self) -> int:
        """Changes whenever the certificates do (contexts built earlier are stale)."""
        ...

    def certificate_for(self, name: str | None) -> Certificate | None:
        """The certificate for a normalised server name (``names.server_name``)."""
        ...

    def refresh(self) -> bool:
        """Pick up changes; True when the certificates changed."""
        ...

    def names(self) -> Iterable[NamePattern]:
        """Every name a certificate in service serves (for a route's start-up check)."""
        ...


def uncovered(source: CertificateSource, patterns: Iterable[NamePattern]) -> list[NamePattern]:
    """The patterns of a terminating route that no certificate serves: an exact name needs
    a certificate for it, a wildcard a wildcard certificate (or ``default.*``), ``*`` the
    default one; GoDoxy's ``site2.*`` needs some certificate whose name starts with that
    label, a wildcard or the default (the client's domain is not known before it asks)."""
    missing = []
    for pattern in patterns:
        if pattern.kind == "exact":
            found = source.certificate_for(pattern.key) is not None
        elif pattern.kind == "wildcard":
            found = source.certificate_for(f"*.{pattern.key}") is not None
        elif pattern.kind == "default":
            found = source.certificate_for(None) is not None
        else:
            found = source.certificate_for(None) is not None or any(
                name.kind == "wildcard" or name.key.partition(".")[0] == pattern.key
                for name in source.names()
            )
        if not found:
            missing.append(pattern)
    return missing


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 and up) serving this pair; ConfigError naming the
    files if OpenSSL refuses them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file, password="")  # never prompts
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"{cert_file}: cannot serve it with {key_file}: {exc}") from None
    return ctx


def load_certificate(cert_file: Path, key_file: Path) -> Certificate:
    """Read and check one certificate and its key; ConfigError naming the file at fault."""
    data = _read(cert_file)
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{cert_file}: not a PEM certificate") from None
    if key_file == cert_file and b"PRIVATE KEY-----" not in data:
        stem = cert_file.with_suffix(KEY_SUFFIX).name
        raise ConfigError(f"{cert_file}: no private key (add it to the file, or as {stem})")
    key_data = data if key_file == cert_file else _read(key_file)
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise ConfigError(
            f"{key_file}: the private key is encrypted; give it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{key_file}: not a PEM private key") from None
    leaf = chain[0]
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ConfigError(f"{key_file}: the key does not belong to the certificate {cert_file}")
    names = _dns_names(leaf, cert_file)
    context = server_context(cert_file, key_file)
    return Certificate(cert_file, key_file, names, leaf.not_valid_after_utc, context)


def _dns_names(leaf: x509.Certificate, cert_file: Path) -> tuple[NamePattern, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    except ValueError as exc:
        raise ConfigError(f"{cert_file}: unreadable extensions: {exc}") from None
    names = []
    for value in dns:
        try:
            pattern = sni_pattern(value)
        except ValueError:
            continue  # a name no client can ask for
        if pattern.kind != "default" and pattern not in names:
            names.append(pattern)
    if not names:
        raise ConfigError(f"{cert_file}: the certificate has no DNS name in subjectAltName")
    return tuple(names)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None


class CertificateDirectory:
    """The certificates of one folder; see the module docstring."""

    def __init__(self, folder: Path | str, *, log: Any = None) -> None:
        self.folder = Path(folder)
        self.log = log or logger.bind(component="certificates", folder=str(self.folder))
        self.generation = 0
        self.certificates: dict[str, Certificate] = {}  # by file stem
        self.errors: tuple[str, ...] = ()
        self._table: NameTable[Certificate] = NameTable()
        self._default: Certificate | None = None
        self._signature: Signature | None = None

    def certificate_for(self, name: str | None) -> Certificate | None:
        return self._table.match(name) or self._default

    def names(self) -> list[NamePattern]:
        return [name for cert in self.certificates.values() for name in cert.names]

    def refresh(self) -> bool:
        """Reload if any file changed since the last load."""
        if _signature(self.folder) == self._signature:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Read the folder again; True when the certificates changed."""
        errors: list[str] = []
        self._signature = _signature(self.folder)
        try:
            stems: dict[str, dict[str, Path]] | None = _stems(self.folder)
        except OSError as exc:
            stems = None
            errors.append(f"{self.folder}: cannot read the folder: {exc.strerror or exc}")
        loaded = dict(self.certificates) if stems is None else {}
        for stem, files in (stems or {}).items():
            try:
                loaded[stem] = load_certificate(*_pair(stem, files))
            except ConfigError as exc:
                kept = self.certificates.get(stem)
                if kept is not None:
                    loaded[stem] = kept
                errors.append(f"{exc}" + ("; the previous certificate stays" if kept else ""))
        changed = loaded != self.certificates
        self.errors = tuple(errors)
        for error in errors:
            self.log.warning(error)
        if changed:
            self._install(loaded)
        return changed

    def _install(self, loaded: dict[str, Certificate]) -> None:
        by_preference = sorted(
            loaded.items(), key=lambda item: (-item[1].not_after.timestamp(), item[0])
        )
        self._table = NameTable((cert, cert.names) for _, cert in by_preference)
        self._default = loaded.get(DEFAULT_STEM)
        self.certificates = loaded
        self.generation += 1
        names = ", ".join(sorted(str(n) for c in loaded.values() for n in c.names))
        self.log.info(f"{len(loaded)} certificate(s) in service: {names or 'none'}")


def _stems(folder: Path) -> dict[str, dict[str, Path]]:
    """The certificate and key files of ``folder`` by stem; hidden files are skipped."""
    stems: dict[str, dict[str, Path]] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.name.startswith(".") or path.suffix not in (*CERT_SUFFIXES, KEY_SUFFIX):
            continue
        if path.is_file():  # follows links (Kubernetes secret volumes are links)
            stems.setdefault(path.stem, {})[path.suffix] = path
    return stems


def _pair(stem: str, files: dict[str, Path]) -> tuple[Path, Path]:
    """The certificate file and key file of one stem."""
    certs = [files[suffix] for suffix in CERT_SUFFIXES if suffix in files]
    key = files.get(KEY_SUFFIX)
    if not certs:
        assert key is not None
        raise ConfigError(f"{key}: a private key without a certificate ({stem}.crt or {stem}.pem)")
    if len(certs) > 1:
        raise ConfigError(f"{certs[0]}, {certs[1]}: two certificates named {stem!r}; keep one")
    return certs[0], key or certs[0]


def _signature(folder: Path) -> Signature:
    """What the folder's files look like now (a marker when it cannot be read)."""
    try:
        found = list(os.scandir(folder))
    except OSError as exc:
        return (("", -1, exc.errno or 0, 0),)
    entries = []
    for entry in found:
        if entry.name.startswith(".") or not entry.name.endswith((*CERT_SUFFIXES, KEY_SUFFIX)):
            continue
        try:
            st = os.stat(entry.path)
        except OSError:
            continue
        entries.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(sorted(entries))


def _file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TLSContexts:
    """Server contexts from a ``CertificateSource``, for terminating listeners (their
    ``server_context``)."""

    def __init__(self, source: CertificateSource) -> None:
        self.source = source
        self._generation = source.generation
        self._built: dict[tuple[Certificate, str], ssl.SSLContext | ConfigError] = {}
        self._ca_files: dict[str, tuple[int, int, int] | None] = {}

    @property
    def generation(self) -> int:
        return self.source.generation

    def server_context(self, name: str | None, client_ca: str | None) -> ssl.SSLContext | None:
        """The context for a normalised server name; with ``client_ca`` it requires a client
        certificate issued by that CA. None when no certificate serves the name;
        ConfigError (naming the file) when the CA file or certificate cannot be used."""
        if self.source.generation != self._generation:
            self._generation = self.source.generation
            self._built.clear()
        cert = self.source.certificate_for(name)
        if cert is None or client_ca is None:
            return None if cert is None else cert.context
        built = self._built.get((cert, client_ca))
        if built is None:
            built = self._built[(cert, client_ca)] = _with_client_ca(cert, client_ca)
            self._ca_files[client_ca] = _file_signature(client_ca)
        if isinstance(built, ConfigError):
            raise built
        return built

    def refresh(self) -> bool:
        """Refresh the source, and drop contexts whose CA file changed; True on a change."""
        changed = self.source.refresh()
        stale = [ca for ca, sig in self._ca_files.items() if _file_signature(ca) != sig]
        for ca in stale:
            del self._ca_files[ca]
            for key in [key for key in self._built if key[1] == ca]:
                del self._built[key]
        return changed or bool(stale)


def _with_client_ca(cert: Certificate, client_ca: str) -> ssl.SSLContext | ConfigError:
    try:
        ctx = cert.new_context()
    except ConfigError as exc:
        return exc
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=client_ca)
    except (OSError, ValueError) as exc:
        return ConfigError(f"tls_client_ca {client_ca}: not usable: {exc}")
    return ctx
