"""The scale benchmark's simulated Docker engine (bench/fake_engine.py) is a faithful instrument:
the client library the daemon uses lists, inspects and follows it like a real engine, and the
real daemon follows a container start and removal on it.

Its containers' addresses (198.18.0.0/15) are never dialled here: the routes' health probes are
off by label and listeners are checked by binding their port, not by connecting to them.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from bench.fake_engine import FakeEngine
from bench.fake_engine_http import start, stop
from bench.scale.engine_ctl import FakeEngineProcess
from godoxy_streams.containers import from_inspect, from_list_entry
from godoxy_streams.labels import ParseContext, parse_container
from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.helpers import eventually, free_port

NS = "proxy"


def listening(port: int) -> bool:
    """Someone listens on 127.0.0.1:port (we cannot bind it), found without connecting."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def free_run(count: int) -> int:
    """The first of ``count`` consecutive ports free a moment ago."""
    for _ in range(50):
        base = free_port()
        if base + count < 65536 and not any(listening(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[FakeEngine, aiodocker.Docker]]:
    fake = FakeEngine(namespace=NS, port_base=20000)
    fake.populate(3)
    runner = await start(fake, tmp_path / "engine.sock")
    client = aiodocker.Docker(url=f"unix://{tmp_path / 'engine.sock'}")
    try:
        yield fake, client
    finally:
        await client.close()
        await stop(fake, runner)


async def test_list_and_inspect_read_like_a_real_engine(
    engine: tuple[FakeEngine, aiodocker.Docker],
) -> None:
    fake, client = engine
    version = await client.version()
    assert version["ApiVersion"] == "1.41"
    listed = [from_list_entry(c._container) for c in await client.containers.list(all=True)]
    assert [c.name for c in listed] == ["scale-r-00000", "scale-r-00001", "scale-r-00002"]
    assert listed[1].networks == {"fake-net-0": "198.18.0.3"} and listed[1].running
    inspected = from_inspect((await client.containers.get(listed[1].id))._container)
    assert (inspected.id, inspected.name, inspected.labels) == (
        listed[1].id, listed[1].name, listed[1].labels,
    )  # fmt: skip
    result = parse_container(inspected, ParseContext(namespace=NS, default_bind="127.0.0.1"))
    assert not result.errors
    [route] = result.routes
    assert (route.listen_port, route.target_host, route.target_port) == (20001, "198.18.0.3", 7)
    assert route.healthcheck.disable  # the benchmark's routes are never probed
    with pytest.raises(aiodocker.DockerError) as missing:
        await client.containers.get("0" * 64)
    assert missing.value.status == 404
    with pytest.raises(aiodocker.DockerError) as unknown:
        await client._query_json("images/json")
    assert unknown.value.status == 404
    assert fake.unknown == {"GET /images/json": 1}


async def test_events_are_filtered_and_replayed(
    engine: tuple[FakeEngine, aiodocker.Docker],
) -> None:
    fake, client = engine
    filters = json.dumps({"type": ["container"], "event": ["start", "destroy"]})
    subscriber = client.events.subscribe(filters=filters)  # type: ignore[no-untyped-call]
    await asyncio.wait_for(_until(lambda: len(fake.streams) == 1), 5)
    box, started_ns = fake.add(labelled=False)
    fake.remove(box)
    first = await asyncio.wait_for(subscriber.get(), 5)
    second = await asyncio.wait_for(subscriber.get(), 5)
    assert [(e["Type"], e["Action"], e["Actor"]["ID"]) for e in (first, second)] == [
        ("container", "start", box.id), ("container", "destroy", box.id),
    ]  # fmt: skip
    assert first["timeNano"] == started_ns and first["Actor"]["Attributes"]["name"] == box.name
    await client.events.stop()  # type: ignore[no-untyped-call]
    # a later subscriber asking for events since a moment ago gets them again, in order
    since = str(started_ns // 1_000_000_000 - 1)
    replay = client.events.subscribe(since=since)  # type: ignore[no-untyped-call]
    actions = [(await asyncio.wait_for(replay.get(), 5))["Action"] for _ in range(7)]
    assert actions == ["create", "connect", "start", "kill", "die", "disconnect", "destroy"]
    assert fake.find(box.id) is None


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[FakeEngineProcess]:
    process = FakeEngineProcess(
        tmp_path, 2, port_base=free_run(3), tag="test", namespace=unique_namespace()
    )
    try:
        process.start(timeout=20)
        yield process
    finally:
        process.stop()


def test_the_daemon_follows_a_start_and_a_removal(
    tmp_path: Path, engine_process: FakeEngineProcess
) -> None:
    base = engine_process.port_base
    daemon = DaemonProcess(
        tmp_path, "--docker", engine_process.url, namespace=engine_process.namespace
    )
    try:
        daemon.start()
        eventually(lambda: daemon.health()[1]["routes_running"] == 2, what="two routes")
        assert listening(base) and listening(base + 1)
        [added] = engine_process.add(1)
        assert added["port"] == base + 2
        eventually(lambda: listening(base + 2), what="the new container's listener")
        rows = {r["alias"]: r for r in daemon.routes()["routes"]}
        assert rows["r2"]["state"] == "running" and rows["r2"]["listen_port"] == base + 2
        assert engine_process.wait_inspected([added["id"]], timeout=5)
        engine_process.remove([added["id"]])
        eventually(lambda: not listening(base + 2), what="the listener closed")
        eventually(lambda: daemon.health()[1]["routes_running"] == 2, what="back to two")
        stats = engine_process.stats()
        assert stats["unknown"] == {}, "the daemon asked for something the fake does not serve"
        assert {"version", "list", "events", "inspect"} <= set(stats["requests"])
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
