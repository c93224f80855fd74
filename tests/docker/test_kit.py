"""Smoke tests of the Docker test kit: the echo image, the factories, the sweep.

Only addresses of containers these tests create (and loopback) are ever contacted. Tests
that use `docker_client` (directly or through a kit fixture) carry the `docker` marker
automatically (tests/conftest.py); the helper tests at the end need no engine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import socket
from pathlib import Path

import docker
import docker.errors
import pytest

from ..helpers import (
    eventually,
    eventually_async,
    free_port,
    tcp_exchange,
    udp_exchange,
    wait_for_port,
    wait_for_port_async,
)
from . import kit

ROUTE_LABELS = {"proxy.aliases": "echo", "proxy.echo.port": "2222:7"}


def test_engine_answers(docker_client: docker.DockerClient) -> None:
    assert docker_client.ping() is True


def test_image_is_tiny_and_reused(docker_client: docker.DockerClient, test_image: str) -> None:
    assert test_image == f"{kit.IMAGE_REPO}:{kit.sources_hash()}"
    assert kit.ensure_image(docker_client) == test_image  # present: no rebuild
    image = docker_client.images.get(test_image)
    assert image.attrs["Config"]["Entrypoint"] == [kit.ECHO]
    assert image.attrs["Size"] < 2_000_000


def test_labelled_container_echoes_tcp_and_udp(run_container: kit.ContainerFactory) -> None:
    c = run_container(labels=ROUTE_LABELS, name="echo")
    assert c.name.startswith(kit.NAME_PREFIX + "echo-")
    assert c.labels["proxy.echo.port"] == "2222:7"
    assert c.labels[kit.LABEL] == "1"
    ip = kit.container_ip(c)
    assert ipaddress.ip_address(ip).version == 4

    assert tcp_exchange(ip, 7, b"hello\n") == b"hello\n"
    assert udp_exchange(ip, 7, b"ping") == b"ping"
    # The default tag is the hostname, i.e. the container's short id.
    assert kit.whoami_tcp(ip, 7) == c.id[:12]
    assert kit.whoami_udp(ip, 7) == c.id[:12]


def test_large_transfer_and_half_close(run_container: kit.ContainerFactory) -> None:
    ip = kit.container_ip(run_container())
    payload = os.urandom(8 << 20)
    assert tcp_exchange(ip, 7, payload, timeout=30) == payload
    big_datagram = os.urandom(60000)
    assert udp_exchange(ip, 7, big_datagram) == big_datagram
    # Empty session: the server sees EOF at once and closes its side too.
    assert tcp_exchange(ip, 7, b"") == b""


def test_ports_flags_and_tag(run_container: kit.ContainerFactory) -> None:
    c = run_container(command="-t 7 -t 2200 -u 53 -u 7 --tag alpha", name="ports")
    ip = kit.container_ip(c)
    for port in (7, 2200):
        assert tcp_exchange(ip, port, b"x" * 100) == b"x" * 100
        assert kit.whoami_tcp(ip, port) == "alpha"
    for port in (53, 7):
        assert udp_exchange(ip, port, b"dgram") == b"dgram"
        assert kit.whoami_udp(ip, port) == "alpha"
    assert kit.whoami_udp(ip, 53) == udp_exchange(ip, 53, b"whoami\n").decode()
    with pytest.raises(ConnectionRefusedError):
        tcp_exchange(ip, 9, b"nobody listens")


def test_whoami_is_only_special_at_the_start(run_container: kit.ContainerFactory) -> None:
    ip = kit.container_ip(run_container(command=["--tag", "t1"]))
    assert tcp_exchange(ip, 7, b"whoami\nwhoami\nrest") == b"t1\nt1\nrest"
    assert tcp_exchange(ip, 7, b"who are you\nwhoami\n") == b"who are you\nwhoami\n"
    assert tcp_exchange(ip, 7, b"whoami") == b"whoami"  # incomplete: echoed at EOF
    assert udp_exchange(ip, 7, b"whoami?") == b"whoami?"


def test_many_clients_at_once(run_container: kit.ContainerFactory) -> None:
    ip = kit.container_ip(run_container())
    socks = [socket.create_connection((ip, 7), timeout=5) for _ in range(5)]
    try:
        for i, s in enumerate(reversed(socks)):
            s.sendall(f"client {i}\n".encode())
        for i, s in enumerate(reversed(socks)):
            assert s.recv(100) == f"client {i}\n".encode()
    finally:
        for s in socks:
            s.close()


def test_file_healthcheck_follows_touch_and_rm(run_container: kit.ContainerFactory) -> None:
    c = run_container(healthcheck=kit.file_healthcheck(), name="health")
    assert kit.health_status(c) in ("starting", "unhealthy")
    assert kit.echo_exec(c, "check-file", kit.HEALTH_FILE) == 1
    assert kit.echo_exec(c, "touch", kit.HEALTH_FILE) == 0
    kit.wait_health(c, "healthy", timeout=10)
    assert kit.echo_exec(c, "rm", kit.HEALTH_FILE) == 0
    assert kit.echo_exec(c, "rm", kit.HEALTH_FILE) == 0  # already gone: still fine
    kit.wait_health(c, "unhealthy", timeout=10)


def test_health_file_flag_and_tcp_check(run_container: kit.ContainerFactory) -> None:
    c = run_container(
        command=["--health-file", kit.HEALTH_FILE], healthcheck=kit.file_healthcheck()
    )
    kit.wait_health(c, "healthy", timeout=10)
    t = run_container(command="-t 2200", healthcheck=kit.tcp_healthcheck(2200))
    kit.wait_health(t, "healthy", timeout=10)
    assert kit.echo_exec(t, "check", "127.0.0.1:2200") == 0
    assert kit.echo_exec(t, "check", "localhost:9") == 1
    assert kit.echo_exec(t, "check", "not-an-address") == 2


def test_network_factory_and_container_ip(
    run_container: kit.ContainerFactory, make_network: kit.NetworkFactory
) -> None:
    net = make_network("net")
    assert str(net.name).startswith(kit.NAME_PREFIX + "net-")
    c = run_container(network=net, command="--tag on-net")
    ip = kit.container_ip(c, net)
    net.reload()
    subnet = net.attrs["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(subnet)
    assert kit.container_ip(c) == ip  # its only network
    wait_for_port(ip, 7, timeout=5)
    assert kit.whoami_tcp(ip, 7) == "on-net"


def test_factories_remove_what_they_created(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    networks = kit.NetworkFactory(docker_client)
    containers = kit.ContainerFactory(docker_client, test_image)
    try:
        net = networks()
        c = containers(network=net)
        exited = containers(command=["--bogus"], wait_ready=False)
        eventually(lambda: exited.reload() or exited.status == "exited", 10)
    finally:
        containers.cleanup()
        networks.cleanup()
    for obj, collection in ((c, docker_client.containers), (exited, docker_client.containers)):
        with pytest.raises(docker.errors.NotFound):
            collection.get(obj.id)
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(net.id)


def test_wait_ready_reports_a_dead_server(run_container: kit.ContainerFactory) -> None:
    with pytest.raises(kit.ContainerDied, match="usage: echo"):
        run_container(command=["--bogus"], ready_timeout=10)


def test_sweep_removes_only_abandoned_objects(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    # a pid above the kernel's pid_max: never alive (a pid that just exited may be reused
    # while other processes start)
    dead_pid = str(int(Path("/proc/sys/kernel/pid_max").read_text()) + 1)
    live = kit.ContainerFactory(docker_client, test_image)
    orphan = None
    try:
        orphan = docker_client.containers.create(
            test_image,
            name=kit.unique_name("orphan"),
            labels={**kit.kit_labels(), kit.SESSION_LABEL: "crashed", kit.PID_LABEL: dead_pid},
        )
        other = live(labels={kit.SESSION_LABEL: "concurrent"}, wait_ready=False)
        mine = live(wait_ready=False)
        removed = kit.sweep(docker_client)
        assert orphan.name in removed
        assert other.name not in removed and mine.name not in removed
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(orphan.id)
        assert mine.name in kit.sweep(docker_client, own=True)
    finally:
        live.cleanup()
        if orphan is not None:
            try:
                orphan.remove(force=True)
            except docker.errors.NotFound:
                pass


# -- the generic helpers (no engine needed) -----------------------------------------------


def test_eventually_polls_until_truthy_and_reports_the_last_error() -> None:
    counter = itertools.count()
    assert eventually(lambda: next(counter) >= 3 and "done", 5, interval=0.001) == "done"

    def broken() -> bool:
        raise OSError("still down")

    with pytest.raises(AssertionError, match="still down"):
        eventually(broken, 0.05, interval=0.01)
    with pytest.raises(AssertionError, match="last value: 0"):
        eventually(lambda: 0, 0.05, interval=0.01)


async def test_eventually_async_accepts_sync_and_async_predicates() -> None:
    counter = itertools.count()

    async def ready() -> bool:
        return next(counter) >= 2

    assert await eventually_async(ready, 5, interval=0.001) is True
    assert await eventually_async(lambda: 7, 1) == 7

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    with pytest.raises(AssertionError, match="hangs not true within 0.1s"):
        await eventually_async(hangs, 0.1)


async def test_free_port_and_wait_for_port_on_loopback() -> None:
    port = free_port("tcp")
    with pytest.raises(AssertionError, match=f"127.0.0.1:{port}"):
        wait_for_port("127.0.0.1", port, timeout=0.1)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    async with server:
        await wait_for_port_async("127.0.0.1", port, timeout=5)
    udp_port = free_port("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", udp_port))
