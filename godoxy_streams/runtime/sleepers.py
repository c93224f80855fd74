"""The vocabulary of sleep/wake at run time: the containers that sleep (``SleepTarget``,
with their dependencies resolved), what the runtime needs of an engine to stop and start
them (``Lifecycle``) and of the reconciler to learn and publish their state (``Feed``),
why a wake failed (``WakeFailed``), and the ``Registry`` the waker and the idle tracker
share (targets, holds, one lock per container).

A hold overrides what Docker says while a wake (``waking``) or a sleep (``asleep``) is under
way: the reconciler marks the container's routes with it, so no client is sent to a
container that is being stopped, or that runs but is not ready yet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.labels.idle import IdleConfig
from godoxy_streams.model import SleepState

EngineKey = tuple[str, str]  # (engine, container id)
PASS_TIMEOUT = 5.0  # seconds to wait for the reconciler to apply what sleep/wake changed


@dataclass(frozen=True)
class Dep:
    """A container to wake before its dependent (``depends_on``), resolved."""

    key: EngineKey
    name: str
    wait_healthy: bool = False


@dataclass(frozen=True)
class SleepTarget:
    """A container that sleeps (``config``), or a dependency of one (``config`` None), as the
    last reconcile pass saw it."""

    engine: str
    id: str
    name: str
    state: str  # Docker's (running, exited, paused, ...), or "stopping"
    health: str | None = None  # its HEALTHCHECK state; None: it has none
    config: IdleConfig | None = None
    deps: tuple[Dep, ...] = ()
    missing: tuple[str, ...] = ()  # depends_on names that match no container
    needed_by: frozenset[EngineKey] = frozenset()  # running containers that depend on it

    @property
    def key(self) -> EngineKey:
        return (self.engine, self.id)

    @property
    def running(self) -> bool:
        return self.state == "running"


class Lifecycle(Protocol):
    """One engine's container lifecycle (``sources.docker.DockerSource``); each call raises
    ``EngineError`` with the engine's reason."""

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: float, signal: str | None) -> None: ...

    async def pause(self, container_id: str) -> None: ...

    async def unpause(self, container_id: str) -> None: ...

    async def kill(self, container_id: str, signal: str | None) -> None: ...

    async def inspect(self, container_id: str) -> ContainerInfo | None: ...


class Feed(Protocol):
    """The reconciler, as sleep/wake uses it: fresh facts in, passes out."""

    passes: int

    def update(self, info: ContainerInfo) -> None: ...

    def clear_stopping(self, engine: str, container_id: str) -> None: ...

    def mark_dirty(self) -> None: ...

    def held(self, engine: str, container_id: str) -> None:
        """A hold of the container began or ended (its routes change marks)."""
        ...

    async def wait_for_pass(self, after: int, timeout: float) -> bool: ...


class WakeFailed(Exception):
    """A wake that did not end with the container ready; the text is the reason."""


class Registry:
    """What the waker and the idle tracker share: the targets of the last pass, the holds,
    one lock per container (a sleep and a wake never overlap), the ways to the
    engines and the reconciler."""

    def __init__(self, engines: Callable[[str], Lifecycle | None], feed: Feed) -> None:
        self.engines = engines
        self.feed = feed
        self.targets: dict[EngineKey, SleepTarget] = {}
        self.holds: dict[EngineKey, SleepState] = {}
        # Records a sleep/wake event of a container in the timeline (``SleepController``).
        self.note: Callable[[str, EngineKey, str], None] = lambda kind, key, message: None
        self._locks: dict[EngineKey, asyncio.Lock] = {}

    def hold(self, key: EngineKey) -> SleepState | None:
        return self.holds.get(key)

    def set_hold(self, key: EngineKey, state: SleepState) -> None:
        self.holds[key] = state
        self.feed.held(*key)

    def drop_hold(self, key: EngineKey, state: SleepState) -> None:
        """Lift the hold ``state`` of ``key``, if it is still that one (a wake may have taken
        over a sleep's)."""
        if self.holds.get(key) == state:
            del self.holds[key]
            self.feed.held(*key)

    def lock(self, key: EngineKey) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def forget(self, keys: set[EngineKey]) -> None:
        """Containers that are gone: drop their idle locks."""
        for key in keys:
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]

    def engine(self, target: SleepTarget) -> Lifecycle:
        engine = self.engines(target.engine)
        if engine is None:
            raise WakeFailed(f"the Docker engine {target.engine} is not connected")
        return engine

    async def look(self, target: SleepTarget) -> ContainerInfo | None:
        """The engine's facts about ``target`` now, handed to the reconciler too (faster than
        waiting for the event)."""
        info = await self.engine(target).inspect(target.id)
        if info is not None:
            if info.running:
                self.feed.clear_stopping(info.engine, info.id)
            self.feed.update(info)
        return info

    async def publish(self) -> None:
        """Have the reconciler apply what changed (a hold, fresh facts) before going on."""
        after = self.feed.passes
        self.feed.mark_dirty()
        await self.feed.wait_for_pass(after, PASS_TIMEOUT)
