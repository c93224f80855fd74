"""The chaos suite's kit: junk HTTP requests, a raw HTTP client for them, the log checks, and
helpers that open many sockets without running the test process out of descriptors.

Every loop here is bounded in count, every wait by a deadline. Only loopback is contacted.
"""

from __future__ import annotations

import json
import re
import resource
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOCAL = "127.0.0.1"

JUNK: dict[str, bytes] = {
    "non-UTF-8 request line": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-UTF-8 method": b"G\xe9T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "over-long request line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
    "over-long header": b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(300))
    + b"\r\n",
    "Content-Length: -5": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "TE+CL": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "two Content-Lengths": b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "unknown HTTP version": b"GET / HTTP/9.9\r\n\r\n",
    "NUL in a header": b"GET / HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n",
    "header without a colon": b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "binary": bytes(range(256)),
    "TLS client hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}
"""Malformed requests, each sent on a connection of its own."""

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \"|\bFile \".*\", line \d+")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ +\S")


def raw_request(connect: Any, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send ``payload`` on a new connection (``connect()`` returns a connected socket) and
    return what comes back until the server closes (or ``timeout``)."""
    with connect() as sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
        except OSError:  # the server may close before reading it all
            pass
        received = bytearray()
        while len(received) < 1 << 20:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)


def status_of(answer: bytes) -> int | None:
    """The status code of an HTTP answer, or None when there is none."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


def tcp_to(host: str, port: int) -> Any:
    return lambda: socket.create_connection((host, port), timeout=5)


def unix_to(path: str) -> Any:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        return sock

    return connect


def log_lines(text: str, log_format: str) -> list[dict[str, Any]]:
    """Every line of a log, each checked: one JSON object (json) or one text line starting
    with a timestamp and a level (text), and no line of a Python traceback. Returns the JSON
    records (``{}`` per text line)."""
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        assert not TRACEBACK.search(line), f"line {number} is part of a traceback: {line!r}"
        if log_format == "json":
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        else:
            assert TEXT_LINE.match(line), f"line {number} is not a log line: {line[:300]!r}"
            records.append({})
    return records


def bad_requests_logged(text: str, event: str = "bad_request") -> int:
    """How many bad requests (or other ``event``s) a JSON log accounts for (each line counts
    its ``count``)."""
    total = 0
    for line in text.splitlines():
        extra = json.loads(line)["record"]["extra"] if line.strip() else {}
        if extra.get("event") == event:
            total += int(extra.get("count", 1))
    return total


@contextmanager
def descriptors(at_least: int) -> Iterator[None]:
    """Raise this process's soft RLIMIT_NOFILE to ``at_least`` (within the hard limit) for
    the block, then put it back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(max(soft, at_least), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections to (host, port) that send nothing (connects left in progress:
    a server that stopped accepting cannot stall the loop)."""
    opened = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        opened.append(sock)
    return opened


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed this non-blocking connection (EOF or a reset seen now);
    reads and drops whatever it answered first (a 503)."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
