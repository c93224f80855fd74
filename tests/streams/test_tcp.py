"""TCPStream through real loopback sockets: relay, integrity, half-close, resets, dial
failures, timeouts, flow control, close modes, retarget and hooks."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import socket
import struct
import time

import pytest

from godoxy_streams.errors import BindNotAllowed, ListenError, PortInUse, Refused
from godoxy_streams.streams import ConnContext, TCPStream
from godoxy_streams.streams.sockets import translate_bind_error
from godoxy_streams.streams.tcp.relay import HIGH_WATER

from ..helpers import eventually_async, free_port
from .kit import LOCAL, connect, echo, ended, ipv6_loopback, read_all, tcp_backend, tcp_stream


async def test_echo_and_stats() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr) as stream:
        assert stream.local_addr[1] != 0
        reader, writer = await connect(stream.local_addr)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        assert stream.stats.active == 1
        writer.write_eof()
        assert await read_all(reader) == b""
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)
        assert stream.stats.total == 1
        assert stream.stats.bytes_in == 5
        assert stream.stats.bytes_out == 5


async def test_64_mib_each_way_concurrently_intact() -> None:
    size = 64 << 20
    up = random.Random(1).randbytes(size)
    down = random.Random(2).randbytes(size)
    got_up = hashlib.sha256()
    up_len = 0

    async def backend_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal up_len

        async def send() -> None:
            view = memoryview(down)
            for i in range(0, size, 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        while data := await reader.read(1 << 20):
            got_up.update(data)
            up_len += len(data)
        await sender

    async with tcp_backend(backend_side) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)

        async def send() -> None:
            view = memoryview(up)
            for i in range(0, size, 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await writer.drain()
            writer.write_eof()

        got_down = hashlib.sha256()
        down_len = 0
        async with asyncio.timeout(60):
            sender = asyncio.create_task(send())
            while data := await reader.read(1 << 20):
                got_down.update(data)
                down_len += len(data)
            await sender
        writer.close()
        assert down_len == size
        assert got_down.digest() == hashlib.sha256(down).digest()
        await eventually_async(lambda: up_len == size, 10)
        assert got_up.digest() == hashlib.sha256(up).digest()
        await eventually_async(lambda: stream.stats.active == 0, 5)
        assert stream.stats.bytes_in == size
        assert stream.stats.bytes_out == size


async def test_half_close_client_first() -> None:
    """Client sends and half-closes; the backend sees EOF, then answers; client reads it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(-1)  # to EOF: needs the client's FIN propagated
        writer.write(b"got " + data)
        await writer.drain()
        writer.write_eof()

    async with tcp_backend(handler) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"question")
        writer.write_eof()
        assert await read_all(reader) == b"got question"
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)


async def test_half_close_server_first() -> None:
    """The backend sends and half-closes first; the client still sends afterwards."""
    received = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner")
        writer.write_eof()
        received.set_result(await reader.read(-1))

    async with tcp_backend(handler) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        assert await read_all(reader) == b"banner"  # server FIN reached the client
        writer.write(b"late data")
        writer.write_eof()
        async with asyncio.timeout(3):
            assert await received == b"late data"
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)


async def test_upstream_reset_ends_client_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with tcp_backend(handler) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"ping")
        with pytest.raises(ConnectionResetError):  # the reset is passed on as a reset
            async with asyncio.timeout(3):
                await reader.readexactly(1)
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)


async def test_dial_to_closed_port_closes_client_and_counts() -> None:
    port = free_port("tcp")
    async with tcp_stream((LOCAL, port)) as stream:
        reader, writer = await connect(stream.local_addr)
        started = time.monotonic()
        assert await ended(reader, 2)
        assert time.monotonic() - started < 1.0
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)
        assert stream.stats.dial_errors == {"refused": 1}


async def test_dial_timeout() -> None:
    """A listener whose accept queue is full drops SYNs: the dial times out."""
    full = socket.socket()
    full.bind((LOCAL, 0))
    full.listen(0)
    fillers = []
    try:
        for _ in range(3):  # backlog 0 holds one; the rest wait in SYN-SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(full.getsockname())
            fillers.append(s)
        async with tcp_stream(full.getsockname(), dial_timeout=0.3) as stream:
            reader, writer = await connect(stream.local_addr)
            started = time.monotonic()
            assert await ended(reader, 3)
            elapsed = time.monotonic() - started
            writer.close()
            assert 0.2 < elapsed < 2.0
            assert stream.stats.dial_errors == {"timeout": 1}
    finally:
        for s in fillers:
            s.close()
        full.close()


async def test_idle_timeout_closes_connection() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr, idle_timeout=0.3) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        started = time.monotonic()
        assert await ended(reader, 3)
        assert time.monotonic() - started >= 0.25
        writer.close()
        await eventually_async(lambda: stream.stats.active == 0, 3)


async def test_traffic_keeps_idle_connection_open() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr, idle_timeout=0.4) as stream:
        reader, writer = await connect(stream.local_addr)
        for _ in range(8):  # 8 x 0.1 s = twice the idle timeout, with traffic
            writer.write(b"y")
            assert await reader.readexactly(1) == b"y"
            await asyncio.sleep(0.1)
        assert stream.stats.active == 1
        writer.close()


async def test_slow_reader_bounds_proxy_buffers() -> None:
    total = 32 << 20
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        chunk = b"z" * (1 << 16)
        while sent < total:
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
        writer.write_eof()

    async with tcp_backend(flood) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        bound = 2 * HIGH_WATER + (1 << 20)  # write buffer + one read, with slack
        peak = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the client reads nothing for a second
            peak = max(peak, stream.buffered_bytes())
            await asyncio.sleep(0.01)
        assert 0 < sent < total / 2, "back-pressure must reach the backend"
        assert peak <= bound
        received = 0
        async with asyncio.timeout(30):
            while data := await reader.read(1 << 16):  # now a slow-ish reader
                received += len(data)
                peak = max(peak, stream.buffered_bytes())
        writer.close()
        assert received == total
        assert peak <= bound


async def test_close_drain_lets_live_connection_finish() -> None:
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr)
        await stream.serve()
        port = stream.local_addr[1]
        reader, writer = await connect(stream.local_addr)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        closing = asyncio.create_task(stream.close(grace=5))
        await asyncio.sleep(0)
        with socket.socket() as s:  # the port is free at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOCAL, port))
        writer.write(b"b")  # the live connection still works while draining
        assert await reader.readexactly(1) == b"b"
        assert not closing.done()
        writer.write_eof()
        assert await read_all(reader) == b""
        writer.close()
        async with asyncio.timeout(2):
            await closing
        assert stream.stats.active == 0


async def test_close_drain_times_out_then_cuts() -> None:
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr)
        await stream.serve()
        reader, writer = await connect(stream.local_addr)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        started = time.monotonic()
        await stream.close(grace=0.3)
        assert 0.25 <= time.monotonic() - started < 2
        assert await ended(reader, 2)
        writer.close()
        assert stream.stats.active == 0


async def test_close_kill_cuts_at_once() -> None:
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr)
        await stream.serve()
        reader, writer = await connect(stream.local_addr)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        started = time.monotonic()
        await stream.close(on_stop="kill")
        assert time.monotonic() - started < 1
        assert await ended(reader, 2)
        writer.close()
        assert stream.stats.active == 0


async def test_retarget_keeps_listener_and_old_connection() -> None:
    async with (
        tcp_backend(echo(b"A:")) as a,
        tcp_backend(echo(b"B:")) as b,
        tcp_stream(a.addr) as stream,
    ):
        local = stream.local_addr
        r1, w1 = await connect(local)
        w1.write(b"1")
        assert await r1.readexactly(3) == b"A:1"
        stream.retarget(b.addr)
        assert stream.local_addr == local
        r2, w2 = await connect(local)
        w2.write(b"2")
        assert await r2.readexactly(3) == b"B:2"
        w1.write(b"3")
        assert await r1.readexactly(3) == b"A:3"
        w1.close()
        w2.close()
        assert (a.accepted, b.accepted) == (1, 1)


async def test_pre_dial_refuses() -> None:
    seen: list[ConnContext] = []

    def refuse(ctx: ConnContext) -> None:
        seen.append(ctx)
        raise Refused("not now")

    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr) as stream:
        await stream.close(on_stop="kill")
        stream = TCPStream((LOCAL, 0), backend.addr, name="refuser")
        await stream.serve(pre_dial=refuse)
        try:
            reader, writer = await connect(stream.local_addr)
            assert await ended(reader, 2)
            writer.close()
            assert stream.stats.refused == 1
            assert backend.accepted == 0
            ctx = seen[0]
            assert ctx.proto == "tcp"
            assert ctx.target == backend.addr
            assert ctx.local == stream.local_addr
            assert ctx.client[0] == LOCAL
            assert ctx.stream == "refuser"
        finally:
            await stream.close(on_stop="kill")


async def test_async_pre_dial_and_on_read_hooks() -> None:
    reads: list[ConnContext] = []
    gate = asyncio.Event()

    async def wake(ctx: ConnContext) -> None:
        await gate.wait()

    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr)
        await stream.serve(pre_dial=wake, on_read=reads.append)
        try:
            reader, writer = await connect(stream.local_addr)
            writer.write(b"early")  # held until the hook lets the dial go on
            await asyncio.sleep(0.05)
            assert backend.accepted == 0
            gate.set()
            assert await reader.readexactly(5) == b"early"
            assert len(reads) >= 1
            writer.close()
        finally:
            await stream.close(on_stop="kill")


async def test_bind_errors_and_port_zero() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr) as first:
        second = TCPStream(first.local_addr, backend.addr)
        with pytest.raises(PortInUse) as info:
            await second.serve()
        assert isinstance(info.value.__cause__, OSError)


@pytest.mark.skipif(not ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
async def test_ipv6_loopback() -> None:
    async with (
        tcp_backend(echo(), host="::1") as backend,
        tcp_stream(backend.addr, host="::1") as stream,
    ):
        assert stream.local_addr[0] == "::1"
        reader, writer = await connect(stream.local_addr)
        writer.write(b"six")
        assert await reader.readexactly(3) == b"six"
        writer.close()


def test_bind_error_translation() -> None:
    addr = ("127.0.0.1", 80)
    assert isinstance(translate_bind_error(OSError(errno.EADDRINUSE, "x"), "tcp", addr), PortInUse)
    for code in (errno.EACCES, errno.EPERM):
        error = translate_bind_error(OSError(code, "x"), "udp", addr)
        assert isinstance(error, BindNotAllowed)
    other = translate_bind_error(OSError(errno.EADDRNOTAVAIL, "nope"), "tcp", addr)
    assert type(other) is ListenError
    assert "tcp 127.0.0.1:80" in str(other)


@pytest.mark.skipif(not ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
async def test_wildcard_ipv6_bind_is_dual_stack() -> None:
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr, host="::") as stream:
        port = stream.local_addr[1]
        for host in ("127.0.0.1", "::1"):
            reader, writer = await connect((host, port))
            writer.write(b"dual")
            assert await reader.readexactly(4) == b"dual"
            writer.close()
