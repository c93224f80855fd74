"""Descriptor exhaustion, with the daemon started at ``nofile 512``: idle connections to the
status API and a flood of one-datagram UDP sources must leave a TCP route working, and the
API and the UDP route recover by themselves (idle API connections closed after the header
timeout, an idle keep-alive one after the idle timeout, idle UDP sessions evicted oldest
first for new sources)."""

from __future__ import annotations

import http.client
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.kit import LOCAL, closed_by_peer, descriptors, open_idle
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server, udp_echo_server
from tests.helpers import eventually, free_port, tcp_exchange

NOFILE = 512
API_FLOOD = 600
UDP_SOURCES = 1500
API_CAP = 32  # limits.api_connections: the default


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int, int]]:
    """The daemon at ``nofile 512`` with TCP route ``a`` and UDP route ``u`` to echo
    upstreams: (daemon, a's port, u's port); stopped (exit 0 asserted) afterwards."""
    tcp_port, udp_port = free_port(), free_port("udp")
    with echo_server() as tcp, udp_echo_server() as udp, descriptors(4 * API_FLOOD):
        routes = tmp_path / "routes.yml"
        routes.write_text(
            "routes:\n"
            f"  a: {{scheme: tcp, bind: {LOCAL}, port: '{tcp_port}:{tcp}'}}\n"
            f"  u: {{scheme: udp, bind: {LOCAL}, port: '{udp_port}:{udp}'}}\n"
        )
        args = ("--no-docker", "--routes", str(routes))
        limit = ("prlimit", f"--nofile={NOFILE}:{NOFILE}")
        daemon = DaemonProcess(tmp_path, *args, namespace=unique_namespace(), prefix=limit)
        daemon.start()
        try:
            yield daemon, tcp_port, udp_port
        finally:
            assert daemon.stop() == 0


def route_serves(port: int, rounds: int = 20) -> None:
    """``rounds`` connections in a row through the TCP route, each echoed in full."""
    for i in range(rounds):
        payload = b"ping %d\n" % i
        assert tcp_exchange(LOCAL, port, payload) == payload, f"connection {i} through the route"


def keep_alive(port: int) -> http.client.HTTPConnection:
    """A connection that made one request and stays open, idle (non-blocking socket)."""
    conn = http.client.HTTPConnection(LOCAL, port, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    assert conn.sock is not None
    conn.sock.setblocking(False)
    return conn


def test_idle_api_connections_leave_the_routes_their_descriptors(
    routed: tuple[DaemonProcess, int, int],
) -> None:
    d, tcp_port, _ = routed
    kept_alive = keep_alive(d.api_port)
    idle = open_idle(LOCAL, d.api_port, API_FLOOD)
    try:
        # Beyond the API's cap, connections are answered and closed at once ...
        eventually(
            lambda: sum(map(closed_by_peer, idle)) >= API_FLOOD - API_CAP,
            timeout=10,
            what=f"all but {API_CAP} API connections closed at once",
        )
        held = API_FLOOD - sum(map(closed_by_peer, idle))  # 0 once the deadline passed
        print(f"API connections held of {API_FLOOD}: {held}")
        assert held <= API_CAP
        route_serves(tcp_port)  # while the API holds all it will hold
        # ... and the held ones, which never sent their request, after the header timeout;
        # the idle keep-alive one after the idle timeout.
        eventually(lambda: all(map(closed_by_peer, idle)), timeout=20, what="idle ones closed")
        eventually(lambda: closed_by_peer(kept_alive.sock), timeout=20, what="keep-alive")
    finally:
        kept_alive.close()
        for sock in idle:
            sock.close()
    status, body = eventually(lambda: d.health(), what="API answers again")
    figures = body["descriptors"]
    print(f"/healthz descriptors after the API flood: {figures}")
    assert status == 200 and figures["limit"] == NOFILE
    assert 0 < figures["open"] < NOFILE
    api = figures["api"]
    assert api["cap"] == API_CAP and api["refused"] >= API_FLOOD - API_CAP
    assert 0 < api["cut"] <= API_CAP  # the held ones, cut at their header deadline
    route_serves(tcp_port)


def metric(d: DaemonProcess, name: str) -> float:
    """The sum of a metric's series in the daemon's ``/metrics``."""
    url = f"http://{LOCAL}:{d.api_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name)
    )


def udp_echoes(sock: socket.socket, payload: bytes, timeout: float = 2.0) -> bool:
    sock.settimeout(timeout)
    sock.send(payload)
    try:
        return sock.recv(65536) == payload
    except TimeoutError:
        return False


def one_datagram_source(index: int, port: int) -> None:
    """A source that sends one datagram and goes (its session stays in the daemon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((f"127.0.{1 + index // 250}.{1 + index % 250}", 0))
        sock.sendto(b"flood", (LOCAL, port))


def counted(d: DaemonProcess) -> dict[str, Any] | None:
    """/healthz's descriptors once its count of open ones includes the UDP sessions (it is
    taken in the background, at most about a second old)."""
    figures: dict[str, Any] = d.health()[1]["descriptors"]
    return figures if figures["open"] > figures["data_plane"]["udp"] else None


def new_source_served(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.9.1", 0))
        sock.connect((LOCAL, port))
        return udp_echoes(sock, b"newcomer", timeout=0.5)


def test_udp_source_flood_leaves_other_routes_their_share(
    routed: tuple[DaemonProcess, int, int],
) -> None:
    d, tcp_port, udp_port = routed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as established:
        established.bind(("127.0.8.1", 0))
        established.connect((LOCAL, udp_port))
        assert udp_echoes(established, b"before")
        for index in range(UDP_SOURCES):
            one_datagram_source(index, udp_port)
            if index % 100 == 99:  # an established flow is never refused for newcomers
                assert udp_echoes(established, b"during %d" % index), index
        route_serves(tcp_port)
        figures = eventually(lambda: counted(d), what="the open descriptors counted")
        print(f"/healthz descriptors during the UDP flood: {figures}")
        plane = figures["data_plane"]
        assert plane["udp"] <= plane["budget"] - plane["reserved_per_protocol"]
        assert plane["refused"] > 0 and figures["open"] < NOFILE
        # A newcomer takes the place of the session idle the longest.
        eventually(lambda: new_source_served(udp_port), timeout=10, what="a new source")
        assert udp_echoes(established, b"after")
    evicted = metric(d, "godoxy_streams_udp_sessions_evicted_total")
    print(f"UDP sessions evicted for newcomers: {evicted}")
    assert evicted > 0
