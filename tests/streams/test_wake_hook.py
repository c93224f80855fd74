"""A ``pre_dial`` hook that waits for the upstream and moves the stream to it (how sleep/wake
holds a client while a container wakes): the client's bytes and datagrams sent meanwhile are
held (bounded) and arrive intact at where the stream points once the hook is done; a pool's
member is picked only then; a sleeping member is never picked; ACLs run before the hook."""

from __future__ import annotations

import asyncio

from godoxy_streams.errors import Refused
from godoxy_streams.streams import ConnContext, StreamOptions, TCPStream, UDPStream
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.pool import MemberSpec
from godoxy_streams.streams.udp.session import PENDING_MAX

from ..helpers import eventually_async, free_port
from .kit import (
    LOCAL,
    connect,
    echo,
    ended,
    read_all,
    recv_datagram,
    tcp_backend,
    udp_client,
    udp_echo,
)

NOWHERE = (LOCAL, 9)  # a sleeping member's address: never dialled


class Wake:
    """A hook that holds every client until ``woken``, counting who it held."""

    def __init__(self, then: object = None) -> None:
        self.event = asyncio.Event()
        self.held: list[ConnContext] = []
        self.then = then

    async def __call__(self, ctx: ConnContext) -> None:
        self.held.append(ctx)
        await self.event.wait()
        if isinstance(self.then, Exception):
            raise self.then


def asleep(addr: tuple[str, int] = NOWHERE) -> list[MemberSpec]:
    return [MemberSpec("c1", addr, "sleepy", sleeping=True)]


def awake(addr: tuple[str, int]) -> list[MemberSpec]:
    return [MemberSpec("c1", addr, "sleepy")]


async def test_tcp_bytes_sent_while_the_hook_waits_reach_the_woken_upstream() -> None:
    wake = Wake()
    async with tcp_backend(echo()) as backend:
        stream = TCPStream((LOCAL, 0), NOWHERE, name="t")
        stream.set_pool(asleep())
        await stream.serve(pre_dial=wake)
        try:
            assert stream.pool is not None and stream.pool.members[0].state(0) == "sleeping"
            reader, writer = await connect(stream.local_addr)
            payload = bytes(range(256)) * 1024  # 256 KiB: more than one read, held meanwhile
            writer.write(payload)
            await eventually_async(lambda: wake.held, 3, what="client held by the hook")
            await eventually_async(lambda: stream.buffered_bytes() > 0, 3, what="bytes held")
            assert backend.accepted == 0
            stream.set_pool(awake(backend.addr))  # woke: at a new address
            wake.event.set()
            assert await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
            writer.write_eof()
            assert await read_all(reader) == b""
            writer.close()
            assert backend.accepted == 1 and stream.stats.bytes_in == len(payload)
        finally:
            await stream.close(on_stop="kill")


async def test_a_refusing_hook_closes_the_held_client_and_counts_it() -> None:
    wake = Wake(then=Refused("did not wake: exited with code 2"))
    stream = TCPStream((LOCAL, 0), NOWHERE)
    stream.set_pool(asleep())
    await stream.serve(pre_dial=wake)
    try:
        reader, writer = await connect(stream.local_addr)
        writer.write(b"lost")
        await eventually_async(lambda: wake.held, 3)
        wake.event.set()
        assert await ended(reader)
        writer.close()
        assert (stream.stats.refused, stream.stats.no_upstream) == (1, 0)
        assert stream.pool is not None and stream.pool.members[0].total == 0  # never dialled
    finally:
        await stream.close(on_stop="kill")


async def test_tcp_acl_denies_before_the_hook_runs() -> None:
    wake = Wake()
    stream = TCPStream((LOCAL, 0), NOWHERE, options=StreamOptions(acl=Acl(deny=["127.0.0.0/8"])))
    stream.set_pool(asleep())
    await stream.serve(pre_dial=wake)
    try:
        reader, writer = await connect(stream.local_addr)
        assert await ended(reader)
        writer.close()
        await eventually_async(lambda: stream.stats.denied == 1, 3)
        assert wake.held == []
    finally:
        await stream.close(on_stop="kill")


async def test_a_sleeping_member_is_not_picked_while_another_is_awake() -> None:
    async with tcp_backend(echo(b"up:")) as backend:
        stream = TCPStream((LOCAL, 0), NOWHERE)
        stream.set_pool(asleep() + [MemberSpec("c2", backend.addr, "awake")])
        await stream.serve()
        try:
            for _ in range(4):
                reader, writer = await connect(stream.local_addr)
                writer.write(b"x")
                assert await asyncio.wait_for(reader.readexactly(4), 3) == b"up:x"
                writer.close()
            assert backend.accepted == 4
        finally:
            await stream.close(on_stop="kill")


async def test_udp_datagrams_sent_while_the_hook_waits_reach_the_woken_upstream() -> None:
    wake = Wake()
    async with udp_echo(tag=b"woke:") as backend:
        stream = UDPStream((LOCAL, 0), NOWHERE)
        stream.set_pool(asleep())
        await stream.serve(pre_dial=wake)
        try:
            with udp_client(stream.local_addr) as client:
                for i in range(PENDING_MAX + 6):
                    client.send(b"%d" % i)
                await eventually_async(
                    lambda: stream.stats.dropped == 6, 3, what="datagrams past the bound"
                )
                assert len(wake.held) == 1 and stream.stats.no_upstream == 0
                stream.set_pool(awake(backend))
                wake.event.set()
                got = [(await recv_datagram(client))[0] for _ in range(PENDING_MAX)]
                assert got == [b"woke:%d" % i for i in range(PENDING_MAX)]  # in order
                client.send(b"after")
                assert (await recv_datagram(client))[0] == b"woke:after"
            assert stream.stats.total == 1
        finally:
            await stream.close()


async def test_udp_refused_wake_drops_the_held_datagrams_and_acl_runs_first() -> None:
    wake = Wake(then=Refused("did not wake"))
    stream = UDPStream((LOCAL, 0), NOWHERE, options=StreamOptions(acl=Acl(deny=["127.0.0.2/32"])))
    stream.set_pool(asleep())
    await stream.serve(pre_dial=wake)
    try:
        with udp_client(stream.local_addr, source="127.0.0.2") as denied:
            denied.send(b"no")
            await eventually_async(lambda: stream.stats.denied == 1, 3)
        assert wake.held == []
        with udp_client(stream.local_addr) as client:
            client.send(b"a")
            client.send(b"b")
            await eventually_async(lambda: wake.held, 3)
            wake.event.set()
            await eventually_async(lambda: stream.stats.refused == 1, 3)
            assert stream.stats.dropped == 2 and stream.stats.active == 0
    finally:
        await stream.close()


async def test_a_hook_may_retarget_a_plain_stream() -> None:
    async with tcp_backend(echo(b"new:")) as backend:
        stream = TCPStream((LOCAL, 0), (LOCAL, free_port()))

        async def move(ctx: ConnContext) -> None:
            stream.retarget(backend.addr)

        await stream.serve(pre_dial=move)
        try:
            reader, writer = await connect(stream.local_addr)
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(5), 3) == b"new:x"
            writer.close()
        finally:
            await stream.close(on_stop="kill")
