"""Junk first flights into a terminating TLS route of the daemon (the socket where OpenSSL
reads the ClientHello itself): a server name that is not ASCII, plain HTTP, a truncated
hello. Each is turned away, a real TLS client is served all along, and the log stays a log:
one JSON object (or text line) per line, no traceback, the bad names counted on
rate-limited lines."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import yaml

from tests.chaos.kit import LOCAL, bad_requests_logged, log_lines
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server
from tests.helpers import eventually, free_port
from tests.tls_kit import certificate_set, client_context, client_hello, install

NAME = "mqtt.example.test"
BAD_NAMES = 5


def first_flights() -> list[bytes]:
    hello = client_hello(NAME)
    not_ascii = hello.replace(b"mqtt", b"\xff\xfe\xfd\xfc")
    return [not_ascii] * BAD_NAMES + [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hello[:60]]


def send(port: int, flight: bytes) -> bytes:
    with socket.create_connection((LOCAL, port), timeout=5) as conn:
        try:
            conn.sendall(flight)
            conn.shutdown(socket.SHUT_WR)
            return conn.recv(100)
        except ConnectionResetError:
            return b""


def served(port: int, ctx: ssl.SSLContext) -> bytes:
    with socket.create_connection((LOCAL, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
            tls.sendall(b"whoami\n")
            return tls.recv(100)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_junk_into_a_terminating_route(tmp_path: Path, log_format: str) -> None:
    certs = certificate_set(tmp_path / "made", mqtt=NAME)
    install(tmp_path / "certs", "mqtt", certs["mqtt"])
    port = free_port()
    with echo_server(b"mqtt ") as upstream:
        routes = tmp_path / "routes.yml"
        route = {"scheme": "tcp", "bind": LOCAL, "port": f"{port}:{upstream}", "sni": NAME}
        route |= {"tls_termination": "true"}
        routes.write_text(yaml.safe_dump({"routes": {"mqtt": route}}))
        args = ["--no-docker", "--routes", str(routes), "--log-format", log_format]
        args += ["--certificates-dir", str(tmp_path / "certs")]
        d = DaemonProcess(tmp_path, *args, namespace=unique_namespace()).start()
        try:
            ctx = client_context(certs["mqtt"].ca)
            eventually(lambda: served(port, ctx) == b"mqtt whoami\n", what="the route serves")
            for flight in first_flights():
                assert b"mqtt" not in send(port, flight)
            assert served(port, ctx) == b"mqtt whoami\n"
            if log_format == "json":
                eventually(
                    lambda: bad_requests_logged(d.log(), "bad_server_name") == BAD_NAMES,
                    what="the bad names counted",
                )
            else:
                eventually(lambda: "bad_server_name" in d.log(), what="the bad names logged")
            assert d.health()[0] == 200
            log_lines(d.log(), log_format)
        finally:
            assert d.stop() == 0
    log_lines(d.log(), log_format)
