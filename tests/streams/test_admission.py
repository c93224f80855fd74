"""Admission through real loopback sockets, clients bound to several 127.0.0.x sources:
access lists (TCP and UDP), the stream cap, per-source concurrency and rate, the daemon-wide
counter, and the refusal log."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from loguru import logger

from godoxy_streams.streams import StreamOptions, TCPStream
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.limits import ConcurrencyCounter

from ..helpers import eventually_async
from .kit import (
    LOCAL,
    connect,
    echo,
    ended,
    recv_datagram,
    tcp_backend,
    tcp_stream,
    udp_client,
    udp_echo,
    udp_stream,
)


async def echoes(addr: tuple[str, int], source: str) -> tuple[Any, Any]:
    """A connection from ``source`` that is proven to relay (it echoes)."""
    reader, writer = await connect(addr, source)
    writer.write(b"hi")
    async with asyncio.timeout(3):
        assert await reader.readexactly(2) == b"hi"
    return reader, writer


async def turned_away(addr: tuple[str, int], source: str) -> None:
    """A connection from ``source`` is closed at once, with nothing relayed."""
    try:  # the reset may already show in the connect
        reader, writer = await connect(addr, source)
    except ConnectionResetError:
        return
    started = time.monotonic()
    writer.write(b"hi")
    assert await ended(reader, 3)
    assert time.monotonic() - started < 1.0
    writer.close()


async def test_tcp_acl_denied_client_never_reaches_upstream() -> None:
    acl = Acl(allow=["127.0.0.2", "127.0.0.4"], deny=["127.0.0.4"])
    async with tcp_backend(echo()) as backend, tcp_stream(backend.addr, acl=acl) as stream:
        for source in ("127.0.0.3", "127.0.0.4", LOCAL):
            await turned_away(stream.local_addr, source)
        await eventually_async(lambda: stream.stats.active == 0, 3)
        assert backend.accepted == 0
        assert stream.stats.denied == 3
        _, writer = await echoes(stream.local_addr, "127.0.0.2")
        writer.close()
        assert backend.accepted == 1
        assert stream.stats.total == 4


async def test_udp_acl_denied_datagram_creates_no_session() -> None:
    acl = Acl(deny=["127.0.0.3"])
    async with udp_echo() as backend, udp_stream(backend, acl=acl) as stream:
        with udp_client(stream.local_addr, source="127.0.0.3") as denied:
            for _ in range(3):
                denied.send(b"no")
            with pytest.raises(TimeoutError):
                await recv_datagram(denied, 0.2)
        assert stream.stats.denied == 3
        assert not stream.sessions and not stream.pending
        assert stream.stats.total == 0
        with udp_client(stream.local_addr, source="127.0.0.2") as allowed:
            allowed.send(b"yes")
            assert (await recv_datagram(allowed))[0] == b"yes"
        assert stream.stats.total == 1


async def test_max_connections_refuses_excess_and_frees_slots() -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, max_connections=2) as stream,
    ):
        _, w1 = await echoes(stream.local_addr, "127.0.0.2")
        _, w2 = await echoes(stream.local_addr, "127.0.0.3")
        await turned_away(stream.local_addr, "127.0.0.4")
        assert stream.stats.limited == 1
        assert backend.accepted == 2
        w1.close()
        await eventually_async(lambda: stream.admitted == 1, 3)
        _, w3 = await echoes(stream.local_addr, "127.0.0.4")
        w2.close()
        w3.close()
        await eventually_async(lambda: stream.admitted == 0, 3)


async def test_per_source_concurrency() -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, per_source_max=2) as stream,
    ):
        held = [await echoes(stream.local_addr, "127.0.0.2") for _ in range(2)]
        await turned_away(stream.local_addr, "127.0.0.2")
        _, other = await echoes(stream.local_addr, "127.0.0.3")  # another source is not held up
        assert stream.stats.limited == 1
        held[0][1].close()
        await eventually_async(lambda: stream.admitted == 2, 3)
        _, again = await echoes(stream.local_addr, "127.0.0.2")
        for writer in (held[1][1], other, again):
            writer.close()


async def test_per_source_rate_flood_does_not_stop_another_source() -> None:
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, per_source_rate=0.01, per_source_burst=3) as stream,
    ):
        for _ in range(3):
            _, writer = await echoes(stream.local_addr, "127.0.0.2")
            writer.close()
        for _ in range(5):  # the flood: past its burst, this source is turned away
            await turned_away(stream.local_addr, "127.0.0.2")
        assert stream.stats.limited == 5
        _, writer = await echoes(stream.local_addr, "127.0.0.3")
        writer.close()
        assert backend.accepted == 4


async def test_global_limit_is_shared_by_streams() -> None:
    shared = ConcurrencyCounter(2)
    async with (
        tcp_backend(echo()) as backend,
        tcp_stream(backend.addr, global_limit=shared) as a,
        tcp_stream(backend.addr, global_limit=shared) as b,
    ):
        _, w1 = await echoes(a.local_addr, "127.0.0.2")
        _, w2 = await echoes(b.local_addr, "127.0.0.3")
        assert shared.total == 2
        await turned_away(a.local_addr, "127.0.0.4")
        await turned_away(b.local_addr, "127.0.0.4")
        assert (a.stats.limited, b.stats.limited) == (1, 1)
        w1.close()
        await eventually_async(lambda: shared.total == 1, 3)
        _, w3 = await echoes(b.local_addr, "127.0.0.4")
        w2.close()
        w3.close()
        await eventually_async(lambda: shared.total == 0, 3)


async def test_udp_per_source_sessions_and_rate() -> None:
    async with udp_echo() as backend, udp_stream(backend, per_source_max=1) as stream:
        with (
            udp_client(stream.local_addr, source="127.0.0.2") as first,
            udp_client(stream.local_addr, source="127.0.0.2") as second,
            udp_client(stream.local_addr, source="127.0.0.3") as other,
        ):
            first.send(b"1")
            assert (await recv_datagram(first))[0] == b"1"
            second.send(b"2")
            with pytest.raises(TimeoutError):
                await recv_datagram(second, 0.2)
            other.send(b"3")
            assert (await recv_datagram(other))[0] == b"3"
            assert stream.stats.limited == 1
            assert len(stream.sessions) == 2
    async with (
        udp_echo() as backend,
        udp_stream(backend, per_source_rate=0.01, per_source_burst=2) as stream,
    ):
        flood = [udp_client(stream.local_addr, source="127.0.0.2") for _ in range(6)]
        try:
            for sock in flood:
                sock.send(b"f")
            for sock in flood[:2]:
                assert (await recv_datagram(sock))[0] == b"f"
            await eventually_async(lambda: stream.stats.limited == 4, 3)
            with udp_client(stream.local_addr, source="127.0.0.3") as other:
                other.send(b"ok")
                assert (await recv_datagram(other))[0] == b"ok"
        finally:
            for sock in flood:
                sock.close()


async def test_udp_session_slots_are_released_on_expiry_and_close() -> None:
    shared = ConcurrencyCounter(10)
    async with (
        udp_echo() as backend,
        udp_stream(backend, per_source_max=1, global_limit=shared, udp_timeout=0.2) as stream,
    ):
        with udp_client(stream.local_addr, source="127.0.0.2") as client:
            client.send(b"a")
            assert (await recv_datagram(client))[0] == b"a"
            assert shared.total == 1
            await eventually_async(lambda: not stream.sessions, 3)
            assert shared.total == 0
            client.send(b"b")  # the per-source slot came back with the expiry
            assert (await recv_datagram(client))[0] == b"b"
            assert shared.total == 1
    assert shared.total == 0  # released by the stream's close


async def test_refusals_are_logged_rate_limited() -> None:
    """Five denials in a row make one line at once, and one more with the rest counted."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).strip()), level="INFO", format="{message}")
    try:
        stream = TCPStream((LOCAL, 0), (LOCAL, 9), options=StreamOptions(acl=Acl(deny=[LOCAL])))
        await stream.serve()
        try:
            for _ in range(5):
                await turned_away(stream.local_addr, LOCAL)
            assert stream.stats.denied == 5
        finally:
            await stream.close()
    finally:
        logger.remove(sink)
    denied = [line for line in lines if line.startswith("denied")]
    counted = sum(
        int(m.group(1)) if (m := re.search(r": (\d+) in the last", line)) else 1 for line in denied
    )
    assert counted == 5
    assert len(denied) < 5


async def test_udp_flood_of_new_ports_does_not_stop_an_established_client() -> None:
    """Spoofed-looking churn (200 new source ports, from the established client's own address
    too) is rate-limited and meets a full table, while the established session is served."""
    async with (
        udp_echo() as backend,
        udp_stream(backend, per_source_rate=5, per_source_burst=5, max_sessions=20) as stream,
    ):
        with udp_client(stream.local_addr, source="127.0.0.2") as established:
            established.send(b"hello")
            assert (await recv_datagram(established))[0] == b"hello"
            flood = [
                udp_client(stream.local_addr, source=f"127.0.0.{2 + i % 3}") for i in range(200)
            ]
            try:
                for i, sock in enumerate(flood):
                    sock.send(b"x")
                    if i % 50 == 0:
                        established.send(f"still {i}".encode())
                        assert (await recv_datagram(established))[0] == f"still {i}".encode()
                await eventually_async(lambda: stream.stats.limited >= 150, 3)
                established.send(b"after")
                assert (await recv_datagram(established))[0] == b"after"
                assert len(stream.sessions) <= 20
            finally:
                for sock in flood:
                    sock.close()
