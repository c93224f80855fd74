"""Many TLS services on one port, end to end: the real daemon, real containers (TLS upstreams
from the kit's tls-echo image, plaintext ones from its echo image), real TLS clients (Python
``ssl`` and ``openssl s_client``), traffic through 127.0.0.1 only.

Passthrough: two names on one port reach two containers, each client seeing its upstream's
own certificate; the default route (``sni: "*"``); no match: the alert unrecognized_name; a
ClientHello in 1-byte segments; a client that does not speak TLS. Termination: a plaintext
upstream behind the daemon's certificate, and a client certificate required (refused without
one). A name claimed twice: a conflict naming it. GoDoxy's shared TLS port: routes chosen by
their alias."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from godoxy_streams.agent.certs import CertFiles
from tests.daemon_kit import DaemonProcess
from tests.docker import kit
from tests.helpers import eventually, free_port
from tests.tls_kit import certificate_set, client_context, install

LOCAL = "127.0.0.1"
Daemon = Callable[..., DaemonProcess]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    return certificate_set(
        tmp_path_factory.mktemp("sni-docker"),
        a="a.example.test",
        b="b.example.test",
        any="fallback.test",
        mqtt="mqtt.example.test",
        site2="site2.example.test",
    )


@pytest.fixture(scope="module")
def tls_image(docker_client: Any) -> str:
    try:
        return kit.ensure_image(docker_client, kit.TLS_ECHO_IMAGE)
    except kit.KitUnavailable as exc:
        pytest.fail(f"the tls-echo test image cannot be built: {exc}")


def tls_upstream(run: Any, image: str, files: CertFiles, labels: dict[str, str], tag: str) -> Any:
    """A container serving TLS on 443 with ``files``' server certificate."""
    env = {"TLS_CERT": files.agent.read_text(), "TLS_KEY": files.agent_key.read_text()}
    return run(labels=labels, command=["--tag", tag], image=image, environment=env, wait_ready=True)


def whoami(port: int, name: str | None, ctx: ssl.SSLContext) -> tuple[str, list[str]]:
    """Through TLS: the upstream's tag and the DNS names of the certificate the client saw."""
    with socket.create_connection((LOCAL, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            names = [
                v for k, v in (tls.getpeercert() or {}).get("subjectAltName", ()) if k == "DNS"
            ]
            tls.sendall(b"whoami\n")
            return read_line(tls), names


def read_line(sock: ssl.SSLSocket | socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            break
        data += chunk
    return data.decode().rstrip("\n")


def no_verify() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def s_client(port: int, name: str, ca: Path) -> subprocess.CompletedProcess[str]:
    """``openssl s_client -servername NAME``, sending whoami, as a user would try it."""
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"{LOCAL}:{port}", "-servername", name,
         "-CAfile", str(ca), "-verify_return_error", "-ign_eof"],
        input="whoami\n", capture_output=True, text=True, timeout=20,
    )  # fmt: skip


def byte_by_byte(port: int, name: str, ctx: ssl.SSLContext) -> str:
    """A TLS client whose ClientHello leaves in 1-byte TCP segments; then whoami."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with socket.create_connection((LOCAL, port), timeout=5) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        for byte in outgoing.read():
            raw.sendall(bytes([byte]))
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        obj.write(b"whoami\n")
        raw.sendall(outgoing.read())
        while True:
            try:
                return obj.read(100).decode().rstrip("\n")
            except ssl.SSLWantReadError:
                incoming.write(raw.recv(65536))


def sockets(d: DaemonProcess) -> dict[str, Any]:
    (shared,) = d.routes()["sni_sockets"]
    return dict(shared)


def test_passthrough_by_name_on_one_port(
    daemon: Daemon, run_container: Any, ns: str, tls_image: str, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    d = daemon()
    for key, names in (("a", "a.example.test"), ("b", "b.example.test"), ("any", "*")):
        tls_upstream(
            run_container,
            tls_image,
            certs[key],
            {f"{ns}.{key}.port": f"{port}:443", f"{ns}.{key}.sni": names},
            f"box-{key}",
        )
    eventually(lambda: [r["state"] for r in d.routes()["routes"]] == ["running"] * 3, 20)
    for key in ("a", "b"):  # each client sees its own upstream's certificate
        name = f"{key}.example.test"
        assert whoami(port, name, client_context(certs[key].ca)) == (f"box-{key}", [name])
        done = s_client(port, name, certs[key].ca)
        assert done.returncode == 0 and f"box-{key}" in done.stdout, done.stderr
        assert "Verify return code: 0 (ok)" in done.stdout
    assert whoami(port, "elsewhere.test", no_verify())[0] == "box-any"  # the default route
    assert whoami(port, None, no_verify())[0] == "box-any"  # no name at all
    assert byte_by_byte(port, "b.example.test", client_context(certs["b"].ca)) == "box-b"
    with socket.create_connection((LOCAL, port), timeout=5) as raw:  # not TLS
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            assert raw.recv(100) == b""  # a reset, or at least nothing
    counts = sockets(d)
    assert counts["routes"] == 3 and counts["not_tls"] == 1 and counts["routed"] == 7
    row = next(r for r in d.routes()["routes"] if r["alias"] == "a")
    assert (row["sni"], row["shared_socket"]) == (["a.example.test"], f"tcp/127.0.0.1:{port}")


def test_no_match_alert_and_a_name_claimed_twice(
    daemon: Daemon, run_container: Any, ns: str, tls_image: str, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    d = daemon()
    labels = {f"{ns}.a.port": f"{port}:443", f"{ns}.a.sni": "a.example.test"}
    tls_upstream(run_container, tls_image, certs["a"], labels, "first")
    eventually(lambda: d.route("a") is not None and d.route("a")["state"] == "running", 20)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        whoami(port, "nobody.example.test", no_verify())
    done = s_client(port, "nobody.example.test", certs["a"].ca)
    assert "unrecognized name" in done.stderr, done.stderr
    assert sockets(d)["no_match"] == 2

    labels = {f"{ns}.x.port": f"{port}:443", f"{ns}.x.sni": "x.example.test, a.example.test"}
    tls_upstream(run_container, tls_image, certs["b"], labels, "second")
    eventually(lambda: d.route("x") is not None, 20)
    row = d.route("x")
    assert row is not None and row["state"] == "conflict"
    assert row["error"].startswith(f'server name "a.example.test" on tcp/127.0.0.1:{port} is held')
    assert whoami(port, "a.example.test", client_context(certs["a"].ca))[0] == "first"


def test_termination_plaintext_upstream_and_client_certificates(
    daemon: Daemon, run_container: Any, ns: str, certs: dict[str, CertFiles], tmp_path: Path
) -> None:
    port, folder = free_port(), tmp_path / "certs"
    install(folder, "mqtt", certs["mqtt"])
    install(folder, "site2", certs["site2"], bundle=True)
    config = tmp_path / "config.yml"
    profiles = {"clients": str(certs["site2"].ca)}
    config.write_text(yaml.safe_dump({"certificates_dir": str(folder), "tls_client_cas": profiles}))
    d = daemon("--config", str(config))
    run_container(
        labels={
            f"{ns}.mqtt.port": f"{port}:7",
            f"{ns}.mqtt.sni": "mqtt.example.test",
            f"{ns}.mqtt.tls_termination": "true",
        },
        command=["--tag", "plain-mqtt"],
    )
    run_container(
        labels={
            f"{ns}.site2.port": f"{port}:7",
            f"{ns}.site2.sni": "site2.example.test",
            f"{ns}.site2.tls_termination": "true",
            f"{ns}.site2.tls_client_ca": "clients",
        },
        command=["--tag", "plain-site2"],
    )
    eventually(lambda: [r["state"] for r in d.routes()["routes"]] == ["running"] * 2, 20)
    mqtt = client_context(certs["mqtt"].ca)
    assert whoami(port, "mqtt.example.test", mqtt) == ("plain-mqtt", ["mqtt.example.test"])
    with_cert = client_context(certs["site2"].ca, certs["site2"])
    assert whoami(port, "site2.example.test", with_cert)[0] == "plain-site2"
    without = client_context(certs["site2"].ca)
    try:  # TLS 1.3: the client's side of the handshake is over before the server refuses it
        answer = whoami(port, "site2.example.test", without)[0]
    except (ssl.SSLError, ConnectionError) as exc:
        answer = repr(exc)
    assert answer == "" or "CERTIFICATE_REQUIRED" in answer, answer  # closed, never relayed
    counts = sockets(d)
    assert counts["handshakes"] == 2 and counts["handshake_failed"] == 1


def test_godoxy_shared_tls_port_routes_by_alias(
    daemon: Daemon, run_container: Any, ns: str, tls_image: str, certs: dict[str, CertFiles]
) -> None:
    port = free_port()
    d = daemon("--tls-port", str(port))
    for alias in ("site2", "mqtt"):
        labels = {f"{ns}.aliases": alias, f"{ns}.#1.port": f"{port}:443"}
        tls_upstream(run_container, tls_image, certs[alias], labels, f"godoxy-{alias}")
    eventually(lambda: [r["state"] for r in d.routes()["routes"]] == ["running"] * 2, 20)
    for alias in ("site2", "mqtt"):
        name = f"{alias}.example.test"
        assert whoami(port, name, client_context(certs[alias].ca)) == (f"godoxy-{alias}", [name])
    assert {tuple(r["sni"]) for r in d.routes()["routes"]} == {("site2.*",), ("mqtt.*",)}
