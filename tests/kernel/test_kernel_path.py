"""The kernel fast path through real traffic: a client in a network namespace, echo
containers behind our nftables table, Docker's own firewall in place.

Routes bind the namespace's host address (a specific bind), so no other traffic of the host
is ever captured; one test covers the wildcard bind on a port nothing else uses."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from godoxy_streams.runtime.kernel.routes import KernelRoute, KernelTable, Upstream

from ..helpers import eventually, free_port
from . import kit
from .conftest import Echo

IP_UDP_HEADERS = 28


def route(
    ns: kit.ClientNamespace, rid: int, proto: str, port: int, members: list[str], **extra: object
) -> KernelRoute:
    upstreams = tuple(Upstream(address, 7) for address in members)
    fields: dict[str, object] = {"bind": ns.host_address, **extra}
    return KernelRoute(rid, proto, listen_port=port, members=upstreams, **fields)  # type: ignore[arg-type]


def tcp_and_udp(ns: kit.ClientNamespace, port: int, address: str, **extra: object) -> KernelTable:
    """Route 1 (TCP) and route 2 (UDP) on one port, to one member."""
    return KernelTable(
        routes=(
            route(ns, 1, "tcp", port, [address], **extra),
            route(ns, 2, "udp", port, [address], **extra),
        )
    )


def whoami(ns: kit.ClientNamespace, port: int, source: str | None = None) -> str:
    with ns.connect(ns.host_address, port, source) as conn:
        conn.sendall(b"whoami\n")
        return conn.recv(100).decode().strip()


def refused(ns: kit.ClientNamespace, port: int, source: str | None = None) -> bool:
    try:
        whoami(ns, port, source)
    except ConnectionRefusedError:
        return True  # a reset answered the SYN
    return False


def udp_socket(ns: kit.ClientNamespace, port: int, source: str | None = None) -> socket.socket:
    sock = ns.udp_socket(source)
    sock.settimeout(1.0)
    sock.connect((ns.host_address, port))
    return sock


def udp_whoami(sock: socket.socket) -> str:
    sock.send(b"whoami")
    return sock.recv(100).decode()


def test_tcp_and_udp_reach_the_container_and_keep_the_client_address(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    table = tcp_and_udp(client_ns, port, address)
    assert kernel.apply(table) == {}
    assert client_ns.tcp_exchange(client_ns.host_address, port, b"whoami\nhello") == b"A\nhello"
    assert client_ns.udp_exchange(client_ns.host_address, port, b"whoami") == b"A"
    flows = {f.route_id: f for f in kernel.flows() if f.route_id == 2}
    assert flows[2].client[0] == client_ns.address  # no SNAT: the container sees the client
    assert flows[2].member == (address, 7)


def test_a_wildcard_bind_serves_the_hosts_addresses(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "tcp", port, [address], bind="0.0.0.0"),)))
    assert whoami(client_ns, port) == "A"


def test_acl_deny_resets_tcp_and_drops_udp(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    allowed, denied = client_ns.addresses
    kernel.apply(tcp_and_udp(client_ns, port, address, deny=(denied,)))
    assert whoami(client_ns, port, allowed) == "A"
    assert refused(client_ns, port, denied)
    with udp_socket(client_ns, port, allowed) as sock:
        assert udp_whoami(sock) == "A"
    with pytest.raises(TimeoutError), udp_socket(client_ns, port, denied) as sock:
        sock.settimeout(0.5)
        udp_whoami(sock)
    counters = kernel.counters()
    assert (counters[1].connections, counters[1].refused) == (1, 1)
    assert (counters[2].connections, counters[2].refused) == (1, 1)


def test_max_connections_refuses_and_survives_a_rerender(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    table = KernelTable(routes=(route(client_ns, 1, "tcp", port, [address], max_connections=2),))
    kernel.apply(table)
    held = [client_ns.connect(client_ns.host_address, port) for _ in range(2)]
    try:
        for conn in held:
            conn.sendall(b"whoami\n")
            assert conn.recv(100) == b"A\n"
        assert refused(client_ns, port)
        kernel.apply(table)  # an update keeps the ct count state
        assert refused(client_ns, port)
        held[0].shutdown(socket.SHUT_WR)
        assert held[0].recv(100) == b""  # both FINs crossed: the connection is over
        turned_away = []

        def admitted() -> bool:
            if refused(client_ns, port):
                turned_away.append(1)  # the closing handshake's last ACK is still in flight
                return False
            return True

        eventually(admitted, what="a connection after one closed")
    finally:
        for conn in held:
            conn.close()
    assert kernel.counters()[1].refused == 2 + len(turned_away)


def test_per_source_rate_refuses_beyond_the_burst(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    limited = route(client_ns, 1, "tcp", port, [address], rate=1 / 60, burst=2)
    kernel.apply(KernelTable(routes=(limited,)))
    first, second = client_ns.addresses
    assert [whoami(client_ns, port, first) for _ in range(2)] == ["A", "A"]
    assert refused(client_ns, port, first)
    assert whoami(client_ns, port, second) == "A"  # per source: another address has its own


def test_a_pool_spreads_and_fails_over_when_re_rendered(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    (_, a), (_, b) = echo("A"), echo("B")
    port = free_port()
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "tcp", port, [a, b]),)))
    assert Counter(whoami(client_ns, port) for _ in range(6)) == {"A": 3, "B": 3}
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "tcp", port, [a]),)))  # B went down
    assert Counter(whoami(client_ns, port) for _ in range(4)) == {"A": 4}
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "tcp", port, [a, b]),)))
    assert set(Counter(whoami(client_ns, port) for _ in range(4))) == {"A", "B"}


def test_ip_hash_keeps_a_client_on_one_member(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    (_, a), (_, b) = echo("A"), echo("B")
    port = free_port()
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "udp", port, [a, b], balance="ip_hash"),)))
    for source in client_ns.addresses:
        tags = set()
        for _ in range(5):  # a new source port, a new session, each time
            with udp_socket(client_ns, port, source) as sock:
                tags.add(udp_whoami(sock))
        assert len(tags) == 1, f"{source} reached {tags}"


def test_counters_are_exact_and_survive_a_rerender(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    table = tcp_and_udp(client_ns, port, address)
    kernel.apply(table)
    payload = b"x" * 100
    with udp_socket(client_ns, port) as sock:
        for _ in range(5):
            sock.send(payload)
            assert sock.recv(200) == payload
    for _ in range(3):
        assert whoami(client_ns, port) == "A"
    size = len(payload) + IP_UDP_HEADERS
    udp = kernel.counters()[2]
    assert (udp.connections, udp.refused) == (1, 0)
    assert (udp.packets_in, udp.bytes_in, udp.packets_out, udp.bytes_out) == (
        5,
        5 * size,
        5,
        5 * size,
    )
    assert kernel.counters()[1].connections == 3
    eventually(lambda: 1 not in kernel.active(), what="the TCP closes complete")  # last ACKs
    before = kernel.counters()
    kernel.apply(table)
    assert kernel.counters() == before


def test_drain_keeps_open_flows_and_kill_ends_them(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    kernel.apply(tcp_and_udp(client_ns, port, address))
    with (
        client_ns.connect(client_ns.host_address, port) as conn,
        udp_socket(client_ns, port) as sock,
    ):
        conn.sendall(b"whoami\n")
        assert conn.recv(100) == b"A\n"
        assert udp_whoami(sock) == "A"
        kernel.apply(KernelTable())  # drain: the routes leave, their flows stay
        conn.sendall(b"still")
        assert conn.recv(100) == b"still"
        assert udp_whoami(sock) == "A"
        assert refused(client_ns, port)  # a new connection finds no route (and no listener)
        assert kernel.active() == {1: 1, 2: 1}
        assert kernel.kill(1) == 1 and kernel.kill(2, (address, 7), "udp") == 1
        conn.settimeout(5)
        with pytest.raises(ConnectionResetError):
            conn.sendall(b"gone?")
            conn.recv(100)
        with pytest.raises(OSError):  # the host answers the bare port: unreachable
            udp_whoami(sock)
    assert kernel.active() == {}


def test_udp_timeout_policy_ends_idle_sessions(
    client_ns: kit.ClientNamespace, kernel: kit.KernelHarness, echo: Echo
) -> None:
    _, address = echo("A")
    port = free_port()
    kernel.apply(KernelTable(routes=(route(client_ns, 1, "udp", port, [address], udp_timeout=1),)))
    with udp_socket(client_ns, port) as sock:
        assert udp_whoami(sock) == "A"
        assert kernel.active() == {1: 1}
        eventually(lambda: kernel.active() == {}, 10, interval=0.2, what="the session expired")
