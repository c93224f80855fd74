"""Pooled streams through real loopback sockets: the member choice per TCP connection and UDP
session, failover on a failed dial within one client connection, no healthy member, member
counters, and a member set changed under live connections."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

from godoxy_streams.streams import ConnRecord, StreamOptions, TCPStream, UDPStream
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.pool import MemberSpec
from godoxy_streams.streams.tcp.balanced import Balanced

from ..helpers import eventually_async, free_port
from .kit import LOCAL, connect, echo, ended, recv_datagram, tcp_backend, udp_client, udp_echo


def members(*addrs: tuple[str, int]) -> list[MemberSpec]:
    return [MemberSpec(f"m{i}", addr, f"c{i}") for i, addr in enumerate(addrs)]


@contextlib.asynccontextmanager
async def tagged_backends(n: int) -> AsyncIterator[list[tuple[str, int]]]:
    async with contextlib.AsyncExitStack() as stack:
        addrs = []
        for i in range(n):
            backend = await stack.enter_async_context(tcp_backend(echo(f"b{i}:".encode())))
            addrs.append(backend.addr)
        yield addrs


async def ask(addr: tuple[str, int]) -> bytes:
    reader, writer = await connect(addr)
    writer.write(b"x")
    try:
        return await asyncio.wait_for(reader.readexactly(4), 3)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def pooled(
    specs: list[MemberSpec], mode: str = "round_robin", **options: object
) -> AsyncIterator[TCPStream]:
    stream = TCPStream((LOCAL, 0), specs[0].address, options=StreamOptions(**options))  # type: ignore[arg-type]
    stream.set_pool(specs, mode)
    await stream.serve()
    try:
        yield stream
    finally:
        await stream.close(on_stop="kill")


async def test_round_robin_spreads_connections_evenly() -> None:
    async with tagged_backends(3) as addrs, pooled(members(*addrs)) as stream:
        replies = [await ask(stream.local_addr) for _ in range(30)]
        assert collections.Counter(replies) == {b"b0:x": 10, b"b1:x": 10, b"b2:x": 10}
        assert stream.pool is not None
        assert [m.total for m in stream.pool.members] == [10, 10, 10]
        await eventually_async(lambda: all(m.active == 0 for m in stream.pool.members), 3)  # type: ignore[union-attr]


async def test_least_conn_sends_new_connections_to_the_idle_member() -> None:
    async with tagged_backends(2) as addrs, pooled(members(*addrs), "least_conn") as stream:
        held = [await connect(stream.local_addr) for _ in range(3)]
        for _, writer in held:
            writer.write(b"x")
        for reader, _ in held:
            await reader.readexactly(4)
        pool = stream.pool
        assert pool is not None
        assert sorted(m.active for m in pool.members) == [1, 2]
        idle = min(pool.members, key=lambda m: m.active)
        tag = f"b{pool.members.index(idle)}:x".encode()
        assert await ask(stream.local_addr) == tag
        for _, writer in held:
            writer.close()


async def test_ip_hash_keeps_a_client_on_one_member() -> None:
    async with tagged_backends(3) as addrs, pooled(members(*addrs), "ip_hash") as stream:
        replies = {await ask(stream.local_addr) for _ in range(9)}
        assert len(replies) == 1


async def test_a_failed_dial_moves_to_the_next_member_in_the_same_connection() -> None:
    dead = (LOCAL, free_port())
    async with tagged_backends(2) as addrs, pooled(members(dead, *addrs)) as stream:
        replies = [await ask(stream.local_addr) for _ in range(6)]
        assert set(replies) <= {b"b0:x", b"b1:x"} and len(replies) == 6
        pool = stream.pool
        assert pool is not None
        down = pool.members[0]
        assert down.failures == 1 and "refused" in (down.last_error or "")
        assert pool.view()[0]["state"] == "failing"
        assert stream.stats.dial_errors == {"refused": 1}


async def test_failover_is_bounded_and_then_the_client_is_closed() -> None:
    dead = [(LOCAL, free_port()) for _ in range(4)]
    async with pooled(members(*dead)) as stream:
        reader, writer = await connect(stream.local_addr)
        assert await ended(reader)
        writer.close()
        pool = stream.pool
        assert pool is not None
        assert sum(m.failures for m in pool.members) == 3
        assert stream.stats.dial_errors == {"refused": 3}


async def test_no_healthy_member_resets_at_once_and_counts_it() -> None:
    async with tagged_backends(2) as addrs, pooled(members(*addrs)) as stream:
        pool = stream.pool
        assert pool is not None
        for m in pool.members:
            pool.set_probe(m.key, False, "probe failed")
        assert not pool.any_available()
        reader, writer = await connect(stream.local_addr)
        assert await ended(reader, 2)
        writer.close()
        assert stream.stats.no_upstream == 1
        assert all(m.total == 0 for m in pool.members)
        pool.set_probe(pool.members[1].key, True, None)
        assert await ask(stream.local_addr) == b"b1:x"


async def test_a_healthy_lone_member_keeps_the_plain_relay() -> None:
    async with tagged_backends(1) as addrs, pooled(members(*addrs)) as stream:
        assert not issubclass(stream.conn_cls, Balanced)
        pool = stream.pool
        assert pool is not None
        pool.set_probe("m0", False, "down")
        assert issubclass(stream.conn_cls, Balanced)
        reader, writer = await connect(stream.local_addr)
        assert await ended(reader, 2)
        writer.close()
        pool.set_probe("m0", True, None)
        assert not issubclass(stream.conn_cls, Balanced)
        assert await ask(stream.local_addr) == b"b0:x"


async def test_members_change_under_live_connections() -> None:
    async with tagged_backends(3) as addrs, pooled(members(addrs[0])) as stream:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"1")
        assert await reader.readexactly(4) == b"b0:1"
        stream.set_pool(members(addrs[0], addrs[1], addrs[2])[1:])
        assert {await ask(stream.local_addr) for _ in range(4)} == {b"b1:x", b"b2:x"}
        writer.write(b"2")  # the live connection still reaches its member
        assert await reader.readexactly(4) == b"b0:2"
        writer.close()


async def test_guarded_and_recorded_streams_balance_too() -> None:
    records: list[ConnRecord] = []
    async with tagged_backends(2) as addrs:
        stream = TCPStream(
            (LOCAL, 0), addrs[0], options=StreamOptions(acl=Acl(allow=("127.0.0.0/8",)))
        )
        stream.set_pool(members(*addrs))
        await stream.serve(on_close=records.append)
        try:
            assert {await ask(stream.local_addr) for _ in range(4)} == {b"b0:x", b"b1:x"}
            await eventually_async(lambda: len(records) == 4, 3)
            assert {r.target for r in records} == set(addrs)
        finally:
            await stream.close(on_stop="kill")


async def test_udp_sessions_are_spread_and_counted_per_member() -> None:
    async with udp_echo(tag=b"u0:") as a, udp_echo(tag=b"u1:") as b:
        stream = UDPStream((LOCAL, 0), a, options=StreamOptions(udp_timeout=0.2))
        pool = stream.set_pool(members(a, b))
        await stream.serve()
        try:
            replies = []
            clients = [udp_client(stream.local_addr) for _ in range(4)]
            for client in clients:
                client.send(b"p")
                replies.append((await recv_datagram(client))[0])
            assert collections.Counter(replies) == {b"u0:p": 2, b"u1:p": 2}
            assert [m.active for m in pool.members] == [2, 2]
            await eventually_async(lambda: all(m.active == 0 for m in pool.members), 3)
            for m in pool.members:
                pool.set_probe(m.key, False, "down")
            clients[0].send(b"q")
            await eventually_async(lambda: stream.stats.no_upstream == 1, 3)
            for client in clients:
                client.close()
        finally:
            await stream.close()


async def test_udp_sessions_move_off_a_member_that_goes_down() -> None:
    async with udp_echo(tag=b"u0:") as a, udp_echo(tag=b"u1:") as b:
        stream = UDPStream((LOCAL, 0), a, options=StreamOptions(udp_timeout=60))
        pool = stream.set_pool(members(a, b))
        await stream.serve()
        try:
            client = udp_client(stream.local_addr)
            client.send(b"p")
            first = (await recv_datagram(client))[0]
            holder = 0 if first.startswith(b"u0:") else 1
            pool.set_probe(pool.members[holder].key, False, "down")
            assert pool.members[holder].active == 0 and stream.stats.active == 0
            client.send(b"q")
            assert (await recv_datagram(client))[0] == f"u{1 - holder}:q".encode()
            client.close()
        finally:
            await stream.close()
