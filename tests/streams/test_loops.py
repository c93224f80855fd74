"""The data plane under both event loops (``loops.run``), and the loop choice itself."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct

import pytest

from godoxy_streams.app import loops
from godoxy_streams.app.loops import LoopKind
from godoxy_streams.streams import TCPStream

from ..helpers import eventually_async, free_port
from .kit import (
    LOCAL,
    connect,
    echo,
    ended,
    read_all,
    recv_datagram,
    tcp_backend,
    tcp_stream,
    udp_client,
    udp_echo,
    udp_stream,
)

KINDS: list[LoopKind] = ["asyncio", "uvloop"] if loops.uvloop_available() else ["asyncio"]


def test_loop_choice() -> None:
    assert loops.loop_name("asyncio") == "asyncio"
    expected = "uvloop" if loops.uvloop_available() else "asyncio"
    assert loops.loop_name("auto") == expected
    loop = loops.new_event_loop("auto")
    try:
        assert (type(loop).__module__.split(".")[0] == "uvloop") == (expected == "uvloop")
    finally:
        loop.close()
    assert loops.run(asyncio.sleep(0, "done"), kind="asyncio") == "done"


async def _tcp_scenario() -> None:
    size = 8 << 20
    payload = random.Random(3).randbytes(size)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(-1)
        writer.write(hashlib.sha256(data).digest())
        writer.write(data)
        await writer.drain()
        writer.write_eof()

    async with tcp_backend(handler) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(payload)
        writer.write_eof()  # half-close; the answer comes after
        data = await read_all(reader, 30)
        writer.close()
        assert data[:32] == hashlib.sha256(payload).digest()
        assert data[32:] == payload
        await eventually_async(lambda: stream.stats.active == 0, 3)

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        linger = struct.pack("ii", 1, 0)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()

    async with tcp_backend(reset) as backend, tcp_stream(backend.addr) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"!")
        assert await ended(reader)
        writer.close()

    async with tcp_stream((LOCAL, free_port("tcp"))) as stream:
        reader, writer = await connect(stream.local_addr)
        assert await ended(reader)
        writer.close()
        assert stream.stats.dial_errors == {"refused": 1}

    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), backend.addr)
        await stream.serve()
        port = stream.local_addr[1]
        reader, writer = await connect(stream.local_addr)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        closing = asyncio.create_task(stream.close(grace=5))
        await asyncio.sleep(0)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOCAL, port))  # the port is free at once
        writer.write(b"b")
        assert await reader.readexactly(1) == b"b"
        writer.close()
        async with asyncio.timeout(3):
            await closing


async def _udp_scenario() -> None:
    async with udp_echo() as backend, udp_stream(backend, host="0.0.0.0", udp_timeout=0.2) as s:
        port = s.local_addr[1]
        with udp_client(("127.0.0.2", port), connect=False) as client:
            big = b"q" * 65_000
            client.sendto(big, ("127.0.0.2", port))
            data, source = await recv_datagram(client)
            assert data == big
            assert source == ("127.0.0.2", port)
        await eventually_async(lambda: s.stats.active == 0, 3)
        assert s.stats.total == 1


@pytest.mark.parametrize("kind", KINDS)
def test_tcp_under_loop(kind: LoopKind) -> None:
    loops.run(_tcp_scenario(), kind=kind)


@pytest.mark.parametrize("kind", KINDS)
def test_udp_under_loop(kind: LoopKind) -> None:
    loops.run(_udp_scenario(), kind=kind)
