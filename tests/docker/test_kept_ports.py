"""Picked listen ports are kept, end to end: a compose project whose routes have no listen port
(``port: 22`` with a scheme, ``:22``, ``0:22``, UDP, ``tcp+udp``, two replicas, an explicit
``container_name``) keeps every picked port across a daemon restart, a ``compose up
--force-recreate`` under a running daemon and one while the daemon is down; a kept port some
other process took meanwhile is replaced, said once in the log and in the route's entry."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.daemon_kit import DaemonProcess
from tests.docker import kit
from tests.docker.compose_kit import ComposeProject
from tests.docker.kit import whoami_tcp, whoami_udp
from tests.helpers import eventually

LOCAL = "127.0.0.1"
ECHO = ["-t", "22", "-t", "53", "-u", "53"]
RouteId = tuple[str, str, str]  # container, alias, scheme


def services(image: str, ns: str, named: str) -> dict[str, Any]:
    def service(labels: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"image": image, "command": ECHO, "labels": labels, **extra}

    return {
        "shell": service({f"{ns}.#1.scheme": "tcp", f"{ns}.#1.port": "22"}),
        "ssh": service(
            {f"{ns}.aliases": "ssh", f"{ns}.ssh.scheme": "tcp", f"{ns}.ssh.port": ":22"}
        ),
        "zero": service({f"{ns}.#1.scheme": "tcp", f"{ns}.#1.port": "0:22"}),
        "dns": service({f"{ns}.dns.scheme": "udp", f"{ns}.dns.port": "0:53"}),
        "both": service({f"{ns}.both.scheme": "tcp+udp", f"{ns}.both.port": "0:53"}),
        "named": service({f"{ns}.#1.scheme": "tcp", f"{ns}.#1.port": "0:22"}, container_name=named),
    }


ROUTES = 8  # shell x2 replicas, ssh, zero, dns, both (tcp and udp), named


@pytest.fixture
def named() -> str:
    """The explicit container_name of one service (its default alias too)."""
    return kit.unique_name("keep-named")


@pytest.fixture
def project(
    docker_client: docker.DockerClient,
    test_image: str,
    tmp_path: Path,
    ns: str,
    named: str,
    kit_sweep: None,
) -> Iterator[ComposeProject]:
    compose = ComposeProject(docker_client, tmp_path, services(test_image, ns, named), hint="keep")
    try:
        compose.up("--scale", "shell=2")
        yield compose
    finally:
        compose.down()


def serving(daemon: DaemonProcess) -> dict[RouteId, dict[str, Any]]:
    rows = daemon.routes()["routes"]
    return {(r["container"], r["alias"], r["scheme"]): r for r in rows if r["state"] == "running"}


def ports_when_up(daemon: DaemonProcess) -> dict[RouteId, int]:
    def all_up() -> dict[RouteId, dict[str, Any]]:
        rows = serving(daemon)
        return rows if len(rows) == ROUTES else {}

    rows = eventually(all_up, 20, what="every route up")
    return {route: row["listen_port"] for route, row in rows.items()}


def assert_reaches_its_container(ports: dict[RouteId, int], project: ComposeProject) -> bool:
    """Each route answers from its own container, as it runs now (echo's tag: its short id)."""
    ids = {c.name: c.id[:12] for c in project.containers()}
    for (container, alias, scheme), port in ports.items():
        ask = whoami_udp if scheme == "udp" else whoami_tcp
        tag = eventually(partial(ask, LOCAL, port), 10, what=f"{alias}/{scheme} answers")
        assert tag == ids[container], (container, alias, scheme)
    return True


def start(tmp_path: Path, ns: str, started: list[DaemonProcess]) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path, namespace=ns)  # the same workdir: the same state_dir
    started.append(daemon)
    return daemon.start()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        assert daemon.stop() == 0, daemon.log()[-4000:]


def test_picked_ports_survive_restarts_and_recreation(
    project: ComposeProject, tmp_path: Path, ns: str, named: str, daemons: list[DaemonProcess]
) -> None:
    first = start(tmp_path, ns, daemons)
    picked = ports_when_up(first)
    assert sorted(alias for _, alias, _ in picked) == sorted(
        ["shell", "shell", "ssh", "zero", "dns", "both", "both", named]
    )
    assert_reaches_its_container(picked, project)
    assert first.stop() == 0

    second = start(tmp_path, ns, daemons)
    assert ports_when_up(second) == picked, "a daemon restart kept every picked port"
    before = {c.name: c.id for c in project.containers()}
    project.up("--scale", "shell=2", "--force-recreate")
    assert all(c.id != before[c.name] for c in project.containers())
    eventually(lambda: assert_reaches_its_container(picked, project), 20, what="new containers")
    assert ports_when_up(second) == picked, "re-created under a running daemon"
    assert second.stop() == 0

    project.up("--scale", "shell=2", "--force-recreate")
    third = start(tmp_path, ns, daemons)
    assert ports_when_up(third) == picked, "re-created while the daemon was down"
    assert_reaches_its_container(picked, project)
    assert "kept from before" not in third.log()


def test_a_kept_port_another_process_took_is_replaced_and_said_once(
    project: ComposeProject, tmp_path: Path, ns: str, daemons: list[DaemonProcess]
) -> None:
    first = start(tmp_path, ns, daemons)
    picked = ports_when_up(first)
    assert first.stop() == 0
    (zero,) = [route for route in picked if route[1] == "zero"]
    with socket.create_server((LOCAL, picked[zero])):
        second = start(tmp_path, ns, daemons)
        now = ports_when_up(second)
        assert now[zero] != picked[zero]
        assert {r: p for r, p in now.items() if r != zero} == {
            r: p for r, p in picked.items() if r != zero
        }
        row = serving(second)[zero]
        assert row["notice"] == (
            f"listen port {picked[zero]} (kept from before) is in use by another process: "
            f"picked {now[zero]}"
        )
        assert all(r["notice"] is None for route, r in serving(second).items() if route != zero)
        assert second.log().count("kept from before") == 1
        assert whoami_tcp(LOCAL, now[zero])
    assert second.stop() == 0
    third = start(tmp_path, ns, daemons)
    assert ports_when_up(third)[zero] == now[zero], "the new pick is kept from then on"
