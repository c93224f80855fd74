"""The real daemon with ``--fast-path nftables``: labelled containers forwarded by the kernel
to a client in a network namespace, what stays in userspace and why, counters in the API and
``/metrics``, health gating, drain and kill, a SIGKILLed daemon's table replaced at the next
start, and nothing left after a clean stop.

Routes bind the namespace's host address, so no other traffic of the host is captured; a
client on the host itself reaches the same address over loopback, which the kernel path
leaves to the userspace listener."""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from docker.models.containers import Container
from docker.models.networks import Network

from godoxy_streams.runtime.kernel.docker_user import COMMENT
from godoxy_streams.runtime.kernel.eligible import KERNEL_REASON

from ..daemon_kit import DaemonProcess
from ..docker import kit as docker_kit
from ..helpers import eventually, free_port, tcp_exchange
from . import kit
from .conftest import FastDaemons
from .test_kernel_path import refused, udp_socket, whoami

IP_UDP_HEADERS = 28


@dataclass
class Stage:
    """A test's daemons, its client namespace, and echo containers on one network whose
    routes bind the namespace's host address."""

    daemons: FastDaemons
    client: kit.ClientNamespace
    namespace: str
    run_container: docker_kit.ContainerFactory
    network: Network

    def container(self, tag: str = "", *extra: str, **routes: dict[str, str]) -> Container:
        """An echo container answering ``tag``, labelled with ``routes`` (alias -> fields)."""
        ns, labels = self.namespace, {f"{self.namespace}.aliases": ",".join(routes)}
        for alias, fields in routes.items():
            labels[f"{ns}.{alias}.bind"] = self.client.host_address
            labels.update({f"{ns}.{alias}.{name}": value for name, value in fields.items()})
        command = [*(["--tag", tag] if tag else []), *extra]
        health = docker_kit.file_healthcheck() if "--health-file" in extra else None
        return self.run_container(
            labels=labels, command=command, network=self.network, healthcheck=health
        )


@pytest.fixture
def stage(
    fast_daemons: FastDaemons,
    client_ns: kit.ClientNamespace,
    run_container: docker_kit.ContainerFactory,
    make_network: docker_kit.NetworkFactory,
    ns: str,
) -> Stage:
    return Stage(fast_daemons, client_ns, ns, run_container, make_network("k"))


def on_path(d: DaemonProcess, alias: str, path: str = "kernel") -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        route = d.route(alias)
        return route if route is not None and route.get("path") == path else None

    return eventually(ready, 20, what=f"route {alias} on the {path} path")


def kernel_figures(d: DaemonProcess, alias: str) -> dict[str, int]:
    route = d.route(alias)
    assert route is not None
    return dict(route.get("paths", {}).get("kernel", {}))


def scrape(d: DaemonProcess) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.api_port}/metrics", timeout=5) as r:
        return [line for line in r.read().decode().splitlines() if not line.startswith("#")]


def sample(lines: list[str], name: str, alias: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` for ``alias`` with ``labels``."""
    for line in lines:
        head, _, value = line.rpartition(" ")
        if not head.startswith(name + "{") or f'alias="{alias}"' not in head:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def test_a_labelled_container_is_forwarded_by_the_kernel_and_counted_exactly(
    stage: Stage,
) -> None:
    port, client = free_port(), stage.client
    d = stage.daemons.start()
    stage.container("A", echo={"port": f"{port}:7"}, dns={"port": f"{port}:7", "scheme": "udp"})
    route = on_path(d, "echo")
    assert route["path_reason"] == KERNEL_REASON
    on_path(d, "dns")
    health = d.health()[1]["fast_path"]
    assert health["enabled"] is True and health["docker_user"] == list(kit.docker_user_rules())

    assert [whoami(client, port) for _ in range(3)] == ["A"] * 3
    payload = b"x" * 100
    with udp_socket(client, port) as sock:
        for _ in range(5):
            sock.send(payload)
            assert sock.recv(200) == payload
    assert tcp_exchange(client.host_address, port, b"whoami\n") == b"A\n"  # host: userspace

    size = 5 * (len(payload) + IP_UDP_HEADERS)
    udp = {"active": 1, "total": 1, "bytes_in": size, "bytes_out": size, "refused": 0}
    eventually(lambda: kernel_figures(d, "dns") == udp, what="UDP kernel counters")
    tcp = {"active": 0, "total": 3, "refused": 0}
    eventually(lambda: kernel_figures(d, "echo").items() >= tcp.items(), what="TCP counted")
    userspace = d.route("echo")["paths"]["userspace"]  # type: ignore[index]
    assert userspace["total"] == 1
    lines = scrape(d)
    assert sample(lines, "godoxy_streams_connections_total", "echo", path="kernel") == 3
    assert sample(lines, "godoxy_streams_connections_total", "echo", path="userspace") == 1
    direction = {"direction": "client_to_upstream", "path": "kernel"}
    assert sample(lines, "godoxy_streams_bytes_total", "dns", **direction) == size
    assert sample(lines, "godoxy_streams_connections_active", "dns", path="kernel") == 1


def test_a_proxy_protocol_route_stays_in_userspace_with_its_reason(stage: Stage) -> None:
    pp, plain, client = free_port(), free_port(), stage.client
    d = stage.daemons.start()
    stage.container(pp={"port": f"{pp}:7", "proxy_protocol": "v1"}, plain={"port": f"{plain}:7"})
    on_path(d, "plain")
    route = on_path(d, "pp", "userspace")
    assert "PROXY protocol" in route["path_reason"]

    def exchange() -> bytes:  # runs in the namespace
        with socket.create_connection((client.host_address, pp), 5) as conn:
            conn.sendall(b"hello")
            conn.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := conn.recv(4096):
                got += chunk
            return got

    got = client.call(exchange)  # the userspace engine wrote the header: the real client
    assert got.startswith(f"PROXY TCP4 {client.address} {client.host_address} ".encode())
    assert got.endswith(b"hello")


def test_acl_and_max_connections_refuse_in_the_kernel(stage: Stage) -> None:
    port, client = free_port(), stage.client
    allowed, denied = client.addresses
    d = stage.daemons.start()
    stage.container("A", echo={"port": f"{port}:7", "acl.deny": denied, "max_connections": "2"})
    on_path(d, "echo")
    assert whoami(client, port, allowed) == "A"
    assert refused(client, port, denied)
    closed = {"total": 1, "active": 0}  # a reading taken after the close (they are cached)
    eventually(lambda: kernel_figures(d, "echo").items() >= closed.items(), what="closed")
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            conn = stack.enter_context(client.connect(client.host_address, port, allowed))
            conn.sendall(b"whoami\n")
            assert conn.recv(100) == b"A\n"
        assert refused(client, port, allowed)
        held = {"active": 2, "total": 3, "refused": 2}
        eventually(lambda: kernel_figures(d, "echo").items() >= held.items(), what="counted")


def test_a_pool_spreads_and_fails_over_on_docker_health(stage: Stage) -> None:
    port = free_port()
    d = stage.daemons.start()
    pool = {"port": f"{port}:7", "load_balance.mode": "round_robin"}
    health = ("--health-file", docker_kit.HEALTH_FILE)
    _, b = (stage.container(tag, *health, echo=pool) for tag in ("A", "B"))
    eventually(
        lambda: [m["state"] for m in on_path(d, "echo")["members"]] == ["healthy"] * 2,
        what="both members healthy",
    )

    def spread(count: int) -> Counter[str]:
        return Counter(whoami(stage.client, port) for _ in range(count))

    eventually(lambda: spread(6) == {"A": 3, "B": 3}, what="round robin over A and B")
    assert docker_kit.echo_exec(b, "rm", docker_kit.HEALTH_FILE) == 0
    eventually(lambda: spread(4) == {"A": 4}, what="B taken out of the map")
    assert docker_kit.echo_exec(b, "touch", docker_kit.HEALTH_FILE) == 0
    eventually(lambda: spread(6) == {"A": 3, "B": 3}, what="B back in the map")
    assert d.route("echo")["path"] == "kernel"  # type: ignore[index]


def test_container_stop_drains_or_kills_held_flows(stage: Stage) -> None:
    drain_port, kill_port, client = free_port(), free_port(), stage.client
    d = stage.daemons.start()
    grace = ("--grace", "60")  # each serves on after SIGTERM: only our rules end its flows
    drainer = stage.container("D", *grace, slow={"port": f"{drain_port}:7", "drain_timeout": "8s"})
    killer = stage.container("K", *grace, fast={"port": f"{kill_port}:7", "on_stop": "kill"})
    on_path(d, "slow")
    on_path(d, "fast")
    drained = client.connect(client.host_address, drain_port)
    killed = client.connect(client.host_address, kill_port)
    try:
        for conn, tag in ((drained, b"D\n"), (killed, b"K\n")):
            conn.sendall(b"whoami\n")
            assert conn.recv(100) == tag
            conn.settimeout(5)
        drainer.kill(signal="SIGTERM")
        killer.kill(signal="SIGTERM")
        eventually(lambda: d.route("slow") is None and d.route("fast") is None, what="stopped")

        def reset(conn: socket.socket) -> bool:
            try:
                conn.sendall(b"ping")
                return conn.recv(100) == b""
            except ConnectionResetError:
                return True

        eventually(lambda: client.call(reset, killed), what="the killed flow reset")
        drained.sendall(b"still")  # drain: the flow runs on, new ones find no route
        assert drained.recv(100) == b"still"
        assert refused(client, drain_port)
        eventually(lambda: client.call(reset, drained), 20, what="drain_timeout over")
    finally:
        drained.close()
        killed.close()


def our_tables() -> int:
    return sum("godoxy_streams" in line for line in kit.nft_tables())


def our_rules() -> int:
    return sum(text.count(COMMENT) for text in kit.docker_user_rules().values())


def test_a_killed_daemons_rules_are_replaced_and_a_clean_stop_removes_them(
    stage: Stage,
) -> None:
    port, client = free_port(), stage.client
    flavours = len(kit.docker_user_rules())
    stage.container("A", echo={"port": f"{port}:7"})
    first = stage.daemons.start()
    on_path(first, "echo")
    assert whoami(client, port) == "A"
    stage.daemons.kill(first)
    assert (our_tables(), our_rules()) == (1, flavours)  # left behind
    assert whoami(client, port) == "A"  # the kernel still forwards; nothing listens

    second = stage.daemons.start()
    on_path(second, "echo")
    assert (our_tables(), our_rules()) == (1, flavours)  # replaced, not duplicated
    assert whoami(client, port) == "A"
    assert second.stop() == 0
    assert (our_tables(), our_rules()) == (0, 0)
    assert refused(client, port)  # nothing forwards, nothing listens


def test_auto_runs_when_it_can_and_healthz_says_so(fast_daemons: FastDaemons) -> None:
    d = fast_daemons.start("--fast-path", "auto", "--no-docker", wait_healthy=False)
    fast_path = d.health()[1]["fast_path"]  # the last --fast-path flag wins
    assert (fast_path["mode"], fast_path["enabled"]) == ("auto", True)
    assert fast_path["docker_user"] == list(kit.docker_user_rules())
    assert our_tables() == 1
