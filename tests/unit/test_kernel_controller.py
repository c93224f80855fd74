"""The fast path's controller with a recording stand-in for nftables and conntrack: when it
runs, what it applies after each plan and health change, which path each route gets, how
stopped routes' flows are drained or killed and their ids freed, and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from godoxy_streams.errors import ConfigError
from godoxy_streams.model import Member, RouteOrigin, RouteSpec
from godoxy_streams.runtime.health_monitor import member_key
from godoxy_streams.runtime.kernel.conntrack import Flow
from godoxy_streams.runtime.kernel.controller import KernelController
from godoxy_streams.runtime.kernel.eligible import KERNEL_REASON
from godoxy_streams.runtime.kernel.host import CLAIM, TableTaken, claim_table
from godoxy_streams.runtime.kernel.nft import KernelError
from godoxy_streams.runtime.kernel.path import KernelPath
from godoxy_streams.runtime.kernel.routes import KernelTable, RouteCounters
from godoxy_streams.runtime.manager import ApplyReport, StreamManager
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import RouteView
from godoxy_streams.streams.pool import MemberSpec, Pool

from ..helpers import eventually_async
from .routekit import route

SUBNETS = ("172.24.0.0/16",)


@dataclass
class FakePath:
    """Records what the controller asks of the kernel; ``refuse`` names route ids whose
    rules fail, ``broken`` makes every apply of a non-empty table fail."""

    tables: list[KernelTable] = field(default_factory=list)
    kills: list[tuple[int, tuple[str, int] | None, str]] = field(default_factory=list)
    flows_now: list[Flow] = field(default_factory=list)
    refuse: dict[int, str] = field(default_factory=dict)
    broken: bool = False
    stopped: bool | None = None
    gate: asyncio.Event | None = None
    docker_user: Any = None

    def __post_init__(self) -> None:
        async def ensure() -> list[str]:
            return ["iptables-nft"]

        self.docker_user = SimpleNamespace(ensure=ensure)

    async def start(self) -> list[str]:
        return ["iptables-nft"]

    async def apply(self, table: KernelTable) -> dict[int, str]:
        if self.gate is not None:
            await self.gate.wait()
        if self.broken and table.routes:
            raise KernelError("nft -f: Error: Could not process rule")
        self.tables.append(table)
        return {rid: error for rid, error in self.refuse.items() if rid in _ids(table)}

    async def kill(self, route_id: int, member: Any = None, protocol: str = "tcp") -> int:
        self.kills.append((route_id, member, protocol))
        self.flows_now = [f for f in self.flows_now if f.route_id != route_id]
        return 1

    async def flows(self) -> list[Flow]:
        return list(self.flows_now)

    async def counters(self) -> dict[int, RouteCounters]:
        return {1: RouteCounters(connections=3, bytes_in=300, bytes_out=200, refused=1)}

    async def stop(self, *, kill: bool = False) -> None:
        self.stopped = kill


def _ids(table: KernelTable) -> list[int]:
    return [r.route_id for r in table.routes]


def member(host: str, name: str) -> Member:
    origin = RouteOrigin(kind="docker", name=name, id=f"id-{name}")
    return Member(alias="a", host=host, port=7, origin=origin)


class FakeManager:
    """``running`` and ``tunnels`` as the controller reads them from the manager."""

    def __init__(self) -> None:
        self.running: dict[Any, Any] = {}
        self.tunnels: dict[str, object] = {}

    def serve(self, spec: RouteSpec, port: int = 0) -> Pool:
        pool = Pool(spec.balance)
        pool.update(MemberSpec(member_key(m), m.address) for m in spec.members)
        stream = SimpleNamespace(pool=pool)
        self.running[spec.key] = SimpleNamespace(
            spec=spec, bound_port=port or spec.listen_port, stream=stream
        )
        return pool


def controller(
    mode: str = "nftables", reason: str | None = None, **settings: Any
) -> tuple[KernelController, FakePath, FakeManager]:
    path, manager = FakePath(), FakeManager()

    async def check() -> str | None:
        return reason

    options = Settings(no_docker=True, fast_path=mode, **settings)  # type: ignore[arg-type]
    made = KernelController(
        options,
        cast(StreamManager, manager),
        cast(KernelPath, path),
        check=check,
        subnets=lambda: SUBNETS,
        claimer=lambda: claim_table(CLAIM + secrets.token_hex(4).encode()),
    )
    return made, path, manager


def spec(alias: str = "a", port: int = 2222, **extra: Any) -> RouteSpec:
    return route(alias, port, target=("172.24.0.2", 7), **extra)


async def test_off_and_unavailable() -> None:
    off, path, _ = controller("off")
    await off.start()
    assert off.health_view()["enabled"] is False and path.tables == []
    view = RouteView(spec=spec(), state="running", listen_port=2222)
    off.manager.running[view.spec.key] = object()  # type: ignore[index]
    (annotated,) = off.annotate([view])
    assert (annotated.path, annotated.path_reason) == ("userspace", "fast_path is off")

    auto, _, _ = controller("auto", reason="no CAP_NET_ADMIN")
    await auto.start()
    assert auto.reason == "unavailable: no CAP_NET_ADMIN" and not auto.enabled
    strict, _, _ = controller("nftables", reason="no CAP_NET_ADMIN")
    with pytest.raises(ConfigError, match="no CAP_NET_ADMIN"):
        await strict.start()


Running = tuple[KernelController, FakePath, FakeManager]


@contextlib.asynccontextmanager
async def running(refuse: dict[int, str] | None = None) -> AsyncIterator[Running]:
    """A started controller with its loop running; shut down at the end."""
    made, path, manager = controller()
    path.refuse = refuse or {}
    await made.start()
    task = asyncio.create_task(made.run(), name="fast path")
    try:
        yield made, path, manager
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await made.shutdown(grace=0)  # gives up the claim (nothing when already shut down)


def serve(made: KernelController, manager: FakeManager, *specs: RouteSpec) -> list[Pool]:
    """The manager started ``specs``."""
    pools = [manager.serve(one) for one in specs]
    made.applied(ApplyReport(started=tuple(one.key for one in specs)))
    return pools


async def applied(path: FakePath, *ids: int) -> None:
    """Until the last table applied holds the routes ``ids``."""
    await eventually_async(lambda: path.tables and sorted(_ids(path.tables[-1])) == list(ids))


async def test_routes_get_ids_paths_and_kernel_counters() -> None:
    async with running() as (made, path, manager):
        plain, pp = spec("a", 2222), spec("b", 2223, proxy_protocol="v2")
        serve(made, manager, plain, pp)
        await applied(path, 1)
        path.flows_now = [Flow(1, "tcp", "ESTABLISHED", ("198.18.0.2", 1), ("172.24.0.2", 7))]
        await made.refresh()
        views = made.annotate(
            [RouteView(spec=s, state="running", listen_port=s.listen_port) for s in (plain, pp)]
        )
        assert [(v.path, v.path_reason) for v in views][0] == ("kernel", KERNEL_REASON)
        assert views[1].path == "userspace" and "PROXY" in (views[1].path_reason or "")
        kernel = views[0].kernel
        assert kernel is not None and views[1].kernel is None
        assert (kernel.active, kernel.total, kernel.bytes_in, kernel.refused) == (1, 3, 300, 1)
        assert made.health_view()["kernel_routes"] == 1


async def test_a_member_down_is_rendered_out_and_back_in() -> None:
    async with running() as (made, path, manager):
        pooled = spec(pool=(member("172.24.0.2", "x"), member("172.24.0.3", "y")))
        (pool,) = serve(made, manager, pooled)

        def members() -> list[str]:
            return [m.address for m in path.tables[-1].routes[0].members] if path.tables else []

        await eventually_async(lambda: members() == ["172.24.0.2", "172.24.0.3"])
        pool.set_probe(member_key(pooled.members[1]), False, "refused")
        made.changed(pooled.key)
        await eventually_async(lambda: members() == ["172.24.0.2"])
        pool.set_probe(member_key(pooled.members[1]), True, None)
        made.changed(pooled.key)
        await eventually_async(lambda: members() == ["172.24.0.2", "172.24.0.3"])


@pytest.mark.parametrize(("on_stop", "drain"), [("kill", 30.0), ("drain", 0.3)])
async def test_a_stopped_route_is_killed_or_drained_then_its_id_freed(
    on_stop: str, drain: float
) -> None:
    async with running() as (made, path, manager):
        first = spec(on_stop=on_stop, drain_timeout=drain)
        serve(made, manager, first)
        await applied(path, 1)
        del manager.running[first.key]
        made.applied(ApplyReport(stopped=(first.key,)))
        serve(made, manager, spec("b", 2223))
        await applied(path, 2)  # 1 is still reserved
        await eventually_async(lambda: path.kills == [(1, None, "tcp")], timeout=5)
        serve(made, manager, spec("c", 2224))
        await applied(path, 1, 2)  # 1 free again, and reused


async def test_a_kill_route_kills_the_flows_of_a_member_it_loses() -> None:
    async with running() as (made, path, manager):
        two = (member("172.24.0.2", "x"), member("172.24.0.3", "y"))
        serve(made, manager, spec(scheme="udp", on_stop="kill", pool=two))
        await applied(path, 1)
        after = spec(scheme="udp", on_stop="kill", pool=two[:1])
        manager.serve(after)
        made.applied(ApplyReport(retargeted=(after.key,)))
        await eventually_async(lambda: path.kills == [(1, ("172.24.0.3", 7), "udp")])


async def test_changes_during_an_apply_fold_into_one_more() -> None:
    async with running() as (made, path, manager):
        path.gate = asyncio.Event()
        routes = [spec(str(i), 3000 + i) for i in range(5)]
        serve(made, manager, routes[0])
        await eventually_async(lambda: made._inflight is not None)  # waiting at the gate
        for later in routes[1:]:
            serve(made, manager, later)
        path.gate.set()
        await eventually_async(lambda: len(path.tables) == 2 and len(path.tables[1].routes) == 5)
        inflight = made._inflight
        await eventually_async(lambda: inflight is not None and inflight.done())
        assert len(path.tables) == 2 and not made._dirty.is_set()  # no third one pending


async def test_refused_rules_and_a_broken_table_fall_back_to_userspace() -> None:
    async with running(refuse={2: "Error: no such feature"}) as (made, path, manager):
        good, bad = spec("a", 2222), spec("b", 2223)
        serve(made, manager, good, bad)
        await eventually_async(lambda: path.tables and made._decisions.get(bad.key))
        assert made._decisions[bad.key].path == "userspace"
        assert "no such feature" in made._decisions[bad.key].reason
        path.broken = True
        made.changed()
        await eventually_async(lambda: made._decisions[good.key].path == "userspace")
        assert "could not be applied" in made._decisions[good.key].reason
        assert path.tables[-1] == KernelTable()  # nothing is DNATed meanwhile


async def test_shutdown_removes_the_table_at_once_then_drains() -> None:
    async with running() as (made, path, manager):
        serve(made, manager, spec(drain_timeout=0.2))
        await applied(path, 1)
        path.flows_now = [Flow(1, "tcp", "ESTABLISHED", ("198.18.0.2", 1), ("172.24.0.2", 7))]
        await made.shutdown(grace=10)
        assert path.stopped is False  # table and rule gone first, the flow left to drain
        assert path.kills == [(1, None, "tcp")]  # after its drain_timeout, not the grace
        assert not made.enabled and made._claim is None


async def test_one_daemon_per_host_runs_the_fast_path() -> None:
    name = CLAIM + secrets.token_hex(4).encode()
    held = claim_table(name)
    try:
        with pytest.raises(TableTaken):
            claim_table(name)
        second, path, _ = controller("auto")
        second._claimer = lambda: claim_table(name)
        await second.start()
        assert not second.enabled and "another godoxy-streams daemon" in second.reason
        strict, _, _ = controller("nftables")
        strict._claimer = lambda: claim_table(name)
        with pytest.raises(ConfigError, match="another godoxy-streams daemon"):
            await strict.start()
    finally:
        held.close()
    claim_table(name).close()  # free again once its holder let go


async def test_a_stop_is_not_lost_when_a_change_arrives_with_it() -> None:
    """Python 3.11's wait_for swallows a cancellation that arrives as the awaited event is
    set: the daemon's stop then waited for the next resync (30 s) and Docker killed it."""
    made, path, manager = controller()
    await made.start()
    task = asyncio.create_task(made.run(), name="fast path")
    try:
        for _ in range(3):
            await asyncio.sleep(0)  # the loop now waits for a change
        made.changed()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done and task.cancelled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await made.shutdown(grace=0)


async def test_after_withdraw_nothing_is_applied_again() -> None:
    async with running() as (made, path, manager):
        serve(made, manager, spec())
        await applied(path, 1)
        count = len(path.tables)
        await made.withdraw(grace=0)
        made.changed()  # a late health verdict
        serve(made, manager, spec("b", 2223))  # a late pass
        await made.drain()
        assert len(path.tables) == count and path.stopped is False
