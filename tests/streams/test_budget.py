"""The descriptor budget in the data plane, through real loopback sockets: a flood of UDP
sources on one stream leaves a TCP stream its part, an established UDP flow is never refused
for newcomers, the session idle the longest gives way to a new client, and a closed stream
gives its share back."""

from __future__ import annotations

import asyncio
import socket

from godoxy_streams.streams.budget import DescriptorBudget

from ..helpers import eventually_async
from .kit import (
    connect,
    echo,
    recv_datagram,
    tcp_backend,
    tcp_stream,
    udp_client,
    udp_echo,
    udp_stream,
)

TOTAL = 60  # a TCP reserve of 15 descriptors: 7 connections beside the listener


async def exchange(sock: socket.socket, payload: bytes, timeout: float = 1.0) -> bool:
    sock.send(payload)
    try:
        return (await recv_datagram(sock, timeout))[0] == payload
    except TimeoutError:
        return False


async def test_a_udp_flood_leaves_a_tcp_stream_its_reserve() -> None:
    budget = DescriptorBudget(TOTAL)
    async with (
        udp_echo() as upstream,
        tcp_backend(echo()) as backend,
        udp_stream(upstream, budget=budget) as udp,
        tcp_stream(backend.addr, budget=budget) as tcp,
    ):
        established = udp_client(udp.local_addr, source="127.0.0.2")
        flood = [udp_client(udp.local_addr, source=f"127.0.1.{i}") for i in range(1, 80)]
        try:
            assert await exchange(established, b"first")
            for index, sock in enumerate(flood):
                sock.send(b"flood")
                if index % 10 == 9:
                    assert await exchange(established, b"still %d" % index), index
            await eventually_async(lambda: udp.stats.limited > 0, 3, what="the flood limited")
            assert budget.used()["udp"] <= TOTAL - budget.reserved
            writers = []
            for _ in range(7):  # TCP's reserve, whatever UDP took
                reader, writer = await connect(tcp.local_addr, "127.0.0.3")
                writer.write(b"ok")
                async with asyncio.timeout(3):
                    assert await reader.readexactly(2) == b"ok"
                writers.append(writer)
            assert tcp.stats.limited == 0
            for writer in writers:
                writer.close()
        finally:
            for sock in (established, *flood):
                sock.close()
    assert budget.in_use == 0 and budget.used() == {"tcp": 0, "udp": 0}


async def test_the_longest_idle_session_gives_way_never_an_active_one() -> None:
    async with udp_echo() as upstream, udp_stream(upstream, max_sessions=3, udp_timeout=2.0) as s:
        active = udp_client(s.local_addr, source="127.0.0.2")
        idle = [udp_client(s.local_addr, source=f"127.0.0.{i}") for i in (3, 4)]
        newcomer = udp_client(s.local_addr, source="127.0.0.5")
        try:
            for sock in (active, *idle):
                assert await exchange(sock, b"hello")
            assert not await exchange(newcomer, b"too soon", 0.2)  # all three are fresh
            assert s.stats.sessions_refused == 1 and s.stats.evicted == 0
            first_active = s.sessions[active.getsockname()]

            async def newcomer_served() -> bool:
                assert await exchange(active, b"active"), "the active flow was refused"
                return await exchange(newcomer, b"newcomer", 0.2)

            await eventually_async(newcomer_served, 5, what="an idle session gave way")
            assert s.stats.evicted == 1
            assert s.sessions[active.getsockname()] is first_active
            kept = {addr for addr in s.sessions if addr != active.getsockname()}
            assert newcomer.getsockname() in kept and len(kept & {i.getsockname() for i in idle})
        finally:
            for sock in (active, *idle, newcomer):
                sock.close()


async def test_an_idle_session_gives_way_when_the_budget_is_spent() -> None:
    budget = DescriptorBudget(4)  # the listener and three sessions
    async with udp_echo() as upstream, udp_stream(upstream, budget=budget, udp_timeout=2.0) as s:
        clients = [udp_client(s.local_addr, source=f"127.0.0.{i}") for i in range(2, 6)]
        try:
            for sock in clients[:3]:
                assert await exchange(sock, b"hello")
            assert not await exchange(clients[3], b"too soon", 0.2)
            assert s.stats.limited == 1 and budget.refusals == 1
            await eventually_async(
                lambda: exchange(clients[3], b"later", 0.2), 5, what="an idle session gave way"
            )
            assert s.stats.evicted == 1 and budget.in_use == 4
        finally:
            for sock in clients:
                sock.close()
    assert budget.in_use == 0
