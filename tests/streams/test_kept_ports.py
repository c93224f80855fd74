"""Kept picked ports through the stream manager and real loopback sockets: a route with no
listen port gets its earlier port back from the state file (a new manager stands for a daemon
restart), a taken port is replaced and said once, two routes keeping one port: the first keeps
it; the file is written atomically, a corrupt one is a warning and a fresh start, and an
unwritable state directory falls back (said once)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from loguru import logger

from godoxy_streams.decide.plan import Plan
from godoxy_streams.model import HealthCheck, RouteOrigin, RouteSpec, Scheme
from godoxy_streams.runtime import kept_ports
from godoxy_streams.runtime.kept_ports import STATE_FILE, KeptPorts
from godoxy_streams.runtime.manager import RunningRoute, StreamManager
from godoxy_streams.settings import Settings

from .kit import LOCAL, echo, recv_datagram, tcp_backend, udp_client, udp_echo

NO_ENGINE = ("unix:///nowhere.sock",)


def auto_route(
    target: tuple[str, int], name: str = "box", alias: str = "ssh", scheme: Scheme = "tcp"
) -> RouteSpec:
    return RouteSpec(
        alias=alias,
        scheme=scheme,
        bind=LOCAL,
        listen_port=None,
        target_host=target[0],
        target_port=target[1],
        origin=RouteOrigin(kind="docker", name=name, id=f"id-{name}"),
        healthcheck=HealthCheck(disable=True),
    )


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m).strip()), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


class Daemon:
    """A stream manager over a state directory: one instance per daemon run."""

    def __init__(self, state: Path | None) -> None:
        self.kept = KeptPorts(state)
        self.manager = StreamManager(Settings.load(docker=NO_ENGINE), kept_ports=self.kept)

    async def start(self, *routes: RouteSpec) -> dict[str, int]:
        report = await self.manager.apply(Plan(start=routes))
        assert not report.failed, report.failed
        return {f"{r.spec.origin.name}/{r.spec.alias}": r.bound_port for r in self.running()}

    def running(self) -> list[RunningRoute]:
        return list(self.manager.running.values())

    def notice(self, route: RouteSpec) -> str | None:
        (view,) = [v for v in self.manager.route_views() if v.spec == route]
        return view.notice

    async def stop(self) -> None:
        await self.manager.close_all(kill=True)


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, int]]:
    async with tcp_backend(echo()) as server:
        yield server.addr


async def exchange(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection(LOCAL, port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    writer.close()
    await writer.wait_closed()
    return data


async def test_a_restart_binds_the_kept_port(tmp_path: Path, backend: tuple[str, int]) -> None:
    route = auto_route(backend)
    first = Daemon(tmp_path)
    (port,) = (await first.start(route)).values()
    await first.stop()
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["ports"]["local|container:box|ssh|tcp"]["port"] == port
    again = Daemon(tmp_path)
    assert await again.start(route) == {"box/ssh": port}
    assert again.notice(route) is None
    assert await exchange(port) == b"ping"
    await again.stop()


async def test_a_udp_route_keeps_its_port_too(tmp_path: Path) -> None:
    async with udp_echo() as target:
        route = auto_route(target, alias="dns", scheme="udp")
        first = Daemon(tmp_path)
        (port,) = (await first.start(route)).values()
        await first.stop()
        again = Daemon(tmp_path)
        assert await again.start(route) == {"box/dns": port}
        with udp_client((LOCAL, port)) as client:
            client.send(b"hello")
            assert (await recv_datagram(client))[0] == b"hello"
        await again.stop()


async def test_a_taken_port_is_replaced_and_said_once(
    tmp_path: Path, backend: tuple[str, int], warnings: list[str]
) -> None:
    route = auto_route(backend)
    first = Daemon(tmp_path)
    (port,) = (await first.start(route)).values()
    await first.stop()
    squatter = socket.create_server((LOCAL, port))
    try:
        again = Daemon(tmp_path)
        (new,) = (await again.start(route)).values()
        assert new != port
        notice = again.notice(route)
        assert notice == (
            f"listen port {port} (kept from before) is in use by another process: picked {new}"
        )
        assert [line for line in warnings if "kept from before" in line] == [
            f"route 'ssh' of box: {notice}"
        ]
        assert await exchange(new) == b"ping"
        await again.stop()
    finally:
        squatter.close()
    third = Daemon(tmp_path)
    assert await third.start(route) == {"box/ssh": new}  # the new pick is kept from now on
    assert third.notice(route) is None
    await third.stop()
    assert len([line for line in warnings if "kept from before" in line]) == 1


async def test_two_routes_keeping_one_port_the_first_keeps_it(
    tmp_path: Path, backend: tuple[str, int]
) -> None:
    a, b = auto_route(backend, name="a"), auto_route(backend, name="b")
    first = Daemon(tmp_path)
    (port,) = (await first.start(a)).values()
    await first.stop()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["ports"]["local|container:b|ssh|tcp"] = dict(state["ports"]["local|container:a|ssh|tcp"])
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    again = Daemon(tmp_path)
    ports = await again.start(a, b)
    assert ports["a/ssh"] == port and ports["b/ssh"] != port
    assert again.notice(a) is None
    assert again.notice(b) == (
        f"listen port {port} (kept from before) is in use by route a/ssh: picked {ports['b/ssh']}"
    )
    await again.stop()


async def test_a_port_a_label_names_wins_over_a_kept_one(
    tmp_path: Path, backend: tuple[str, int]
) -> None:
    auto = auto_route(backend, name="auto")
    first = Daemon(tmp_path)
    (port,) = (await first.start(auto)).values()
    await first.stop()
    named = auto_route(backend, name="named").model_copy(update={"listen_port": port})
    again = Daemon(tmp_path)
    ports = await again.start(auto, named)  # the plan lists the auto route first
    assert ports["named/ssh"] == port and ports["auto/ssh"] != port
    await again.stop()


async def test_a_corrupt_file_is_a_warning_and_a_fresh_start(
    tmp_path: Path, backend: tuple[str, int], warnings: list[str]
) -> None:
    (tmp_path / STATE_FILE).write_text('{"version": 1, "ports": {"x": {"port": ')
    daemon = Daemon(tmp_path)
    (port,) = (await daemon.start(auto_route(backend))).values()
    await daemon.stop()
    assert any("is corrupt" in line and "start afresh" in line for line in warnings), warnings
    assert (tmp_path / (STATE_FILE + ".corrupt")).exists()
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert list(saved["ports"]) == ["local|container:box|ssh|tcp"]
    assert saved["ports"]["local|container:box|ssh|tcp"]["port"] == port
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE, STATE_FILE + ".corrupt"]


async def test_an_unwritable_state_directory_falls_back_said_once(
    tmp_path: Path, backend: tuple[str, int], warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "state"  # not a directory, even for root
    fallback = tmp_path / "fallback"
    monkeypatch.setattr(kept_ports, "fallback_dir", lambda: fallback)
    first = Daemon(unwritable)
    route = auto_route(backend)
    port = (await first.start(route, auto_route(backend, alias="other")))["box/ssh"]
    await first.stop()
    said = [line for line in warnings if "not writable" in line]
    assert len(said) == 1 and str(fallback / STATE_FILE) in said[0], warnings
    assert oct((fallback).stat().st_mode & 0o777) == "0o700"
    again = Daemon(unwritable)
    assert (await again.start(route))["box/ssh"] == port
    await again.stop()


async def test_nothing_writable_keeps_ports_while_the_manager_lives(
    tmp_path: Path, backend: tuple[str, int], warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(kept_ports, "fallback_dir", lambda: tmp_path / "a-file" / "fallback")
    daemon = Daemon(tmp_path / "a-file" / "state")
    route = auto_route(backend)
    (port,) = (await daemon.start(route)).values()
    await daemon.manager.apply(Plan(stop=(route.key,)))
    assert (await daemon.start(route))["box/ssh"] == port
    await daemon.stop()
    assert len([line for line in warnings if "only while the daemon runs" in line]) == 1


async def test_a_daemon_without_auto_routes_never_touches_the_state_directory(
    tmp_path: Path, backend: tuple[str, int]
) -> None:
    with socket.socket() as probe:
        probe.bind((LOCAL, 0))
        free = probe.getsockname()[1]
    daemon = Daemon(tmp_path / "state")
    assert await daemon.start(auto_route(backend).model_copy(update={"listen_port": free}))
    await daemon.stop()
    assert not (tmp_path / "state").exists()
