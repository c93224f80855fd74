"""Loopback backends and clients for the data-plane tests: echo, tagged echo, capture, UDP echo
(TCP backends may speak TLS).

Everything binds 127.0.0.1 or ::1 (or a wildcard, for the pktinfo test) on port 0 and is
closed by its context manager; clients may bind another 127.0.0.x source (``source=``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

from godoxy_streams.streams import StreamOptions, TCPStream, UDPStream

LOCAL = "127.0.0.1"


class Backend:
    """A TCP server on loopback; records its connections' writers."""

    def __init__(self, server: asyncio.Server) -> None:
        self.server = server
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def addr(self) -> tuple[str, int]:
        name = self.server.sockets[0].getsockname()
        return (name[0], name[1])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


@contextlib.asynccontextmanager
async def tcp_backend(
    handler: Handler, host: str = LOCAL, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Backend]:
    backend: Backend

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend.accepted += 1
        backend.writers.append(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, host, 0, limit=1 << 20, ssl=tls)
    backend = Backend(server)
    try:
        yield backend
    finally:
        server.close()
        for writer in backend.writers:
            # A transport closed with data still buffered may finish closing on its own once
            # the buffer drains, and CPython's abort() of such a transport then fails (its
            # loop is gone); closing ones are on their way out anyway.
            if not writer.transport.is_closing():
                writer.transport.abort()
        await server.wait_closed()


def echo(tag: bytes = b"") -> Handler:
    """A handler that echoes every read (prefixed with ``tag``) until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 20):
            writer.write(tag + data)
            await writer.drain()

    return handle


@contextlib.asynccontextmanager
async def tcp_stream(
    target: tuple[str, int], host: str = LOCAL, **options: Any
) -> AsyncIterator[TCPStream]:
    stream = TCPStream((host, 0), target, options=StreamOptions(**options), name="test")
    await stream.serve()
    try:
        yield stream
    finally:
        await stream.close(on_stop="kill")


@contextlib.asynccontextmanager
async def udp_stream(
    target: tuple[str, int], host: str = LOCAL, **options: Any
) -> AsyncIterator[UDPStream]:
    stream = UDPStream((host, 0), target, options=StreamOptions(**options), name="test")
    await stream.serve()
    try:
        yield stream
    finally:
        await stream.close()


async def connect(
    addr: tuple[str, int], source: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``addr``, from ``source`` (a loopback address) when given."""
    local = (source, 0) if source is not None else None
    return await asyncio.open_connection(addr[0], addr[1], limit=1 << 20, local_addr=local)


def capture(store: list[bytearray]) -> Handler:
    """A handler that appends, per connection, everything it receives until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        store.append(got)
        while data := await reader.read(1 << 20):
            got += data

    return handle


async def read_all(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until EOF (a reset counts as EOF), bounded in time."""
    chunks = []
    async with asyncio.timeout(timeout):
        while True:
            try:
                data = await reader.read(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


async def ended(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    """True once the connection ends (EOF or reset); data before that is discarded."""
    await read_all(reader, timeout)
    return True


class UDPEcho(asyncio.DatagramProtocol):
    """Echoes each datagram (prefixed with ``tag``); counts the peers it saw."""

    def __init__(self, tag: bytes = b"") -> None:
        self.tag = tag
        self.peers: set[Any] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.peers.add(addr)
        self.transport.sendto(self.tag + data, addr)


@contextlib.asynccontextmanager
async def udp_echo(host: str = LOCAL, tag: bytes = b"") -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((host, 0))
    transport, _ = await loop.create_datagram_endpoint(lambda: UDPEcho(tag), sock=sock)
    try:
        name = sock.getsockname()
        yield (name[0], name[1])
    finally:
        transport.close()


def udp_client(
    addr: tuple[str, int], *, connect: bool = True, source: str | None = None
) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if source is not None:
        sock.bind((source, 0))
    if connect:
        sock.connect(addr)
    return sock


async def recv_datagram(sock: socket.socket, timeout: float = 2.0) -> tuple[bytes, Any]:
    """One datagram and its source, or TimeoutError (works under uvloop too, which has no
    ``sock_recvfrom``)."""
    try:
        return sock.recvfrom(65536)
    except BlockingIOError:
        pass
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    loop.add_reader(sock.fileno(), wake.set)
    try:
        async with asyncio.timeout(timeout):
            while True:
                await wake.wait()
                wake.clear()
                try:
                    return sock.recvfrom(65536)
                except BlockingIOError:
                    continue
    finally:
        loop.remove_reader(sock.fileno())


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
