"""UDPStream through real loopback sockets: sessions per client, order, big datagrams,
expiry, the table limit, IPv6, wildcard replies from the arrival address, hooks, retarget."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from godoxy_streams.errors import PortInUse, Refused
from godoxy_streams.streams import ConnContext, UDPStream

from ..helpers import eventually_async
from .kit import LOCAL, ipv6_loopback, recv_datagram, udp_client, udp_echo, udp_stream


async def test_echo_and_stats() -> None:
    async with udp_echo() as backend, udp_stream(backend) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"ping")
            data, _ = await recv_datagram(client)
            assert data == b"ping"
        assert (stream.stats.active, stream.stats.total) == (1, 1)
        assert (stream.stats.bytes_in, stream.stats.bytes_out) == (4, 4)


async def test_200_clients_get_their_own_replies_in_order() -> None:
    clients_n, per_client = 200, 20
    async with udp_echo() as backend, udp_stream(backend) as stream:
        clients = [udp_client(stream.local_addr) for _ in range(clients_n)]
        try:
            received: list[list[int]] = [[] for _ in clients]

            async def collect(i: int, sock: socket.socket) -> None:
                while len(received[i]) < per_client:
                    data, _ = await recv_datagram(sock, 5)
                    owner, seq = struct.unpack("!II", data)
                    assert owner == i, "a reply reached the wrong client"
                    received[i].append(seq)

            collectors = [asyncio.create_task(collect(i, c)) for i, c in enumerate(clients)]
            for seq in range(per_client):
                for i, sock in enumerate(clients):
                    sock.send(struct.pack("!II", i, seq))
                await asyncio.sleep(0)  # let replies drain between rounds
            async with asyncio.timeout(10):
                await asyncio.gather(*collectors)
            for seqs in received:
                assert seqs == list(range(per_client))
            assert stream.stats.total == clients_n
            assert stream.stats.active == clients_n
        finally:
            for sock in clients:
                sock.close()


async def test_burst_from_one_client_in_order() -> None:
    """A burst exercises the batched drains on both sockets (after single-datagram reads)."""
    async with udp_echo() as backend, udp_stream(backend) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"warm")
            assert (await recv_datagram(client))[0] == b"warm"
            for seq in range(200):
                client.send(struct.pack("!I", seq))
            got = [struct.unpack("!I", (await recv_datagram(client))[0])[0] for _ in range(200)]
            assert got == list(range(200))
            assert stream.stats.dropped == 0


async def test_60kb_datagram_intact() -> None:
    payload = bytes(range(256)) * 240  # 61,440 bytes
    async with udp_echo() as backend, udp_stream(backend) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(payload)
            data, _ = await recv_datagram(client)
            assert data == payload


async def test_session_expires_when_idle_and_comes_back() -> None:
    async with udp_echo() as backend, udp_stream(backend, udp_timeout=0.3) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"1")
            assert (await recv_datagram(client))[0] == b"1"
            assert stream.stats.active == 1
            await eventually_async(lambda: stream.stats.active == 0, 3)
            assert not stream.sessions
            client.send(b"2")
            assert (await recv_datagram(client))[0] == b"2"
            assert stream.stats.total == 2


async def test_traffic_keeps_session_alive() -> None:
    async with udp_echo() as backend, udp_stream(backend, udp_timeout=0.4) as stream:
        with udp_client(stream.local_addr) as client:
            for i in range(8):  # 8 x 0.1 s = twice the timeout, with traffic
                client.send(b"%d" % i)
                assert (await recv_datagram(client))[0] == b"%d" % i
                await asyncio.sleep(0.1)
            assert stream.stats.total == 1


async def test_session_table_limit() -> None:
    async with udp_echo() as backend, udp_stream(backend, max_sessions=3) as stream:
        clients = [udp_client(stream.local_addr) for _ in range(5)]
        try:
            for sock in clients:
                sock.send(b"hi")
            for sock in clients[:3]:
                assert (await recv_datagram(sock))[0] == b"hi"
            for sock in clients[3:]:
                with pytest.raises(TimeoutError):
                    await recv_datagram(sock, 0.2)
            assert stream.stats.active == 3
            assert stream.stats.sessions_refused == 2
        finally:
            for sock in clients:
                sock.close()


@pytest.mark.skipif(not ipv6_loopback(), reason="this host has no IPv6 loopback (::1)")
async def test_ipv6_loopback() -> None:
    async with udp_echo("::1") as backend, udp_stream(backend, host="::1") as stream:
        assert stream.local_addr[0] == "::1"
        with udp_client(stream.local_addr) as client:
            client.send(b"six")
            assert (await recv_datagram(client))[0] == b"six"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
async def test_wildcard_bind_replies_from_arrival_address(wildcard: str) -> None:
    if wildcard == "::" and not ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback (::1)")
    async with udp_echo() as backend, udp_stream(backend, host=wildcard) as stream:
        port = stream.local_addr[1]
        for local in ("127.0.0.2", "127.0.0.1"):
            with udp_client((local, port), connect=False) as client:
                client.sendto(b"where", (local, port))
                data, source = await recv_datagram(client)
                assert data == b"where"
                assert source[0] == local
                assert source[1] == port


async def test_pre_dial_refuses_session() -> None:
    seen: list[ConnContext] = []

    def refuse(ctx: ConnContext) -> None:
        seen.append(ctx)
        raise Refused("no")

    async with udp_echo() as backend:
        stream = UDPStream((LOCAL, 0), backend, name="u")
        await stream.serve(pre_dial=refuse)
        try:
            with udp_client(stream.local_addr) as client:
                client.send(b"x")
                with pytest.raises(TimeoutError):
                    await recv_datagram(client, 0.2)
            assert stream.stats.refused == 1
            assert stream.stats.active == 0
            assert seen[0].proto == "udp"
            assert seen[0].target == backend
            assert seen[0].stream == "u"
        finally:
            await stream.close()


async def test_async_pre_dial_queues_in_order_and_on_read() -> None:
    gate = asyncio.Event()
    reads: list[ConnContext] = []

    async def wake(ctx: ConnContext) -> None:
        await gate.wait()

    async with udp_echo() as backend:
        stream = UDPStream((LOCAL, 0), backend)
        await stream.serve(pre_dial=wake, on_read=reads.append)
        try:
            with udp_client(stream.local_addr) as client:
                for i in range(5):
                    client.send(b"%d" % i)
                await eventually_async(lambda: stream.pending, 2)
                gate.set()
                got = [(await recv_datagram(client))[0] for _ in range(5)]
                assert got == [b"0", b"1", b"2", b"3", b"4"]
                assert reads and reads[0].client == client.getsockname()[:2]
        finally:
            await stream.close()


async def test_retarget_new_sessions_only() -> None:
    async with (
        udp_echo(tag=b"A") as a,
        udp_echo(tag=b"B") as b,
        udp_stream(a) as stream,
    ):
        with udp_client(stream.local_addr) as old, udp_client(stream.local_addr) as new:
            old.send(b"1")
            assert (await recv_datagram(old))[0] == b"A1"
            stream.retarget(b)
            new.send(b"2")
            assert (await recv_datagram(new))[0] == b"B2"
            old.send(b"3")
            assert (await recv_datagram(old))[0] == b"A3"


async def test_close_frees_port_and_bind_errors() -> None:
    async with udp_echo() as backend:
        stream = UDPStream((LOCAL, 0), backend)
        await stream.serve()
        taken = UDPStream(stream.local_addr, backend)
        with pytest.raises(PortInUse):
            await taken.serve()
        await stream.close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(stream.local_addr)
        assert stream.stats.active == 0
