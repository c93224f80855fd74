"""The daemon's descriptors and the status API's own budget, end to end: the open-files
limit raised to the hard limit and the budget logged once, the figures in /healthz and the
metrics, and a client trickling its request headers cut after the header timeout."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from godoxy_streams.observe.serving import HEADER_TIMEOUT
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.helpers import free_port

LOCAL = "127.0.0.1"


def daemon(tmp_path: Path, *prefix: str) -> DaemonProcess:
    """The daemon with one static route; ``prefix``: a command it runs under."""
    routes = tmp_path / "routes.yml"
    routes.write_text(f"routes:\n  a: {{scheme: tcp, bind: {LOCAL}, port: '{free_port()}:9'}}\n")
    args = ("--no-docker", "--routes", str(routes))
    return DaemonProcess(tmp_path, *args, namespace=unique_namespace(), prefix=prefix).start()


def test_open_files_limit_raised_and_the_budget_logged_once(tmp_path: Path) -> None:
    d = daemon(tmp_path, "prlimit", "--nofile=256:2048")
    try:
        status, body = d.health()
        figures = body["descriptors"]
        assert status == 200 and figures["limit"] == 2048
        assert 0 < figures["open"] < 256
        plane = figures["data_plane"]
        assert plane["budget"] == 2048 - 64 - 33 and plane["tcp"] == 1  # the listener
        assert plane["reserved_per_protocol"] == plane["budget"] // 4
        assert figures["api"]["cap"] == 32 and figures["api"]["open"] == 1  # this request
        assert d.log().count("descriptor budget: 2048 open files") == 1
        assert "open-files limit raised from 256 to 2048" in d.log()
        with urllib.request.urlopen(f"http://{LOCAL}:{d.api_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "godoxy_streams_descriptors_limit 2048.0" in text
        assert "godoxy_streams_descriptors_open " in text
        assert 'godoxy_streams_data_plane_descriptors{protocol="tcp"} 1.0' in text
        assert "godoxy_streams_api_connections_limit 32.0" in text
    finally:
        assert d.stop() == 0


def trickle(sock: socket.socket, line: bytes) -> bool:
    """Wait for the server to close (up to the socket's timeout), else send ``line``;
    whether it closed."""
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        pass
    except OSError:
        return True
    try:
        sock.sendall(line)
    except OSError:
        return True
    return False


def test_trickled_request_headers_are_cut(tmp_path: Path) -> None:
    """A line of headers every half second: never complete, closed after the header timeout
    (a trickle does not extend it)."""
    d = daemon(tmp_path)
    try:
        with socket.create_connection((LOCAL, d.api_port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sock.settimeout(0.5)
            lines = 0
            closed = False
            while lines < 4 * HEADER_TIMEOUT and not closed:  # bounded: 10 s of trickle
                closed = trickle(sock, b"X-Trickle-%d: y\r\n" % lines)
                lines += 1
            assert closed, f"still open after {lines} header lines"
            assert lines >= HEADER_TIMEOUT  # not before the deadline either (2 lines/s)
        assert d.health()[1]["descriptors"]["api"]["cut"] == 1
    finally:
        assert d.stop() == 0
