"""kill -9 under load, twice: clients keep connecting through a TCP route and exchanging
datagrams through a UDP route while the daemon is killed and started again on the same
routes file; the routes serve again within a bound (a poll with a deadline) and every client
gets through again, the TCP ones without being restarted."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.kit import LOCAL
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server, udp_echo_server
from tests.helpers import eventually, free_port, tcp_exchange

CLIENTS = 4
ROUNDS = 3000  # exchanges per client at most
LOAD_SECONDS = 60.0  # and at most this long
SERVING_AGAIN = 10.0  # seconds a restarted daemon has to serve its routes again
RESTARTS = 2


class Load:
    """``CLIENTS`` threads, each doing TCP exchanges through the route in a loop (bounded in
    count and time), counting those that came back whole and those that failed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = [0] * CLIENTS
        self.failed = [0] * CLIENTS
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]

    def run(self, index: int) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        for round_ in range(ROUNDS):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            payload = b"client %d round %d\n" % (index, round_)
            try:
                whole = tcp_exchange(LOCAL, self.port, payload, timeout=2) == payload
            except OSError:
                whole = False
            if whole:
                self.ok[index] += 1
            else:
                self.failed[index] += 1
                self.stop.wait(0.05)  # a refused connect comes back at once: do not spin

    def all_through_since(self, counts: list[int]) -> bool:
        return all(now > then for now, then in zip(self.ok, counts, strict=True))


@pytest.fixture
def load_and_routes(tmp_path: Path) -> Iterator[tuple[Load, Path, int]]:
    tcp_port, udp_port = free_port(), free_port("udp")
    with echo_server() as tcp, udp_echo_server() as udp:
        routes = tmp_path / "routes.yml"
        routes.write_text(
            "routes:\n"
            f"  a: {{scheme: tcp, bind: {LOCAL}, port: '{tcp_port}:{tcp}'}}\n"
            f"  u: {{scheme: udp, bind: {LOCAL}, port: '{udp_port}:{udp}'}}\n"
        )
        load = Load(tcp_port)
        try:
            yield load, routes, udp_port
        finally:
            load.stop.set()
            for thread in load.threads:
                if thread.is_alive():
                    thread.join(timeout=10)


def udp_through(sock: socket.socket) -> bool:
    sock.send(b"datagram")
    try:
        return sock.recv(100) == b"datagram"
    except (TimeoutError, ConnectionRefusedError):
        return False


def test_kill_9_under_load_serves_again(
    tmp_path: Path, load_and_routes: tuple[Load, Path, int]
) -> None:
    load, routes, udp_port = load_and_routes
    args = ("--no-docker", "--routes", str(routes))

    def process() -> DaemonProcess:
        return DaemonProcess(tmp_path, *args, namespace=unique_namespace(), api_port=free_port())

    daemon = process().start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagrams:
        datagrams.settimeout(0.5)
        datagrams.connect((LOCAL, udp_port))
        for thread in load.threads:
            thread.start()
        for restart in range(RESTARTS):
            eventually(lambda: all(load.ok), what="every client through")
            assert daemon.proc is not None
            daemon.proc.kill()
            assert daemon.proc.wait(timeout=10) == -9
            killed = time.monotonic()
            before = list(load.ok)
            daemon = process().start(wait_healthy=False)
            eventually(
                lambda before=before: load.all_through_since(before),
                timeout=SERVING_AGAIN,
                what="every TCP client through the restarted daemon",
            )
            eventually(lambda: udp_through(datagrams), timeout=SERVING_AGAIN, what="UDP again")
            print(
                f"restart {restart + 1}: every client through again after "
                f"{time.monotonic() - killed:.2f} s; exchanges ok {sum(load.ok)}, "
                f"failed {sum(load.failed)}"
            )
        load.stop.set()
    assert daemon.stop() == 0
