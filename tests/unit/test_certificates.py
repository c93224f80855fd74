"""The certificate folder for TLS termination: pairs and bundles picked by their own DNS
names, the default certificate, bad files reported by name (the previous certificate
stays), reloads on change, client-CA contexts and the SNI-callback context. Certificates
come from ``agent.certs.create_certs``; handshakes run in memory."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from godoxy_streams.agent.certs import CertFiles, create_certs
from godoxy_streams.errors import ConfigError
from godoxy_streams.runtime.certificates import CertificateDirectory, TLSContexts, uncovered
from godoxy_streams.server_names import parse_pattern

from ..tls_kit import certificate_set, client_context, handshake, install


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    base = tmp_path_factory.mktemp("made")
    return certificate_set(
        base,
        a="a.example.test",
        wild="*.example.test",
        svc="svc.example.test,Svc2.Example.Test",
        fallback="fallback.test",
    ) | {
        "short": create_days(base / "short", 10, "dup.example.test"),
        "long": create_days(base / "long", 100, "dup.example.test"),
    }


def create_days(folder: Path, days: int, name: str) -> CertFiles:
    return create_certs(folder, [name], days=days)


def names(store: CertificateDirectory, name: str | None) -> list[str]:
    cert = store.certificate_for(name)
    return [] if cert is None else [str(n) for n in cert.names]


def test_pairs_and_bundles_are_picked_by_their_own_names(
    tmp_path: Path, made: dict[str, CertFiles]
) -> None:
    install(tmp_path, "a", made["a"])
    install(tmp_path, "wildcard", made["wild"], bundle=True)
    install(tmp_path, "whatever-name", made["svc"])
    store = CertificateDirectory(tmp_path)
    assert store.reload() is True
    assert store.errors == ()
    assert names(store, "a.example.test") == ["a.example.test"]  # exact beats wildcard
    assert names(store, "b.example.test") == ["*.example.test"]
    assert names(store, "svc2.example.test") == ["svc.example.test", "svc2.example.test"]
    assert store.certificate_for("x.b.example.test") is None
    assert store.certificate_for(None) is None
    assert store.generation == 1


def test_the_default_certificate_serves_the_rest(
    tmp_path: Path, made: dict[str, CertFiles]
) -> None:
    install(tmp_path, "a", made["a"])
    install(tmp_path, "default", made["fallback"], bundle=True)
    store = CertificateDirectory(tmp_path)
    store.reload()
    assert names(store, "nothing.test") == ["fallback.test"]
    assert names(store, None) == ["fallback.test"]
    assert names(store, "a.example.test") == ["a.example.test"]


def test_the_certificate_valid_longest_wins_a_shared_name(
    tmp_path: Path, made: dict[str, CertFiles]
) -> None:
    install(tmp_path, "a-long", made["long"])
    install(tmp_path, "b-short", made["short"])
    store = CertificateDirectory(tmp_path)
    store.reload()
    cert = store.certificate_for("dup.example.test")
    assert cert is not None and cert.cert_file.name == "a-long.crt"


def write_bad_files(folder: Path, made: dict[str, CertFiles]) -> None:
    (folder / "garbage.crt").write_bytes(b"not a certificate")
    (folder / "garbage.key").write_bytes(made["a"].agent_key.read_bytes())
    (folder / "mismatch.crt").write_bytes(made["a"].agent.read_bytes())
    (folder / "mismatch.key").write_bytes(made["svc"].agent_key.read_bytes())
    (folder / "lonely.key").write_bytes(made["a"].agent_key.read_bytes())
    (folder / "nokey.crt").write_bytes(made["a"].agent.read_bytes())
    (folder / "twice.crt").write_bytes(made["a"].agent.read_bytes())
    (folder / "twice.pem").write_bytes(made["a"].agent.read_bytes())
    (folder / "nosan.crt").write_bytes(made["a"].daemon.read_bytes())  # a client certificate
    (folder / "nosan.key").write_bytes(made["a"].daemon_key.read_bytes())
    key = serialization.load_pem_private_key(made["a"].agent_key.read_bytes(), None)
    (folder / "locked.crt").write_bytes(made["a"].agent.read_bytes())
    (folder / "locked.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    (folder / ".hidden.crt").write_bytes(b"ignored")
    (folder / "README.txt").write_bytes(b"ignored")


def test_bad_files_are_errors_naming_them(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path, "good", made["svc"])
    write_bad_files(tmp_path, made)
    store = CertificateDirectory(tmp_path)
    store.reload()
    assert names(store, "svc.example.test")  # the good one serves regardless
    assert list(store.certificates) == ["good"]
    expected = {
        "garbage.crt": "not a PEM certificate",
        "mismatch.key": "does not belong",
        "lonely.key": "without a certificate",
        "nokey.crt": "no private key",
        "twice.crt": "two certificates",
        "nosan.crt": "no DNS name",
        "locked.key": "encrypted",
    }
    assert len(store.errors) == len(expected)
    for file, why in expected.items():
        assert any(str(tmp_path / file) in e and why in e for e in store.errors), (file, why)


def test_a_broken_update_keeps_the_previous_certificate(
    tmp_path: Path, made: dict[str, CertFiles]
) -> None:
    install(tmp_path, "a", made["a"])
    store = CertificateDirectory(tmp_path)
    store.reload()
    before = store.certificate_for("a.example.test")
    (tmp_path / "a.crt").write_bytes(b"half written")
    assert store.refresh() is False  # nothing changed in service
    assert store.certificate_for("a.example.test") is before
    assert "previous certificate stays" in store.errors[0] and "a.crt" in store.errors[0]
    install(tmp_path, "a", made["svc"])  # the update completes, with other names
    assert store.refresh() is True
    assert store.certificate_for("a.example.test") is None
    assert names(store, "svc.example.test")
    assert store.errors == ()


def test_refresh_reloads_only_on_change(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path, "a", made["a"])
    store = CertificateDirectory(tmp_path)
    assert store.refresh() is True
    assert store.refresh() is False
    generation = store.generation
    install(tmp_path, "wild", made["wild"], bundle=True)
    assert store.refresh() is True and store.generation == generation + 1
    (tmp_path / "wild.pem").unlink()
    assert store.refresh() is True
    assert store.certificate_for("b.example.test") is None


def test_a_missing_folder_is_an_error_once(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path / "certs", "a", made["a"])
    store = CertificateDirectory(tmp_path / "certs")
    store.reload()
    (tmp_path / "certs").rename(tmp_path / "gone")
    assert store.refresh() is False
    assert "cannot read the folder" in store.errors[0]
    assert names(store, "a.example.test")  # still served
    assert store.refresh() is False  # no reload (and no new log line) while nothing changed
    missing = CertificateDirectory(tmp_path / "never")
    assert missing.refresh() is False and missing.errors


def test_termination_handshakes(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path, "a", made["a"])
    contexts = TLSContexts(CertificateDirectory(tmp_path))
    contexts.refresh()
    server = contexts.server_context("a.example.test", None)
    assert server is not None
    client, _ = handshake(client_context(made["a"].ca), server, "a.example.test")
    assert client.getpeercert()["subjectAltName"] == (("DNS", "a.example.test"),)
    assert contexts.server_context("other.test", None) is None


def test_client_certificates_required_by_a_ca(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path / "certs", "a", made["a"])
    contexts = TLSContexts(CertificateDirectory(tmp_path / "certs"))
    contexts.refresh()
    ca = str(made["svc"].ca)  # clients with a certificate from svc's CA
    server = contexts.server_context("a.example.test", ca)
    assert server is not None and server.verify_mode == ssl.CERT_REQUIRED
    assert contexts.server_context("a.example.test", ca) is server  # built once
    trusting = client_context(made["a"].ca)
    with pytest.raises(ssl.SSLError):
        handshake(trusting, server, "a.example.test")  # no client certificate
    with_other_cert = client_context(made["a"].ca, made["a"])
    with pytest.raises(ssl.SSLError):
        handshake(with_other_cert, server, "a.example.test")  # issued by another CA
    with_cert = client_context(made["a"].ca, made["svc"])
    _, served = handshake(with_cert, server, "a.example.test")
    assert served.getpeercert() is not None
    assert contexts.server_context("a.example.test", None) is not server


def test_client_ca_changes_and_errors(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path / "certs", "a", made["a"])
    contexts = TLSContexts(CertificateDirectory(tmp_path / "certs"))
    contexts.refresh()
    ca = tmp_path / "clients.pem"
    ca.write_bytes(made["svc"].ca.read_bytes())
    first = contexts.server_context("a.example.test", str(ca))
    assert contexts.refresh() is False
    ca.write_bytes(made["a"].ca.read_bytes() + made["svc"].ca.read_bytes())
    os.utime(ca, ns=(1, 1))
    assert contexts.refresh() is True
    assert contexts.server_context("a.example.test", str(ca)) is not first
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"nothing")
    for _ in range(2):  # the failure is kept, not retried per handshake
        with pytest.raises(ConfigError, match="bad.pem"):
            contexts.server_context("a.example.test", str(bad))


def test_contexts_follow_a_reload(tmp_path: Path, made: dict[str, CertFiles]) -> None:
    install(tmp_path, "a", made["a"])
    store = CertificateDirectory(tmp_path)
    contexts = TLSContexts(store)
    contexts.refresh()
    ca = str(made["a"].ca)
    first = contexts.server_context("a.example.test", ca)
    store.reload()
    assert contexts.server_context("a.example.test", ca) is not first


@pytest.mark.parametrize(
    ("installed", "patterns", "missing"),
    [
        (["a"], ["a.example.test", "b.example.test"], ["b.example.test"]),
        (["a"], ["*.example.test"], ["*.example.test"]),  # an exact name covers no wildcard
        (["wild"], ["*.example.test", "b.example.test", "x.other.test"], ["x.other.test"]),
        (["a"], ["*"], ["*"]),
        (["a", "default"], ["*", "*.anything.test", "z.test"], []),
        (["a"], ["a.*", "b.*"], ["b.*"]),  # GoDoxy's label rule: a name starting with it
        (["wild"], ["mqtt.*"], []),
    ],
)
def test_uncovered_names_of_a_terminating_route(
    tmp_path: Path,
    made: dict[str, CertFiles],
    installed: list[str],
    patterns: list[str],
    missing: list[str],
) -> None:
    for stem in installed:
        install(tmp_path, stem, made["fallback" if stem == "default" else stem])
    store = CertificateDirectory(tmp_path)
    store.reload()
    wanted = [parse_pattern(p) for p in patterns]
    assert [str(p) for p in uncovered(store, wanted)] == missing
