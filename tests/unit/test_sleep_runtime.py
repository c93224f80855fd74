"""The sleep/wake runtime against a scripted engine (no Docker): one wake in flight for many
clients, dependencies first, failures reach every waiting client with the engine's reason, a
sleep and a wake never overlap, and idle detection from the routes' counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.errors import EngineError
from godoxy_streams.labels.idle import IdleConfig
from godoxy_streams.runtime.idle import IdleTracker
from godoxy_streams.runtime.sleepers import Dep, EngineKey, Registry, SleepTarget, WakeFailed
from godoxy_streams.runtime.waker import Waker

from ..helpers import eventually_async


@dataclass
class Engine:
    """A scripted engine: containers by id, every call recorded."""

    states: dict[str, str]
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_start: str | None = None
    exits_with: int | None = None  # the container stops right after its start, with this code
    stop_gate: asyncio.Event | None = None

    async def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))
        await asyncio.sleep(0)
        if container_id not in self.states:
            raise EngineError("the engine answered 404: no such container")
        if self.fail_start:
            raise EngineError(self.fail_start)
        self.states[container_id] = "exited" if self.exits_with is not None else "running"

    async def stop(self, container_id: str, timeout: float, signal: str | None) -> None:
        self.calls.append(("stop", container_id))
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        self.states[container_id] = "exited"

    async def pause(self, container_id: str) -> None:
        self.calls.append(("pause", container_id))
        self.states[container_id] = "paused"

    async def unpause(self, container_id: str) -> None:
        self.calls.append(("unpause", container_id))
        self.states[container_id] = "running"

    async def kill(self, container_id: str, signal: str | None) -> None:
        self.calls.append(("kill", container_id))
        self.states[container_id] = "exited"

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        state = self.states.get(container_id)
        if state is None:
            return None
        code = self.exits_with if state == "exited" else None
        return ContainerInfo(id=container_id, name=container_id, state=state, exit_code=code)


class Feed:
    """The reconciler's side: every pass applies at once."""

    def __init__(self) -> None:
        self.passes = 0
        self.updates: list[ContainerInfo] = []

    def update(self, info: ContainerInfo) -> None:
        self.updates.append(info)

    def clear_stopping(self, engine: str, container_id: str) -> None:
        pass

    def mark_dirty(self) -> None:
        pass

    def held(self, engine: str, container_id: str) -> None:
        pass

    async def wait_for_pass(self, after: int, timeout: float) -> bool:
        await asyncio.sleep(0)
        self.passes += 1
        return True


def key(name: str) -> EngineKey:
    return ("local", name)


def setup(engine: Engine, targets: list[SleepTarget]) -> tuple[Registry, Waker]:
    registry = Registry(lambda _: engine, Feed())
    registry.targets = {t.key: t for t in targets}
    return registry, Waker(registry, probes=lambda _: [], awake=lambda _: True)


def target(name: str, state: str = "exited", **extra: object) -> SleepTarget:
    config = extra.pop("config", IdleConfig(1.0, wake_timeout=5.0))
    return SleepTarget("local", name, name, state, config=config, **extra)  # type: ignore[arg-type]


async def test_many_clients_one_start() -> None:
    engine = Engine({"app": "exited"})
    registry, waker = setup(engine, [target("app")])
    await asyncio.gather(*(waker.wait(key("app")) for _ in range(50)))
    assert engine.calls == [("start", "app")]
    assert waker.counts[key("app")]["wakes"] == 1 and key("app") not in registry.holds


async def test_a_paused_container_is_unpaused() -> None:
    engine = Engine({"app": "paused"})
    _, waker = setup(engine, [target("app", "paused")])
    await waker.wait(key("app"))
    assert engine.calls == [("unpause", "app")]


async def test_dependencies_start_first_in_order() -> None:
    engine = Engine({"app": "exited", "db": "exited", "cache": "exited"})
    deps = (Dep(key("db"), "db", True), Dep(key("cache"), "cache"))
    _, waker = setup(
        engine,
        [target("app", deps=deps), target("db", config=None), target("cache", config=None)],
    )
    await waker.wait(key("app"))
    assert engine.calls == [("start", "db"), ("start", "cache"), ("start", "app")]


@pytest.mark.parametrize(
    ("engine", "reason"),
    [
        (
            Engine({"app": "exited"}, fail_start="the engine answered 500: no such binary"),
            "no such binary",
        ),
        (Engine({"app": "exited"}, exits_with=2), "stopped while it woke: exited with code 2"),
        (Engine({}), "could not start it"),  # removed before the start: the engine says so
    ],
)
async def test_a_failed_wake_reaches_every_waiting_client(engine: Engine, reason: str) -> None:
    _, waker = setup(engine, [target("app")])
    results = await asyncio.gather(
        *(waker.wait(key("app")) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, WakeFailed) and reason in str(r) for r in results), results
    counts = waker.counts[key("app")]
    assert (counts["wake_failures"], counts["clients_failed"]) == (1, 5)


async def test_a_wake_waits_for_a_sleep_and_keeps_its_own_hold() -> None:
    engine = Engine({"app": "running"}, stop_gate=asyncio.Event())
    registry, waker = setup(engine, [target("app", "running")])
    tracker = IdleTracker(registry, lambda: {}, waker.in_flight)
    config = IdleConfig(1.0)
    sleeping = asyncio.create_task(tracker.put_to_sleep(registry.targets[key("app")], config, ()))
    while ("stop", "app") not in engine.calls:
        await asyncio.sleep(0)
    assert registry.holds[key("app")] == "asleep"
    woken = asyncio.create_task(waker.wait(key("app")))
    await eventually_async(lambda: registry.holds[key("app")] == "waking", 2)
    assert not woken.done()  # the client waits through the stop
    engine.stop_gate.set()  # type: ignore[union-attr]
    await sleeping
    await woken  # no KeyError: the sleep left the wake's hold alone
    assert engine.calls == [("stop", "app"), ("start", "app")]
    assert tracker.counts[key("app")] == 1 and registry.holds == {}


async def test_idle_is_no_open_connection_and_no_counter_moving() -> None:
    engine = Engine({"app": "running"})
    registry, waker = setup(engine, [target("app", "running", config=IdleConfig(10.0))])
    activity = {key("app"): (0, (5, 100, 100))}
    tracker = IdleTracker(registry, lambda: activity, waker.in_flight)
    tracker.check(now=0.0)
    tracker.check(now=9.0)
    activity[key("app")] = (1, (6, 100, 100))  # a connection: not idle
    tracker.check(now=12.0)
    activity[key("app")] = (0, (6, 180, 220))  # it ended, with traffic
    tracker.check(now=13.0)
    tracker.check(now=22.9)
    assert not tracker.sleeps and engine.calls == []
    tracker.check(now=23.0)  # ten seconds with nothing moving
    await asyncio.gather(*tracker.sleeps.values())
    assert engine.calls == [("stop", "app")] and tracker.counts[key("app")] == 1
