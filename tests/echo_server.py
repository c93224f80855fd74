"""A loopback TCP echo server in a thread, for tests that need an upstream but no Docker."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        tag = getattr(self.server, "tag", b"")
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                conn.shutdown(socket.SHUT_WR)
                return
            conn.sendall(tag + data if data == b"whoami\n" else data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def echo_server(tag: bytes = b"", host: str = "127.0.0.1") -> Iterator[int]:
    """Serve TCP echo on ``host``; yields the port. ``whoami\\n`` answers ``tag`` + newline."""
    server = _Server((host, 0), _Echo)
    server.tag = tag  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def udp_echo_server(host: str = "127.0.0.1") -> Iterator[int]:
    """Echo every datagram back to its sender; yields the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(data, peer)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
