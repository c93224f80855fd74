"""UDP through the agent's datagram channel, in process on loopback: a real ``DatagramServer``
(the agent's QUIC side, with a fixed allow-list instead of labels) and a ``DatagramTunnel``
(the daemon's) under a real ``UDPStream``: order and sizes (frames and stream records), the
end of a flow from either side, a lost connection, refusals, pools and UDP health probes."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from godoxy_streams.agent.certs import CertFiles, create_certs
from godoxy_streams.agent.client import datagrams as flows
from godoxy_streams.agent.client.datagrams import DatagramTunnel
from godoxy_streams.agent.quic.config import (
    ALPN_DATAGRAM,
    client_configuration,
    server_configuration,
)
from godoxy_streams.agent.server import datagrams as datagram_server
from godoxy_streams.agent.server import handshakes
from godoxy_streams.agent.server.datagrams import DatagramServer
from godoxy_streams.agent.server.destinations import FixedDestinations
from godoxy_streams.agent.wire.flow_wire import DATAGRAM_ROOM
from godoxy_streams.model import HealthCheck
from godoxy_streams.streams.pool import MemberSpec
from godoxy_streams.streams.probes import ProbeFailed, probe_for

from ..helpers import eventually_async, free_port
from .kit import LOCAL, ipv6_loopback, recv_datagram, udp_client, udp_echo, udp_stream


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    names = [LOCAL, "127.0.0.2", "localhost", "::1"]
    return create_certs(tmp_path_factory.mktemp("certs"), names)


class Agent:
    def __init__(self, certs: CertFiles, allowed: Iterable[tuple[str, int]]) -> None:
        self.port = free_port("udp")
        config = server_configuration(certs.ca, certs.agent, certs.agent_key)
        self.server = DatagramServer(config, FixedDestinations(("udp", *a) for a in allowed))

    def tunnel(self, ca: Path, cert: Path, key: Path, host: str = LOCAL) -> DatagramTunnel:
        return DatagramTunnel(host, self.port, client_configuration(ca, cert, key, host))


async def started(agent: Agent, host: str = LOCAL) -> Agent:
    await agent.server.start(host, agent.port)
    return agent


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, int]]:
    async with udp_echo() as addr:
        yield addr


@pytest.fixture
async def agent(certs: CertFiles, backend: tuple[str, int]) -> AsyncIterator[Agent]:
    started_agent = await started(Agent(certs, [backend]))
    yield started_agent
    started_agent.server.close()


@pytest.fixture
async def tunnel(certs: CertFiles, agent: Agent) -> AsyncIterator[DatagramTunnel]:
    made = agent.tunnel(certs.ca, certs.daemon, certs.daemon_key)
    yield made
    await made.close()


async def test_clients_get_their_own_replies_at_every_size(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    """Sizes on both sides of the largest QUIC datagram (larger ones cross on the flow's
    stream, so they may overtake or be overtaken: UDP promises no order); small datagrams
    keep their order."""
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        clients = [udp_client(stream.local_addr) for _ in range(8)]
        sizes = [8, 600, DATAGRAM_ROOM - 2, DATAGRAM_ROOM - 1, DATAGRAM_ROOM, 3000, 65000, 9]
        try:
            for i, client in enumerate(clients):
                for seq, size in enumerate(sizes):
                    client.send(struct.pack("!II", i, seq).ljust(size, b"."))
            for i, client in enumerate(clients):
                got = set()
                for _ in sizes:
                    data, _ = await recv_datagram(client, 5)
                    owner, seq = struct.unpack("!II", data[:8])
                    assert owner == i, "a reply reached the wrong client"
                    got.add((seq, len(data)))
                assert got == set(enumerate(sizes))
            for seq in range(200):
                clients[0].send(struct.pack("!I", seq))
            replies = [(await recv_datagram(clients[0], 5))[0] for _ in range(200)]
            assert replies == [struct.pack("!I", seq) for seq in range(200)]
            assert (stream.stats.total, stream.stats.active) == (8, 8)
            assert (agent.server.flows, agent.server.open_flows) == (8, 8)
        finally:
            for client in clients:
                client.close()
    # The sessions' end ends their flows on the agent.
    await eventually_async(lambda: agent.server.open_flows == 0, what="flows ended")


async def test_an_idle_session_ends_its_flow(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    async with udp_stream(backend, datagram_dialer=tunnel.open, udp_timeout=0.2) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"hello")
            assert (await recv_datagram(client))[0] == b"hello"
            assert agent.server.open_flows == 1
            await eventually_async(lambda: stream.stats.active == 0, what="session expired")
            await eventually_async(lambda: agent.server.open_flows == 0, what="flow ended")


async def test_a_lost_connection_ends_the_sessions_and_the_next_datagram_reconnects(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"one")
            assert (await recv_datagram(client))[0] == b"one"
            (link,) = agent.server.links
            link.close()  # the agent ends the daemon's connection (e.g. it restarts)
            await eventually_async(lambda: stream.stats.active == 0, what="session ended")
            client.send(b"two")  # a new session, a new connection, a new flow
            assert (await recv_datagram(client))[0] == b"two"
            assert stream.stats.total == 2 and agent.server.flows == 2


async def test_the_agent_ending_one_flow_ends_only_its_session(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        with udp_client(stream.local_addr) as a, udp_client(stream.local_addr) as b:
            for client in (a, b):
                client.send(b"hi")
                assert (await recv_datagram(client))[0] == b"hi"
            (link,) = agent.server.links
            link.end(min(link.flows))
            await eventually_async(lambda: stream.stats.active == 1, what="one session ended")
            b.send(b"still")
            a.send(b"again")
            assert (await recv_datagram(b))[0] == b"still"
            assert (await recv_datagram(a))[0] == b"again"
            assert stream.stats.total == 3


async def test_refusals(
    certs: CertFiles, backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel, tmp_path: Path
) -> None:
    with pytest.raises(ConnectionRefusedError, match="refused the destination"):
        await tunnel.open(backend[0], backend[1] + 1, lambda _: None)
    other = create_certs(tmp_path / "other", [LOCAL])
    # A client certificate from another CA; the agent's own certificate (not for clients).
    for cert, key in ((other.daemon, other.daemon_key), (certs.agent, certs.agent_key)):
        stranger = agent.tunnel(certs.ca, cert, key)
        try:
            with pytest.raises(ConnectionRefusedError, match="connection ended"):
                await stranger.open(*backend, lambda _: None)
        finally:
            await stranger.close()
    # The daemon checks the agent too: an agent whose certificate another CA signed.
    wrong_ca = agent.tunnel(other.ca, certs.daemon, certs.daemon_key)
    try:
        with pytest.raises(ConnectionRefusedError):
            await wrong_ca.open(*backend, lambda _: None)
    finally:
        await wrong_ca.close()
    assert agent.server.refused == 3 and agent.server.flows == 0


async def test_a_session_to_a_refused_member_fails_over_at_the_next_datagram(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        refused = (backend[0], backend[1] + 1)  # not on the agent's allow-list
        pool = stream.set_pool([MemberSpec("good", backend), MemberSpec("bad", refused)])
        replies = 0
        for _ in range(6):
            with udp_client(stream.local_addr) as client:
                client.send(b"x")
                try:
                    await recv_datagram(client, 1)
                    replies += 1
                except TimeoutError:
                    pass
        bad = pool.member("bad")
        assert bad is not None and bad.failures == 1 and "refused" in str(bad.last_error)
        assert replies == 5  # only the first datagram to the bad member was lost


async def test_udp_health_probe_through_the_flow(
    backend: tuple[str, int], tunnel: DatagramTunnel
) -> None:
    class Via:
        open_flow = staticmethod(tunnel.open)

        async def probe(self, host: str, port: int, timeout: float) -> None:
            raise AssertionError("a UDP route is not probed over TCP")

    good = probe_for("udp", backend, HealthCheck(send="ping", expect="ping", timeout=2), Via())
    wrong = probe_for("udp", backend, HealthCheck(send="ping", expect="pong", timeout=2), Via())
    assert good is not None and wrong is not None
    await good()
    with pytest.raises(ProbeFailed, match="unexpected reply"):
        await wrong()
    refused = probe_for("udp", (backend[0], backend[1] + 1), HealthCheck(send="x"), Via())
    assert refused is not None
    with pytest.raises(OSError):
        await refused()


async def test_sessions_fail_at_once_while_the_agent_is_unreachable(
    certs: CertFiles, backend: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connect attempt fails (no answer within the connect timeout); the sessions that
    waited behind it, and new ones for a second, fail with it instead of trying in turn.
    Once the agent answers, the next attempt connects."""
    monkeypatch.setattr(flows, "CONNECT_TIMEOUT", 0.3)
    attempts: list[QuicConnection] = []

    def counted(**kwargs: Any) -> QuicConnection:
        attempts.append(QuicConnection(**kwargs))
        return attempts[-1]

    monkeypatch.setattr(flows, "QuicConnection", counted)
    agent = Agent(certs, [backend])  # not started: nothing answers on its port
    tunnel = agent.tunnel(certs.ca, certs.daemon, certs.daemon_key)
    try:
        opens = [tunnel.open(*backend, lambda _: None) for _ in range(20)]
        results = await asyncio.gather(*opens, return_exceptions=True)
        assert all(isinstance(r, ConnectionRefusedError) for r in results), results
        assert "no answer" in str(results[-1]) and len(attempts) == 1
        await started(agent)

        async def opened() -> bool:
            try:
                sock = await tunnel.open(*backend, lambda _: None)
            except ConnectionRefusedError:
                return False
            sock.close()
            return True

        await eventually_async(opened, what="a flow once the agent answers")
        assert len(attempts) == 2
    finally:
        await tunnel.close()
        agent.server.close()


@pytest.mark.parametrize(
    ("listen", "dial"),
    [("0.0.0.0", "127.0.0.2"), ("127.0.0.1", "localhost"), ("::", "::1"), ("::1", "::1")],
)
async def test_agent_addresses(
    certs: CertFiles, backend: tuple[str, int], listen: str, dial: str
) -> None:
    """A wildcard agent answers from the address it was dialled at (a QUIC client drops
    packets from any other); a name or an IPv6 address works as the agent's host."""
    if ":" in listen and not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    agent = await started(Agent(certs, [backend]), listen)
    tunnel = agent.tunnel(certs.ca, certs.daemon, certs.daemon_key, dial)
    try:
        sock = await tunnel.open(*backend, lambda _: None)
        sock.send(b"hello")
        assert (await recv_datagram(sock))[0] == b"hello"
        sock.close()
    finally:
        await tunnel.close()
        agent.server.close()


async def test_empty_datagrams_cross_both_ways(agent: Agent, tunnel: DatagramTunnel) -> None:
    loop = asyncio.get_running_loop()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # echoes b"" too (asyncio's won't)
    echo.bind((LOCAL, 0))
    echo.setblocking(False)

    def answer() -> None:
        data, addr = echo.recvfrom(65535)
        echo.sendto(data, addr)

    loop.add_reader(echo.fileno(), answer)
    target = echo.getsockname()[:2]
    agent.server.destinations = FixedDestinations([("udp", *target)])
    async with udp_stream(target, datagram_dialer=tunnel.open) as stream:
        try:
            with udp_client(stream.local_addr) as client:
                for payload in (b"first", b"", b"last"):
                    client.send(payload)
                    assert (await recv_datagram(client))[0] == payload
        finally:
            loop.remove_reader(echo.fileno())
            echo.close()


class Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append(data)


async def test_a_probe_without_expect_still_sends_its_payload(
    certs: CertFiles, tunnel: DatagramTunnel, agent: Agent
) -> None:
    loop = asyncio.get_running_loop()
    transport, recorder = await loop.create_datagram_endpoint(Recorder, local_addr=(LOCAL, 0))
    target = transport.get_extra_info("sockname")[:2]
    agent.server.destinations = FixedDestinations([("udp", *target)])

    class Via:
        open_flow = staticmethod(tunnel.open)

        async def probe(self, host: str, port: int, timeout: float) -> None:
            raise AssertionError("a UDP route is not probed over TCP")

    try:
        probe = probe_for("udp", target, HealthCheck(send="hello", timeout=2), Via())
        assert probe is not None
        await probe()
        await eventually_async(lambda: recorder.got == [b"hello"], what="the probe's payload")
    finally:
        transport.close()


async def test_an_agent_gone_silent_is_noticed_and_the_next_session_connects_afresh(
    certs: CertFiles, backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    """The agent vanishes without a QUIC close (killed; its socket simply closes) and comes
    back on the same port: the live session ends, and new sessions work again."""
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"before")
            assert (await recv_datagram(client))[0] == b"before"
            assert agent.server._socket is not None
            agent.server._socket.close()  # no CONNECTION_CLOSE is sent
            reborn = Agent(certs, [backend])
            reborn.port = agent.port
            await started(reborn)
            try:

                async def answered() -> bool:
                    with udp_client(stream.local_addr) as fresh:
                        fresh.send(b"after")
                        try:
                            return (await recv_datagram(fresh, 1))[0] == b"after"
                        except TimeoutError:
                            return False

                await eventually_async(answered, timeout=20, what="a session through the agent")
                await eventually_async(
                    lambda: stream.stats.total - stream.stats.active >= 1,
                    what="the session of the dead connection ended",
                )
            finally:
                reborn.server.close()


async def test_a_flow_whose_destination_is_no_longer_published_ends(
    backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open flow is a socket to an address Docker may give to another container: once no
    label publishes the destination, the agent ends the flow (and the daemon the session)."""
    agent.server.close()
    monkeypatch.setattr(datagram_server, "RECHECK", 0.1)
    await started(agent)
    async with udp_stream(backend, datagram_dialer=tunnel.open) as stream:
        with udp_client(stream.local_addr) as client:
            client.send(b"hello")
            assert (await recv_datagram(client))[0] == b"hello"
            agent.server.destinations = FixedDestinations([])  # the container has gone
            await eventually_async(lambda: agent.server.open_flows == 0, what="flow ended")
            await eventually_async(lambda: stream.stats.active == 0, what="session ended")


class Stall(QuicConnectionProtocol):
    """A client that answers the Retry, then says nothing more: a handshake left hanging."""

    def __init__(self, quic: QuicConnection) -> None:
        super().__init__(quic)
        self.packets = 0

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.packets += 1
        if self.packets == 1:
            super().datagram_received(data, addr)


async def test_hanging_handshakes_from_one_address_do_not_lock_others_out(
    certs: CertFiles, backend: tuple[str, int], agent: Agent, tunnel: DatagramTunnel
) -> None:
    loop = asyncio.get_running_loop()
    config = QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN_DATAGRAM], verify_mode=ssl.CERT_NONE
    )
    stalls = []
    for _ in range(handshakes.PER_SOURCE + 2):
        transport, stall = await loop.create_datagram_endpoint(
            lambda: Stall(QuicConnection(configuration=config)),
            local_addr=("127.0.0.2", 0),
            remote_addr=(LOCAL, agent.port),
        )
        stall.connect((LOCAL, agent.port))
        stalls.append(transport)
    try:
        counted = agent.server.handshakes
        await eventually_async(lambda: counted.dropped >= 2, what="handshakes beyond the share")
        assert counted.by_source["127.0.0.2"] == handshakes.PER_SOURCE
        sock = await tunnel.open(*backend, lambda _: None)  # a daemon at 127.0.0.1 gets in
        sock.close()
    finally:
        for transport in stalls:
            transport.close()
