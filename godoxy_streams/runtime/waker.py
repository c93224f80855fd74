"""Waking a sleeping container: one wake in flight per container, whoever asks.

A wake holds the container ``waking`` (its routes take no connection), then, under the
container's lock (so it waits for a sleep under way): wakes each ``depends_on`` container first,
in order (and waits until it is healthy when the dependency says ``service_healthy``), starts or
unpauses the container, hands the engine's fresh facts to the reconciler (a restart may change
its address), and waits until it is ready: Docker's health ``healthy`` when it has a HEALTHCHECK
(as the engine's events bring it, and a look every ``LOOK_EVERY``), else every probe of its
routes answers at the new address. Then the hold is lifted and, once the reconciler has applied
that, the wake ends: the clients that waited dial the container. A wake fails with the engine's
reason when a start fails, when the container stops again, or at ``wake_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from loguru import logger

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.errors import EngineError
from godoxy_streams.labels.idle import WAKE_TIMEOUT
from godoxy_streams.runtime.sleepers import EngineKey, Registry, SleepTarget, WakeFailed
from godoxy_streams.streams.probes import Probe, ProbeFailed

# Seconds between readiness probes while a container wakes: 5 ms, growing with the time
# it takes (a twentieth of it) up to 100 ms, so a slow start is not probed hundreds of times.
WAKE_POLL, WAKE_POLL_MAX = 0.005, 0.1
LOOK_EVERY = 0.1  # seconds between looks at the container's state while it wakes
WAITER_GRACE = 1.0  # seconds a client waits past wake_timeout for the wake's own verdict
# The probes of a container's routes at their current addresses: None while some route has
# no address yet, [] when there is nothing to probe (it is ready once it runs).
Probes = Callable[[EngineKey], list[Probe] | None]


def stopped_text(info: ContainerInfo) -> str:
    """How a container that should run is not running, in the engine's words."""
    if info.error:
        return f"{info.state}: {info.error}"
    if info.state == "exited" and info.exit_code is not None:
        return f"exited with code {info.exit_code}"
    return info.state


class Waker:
    """The wakes in flight, at most one per container."""

    def __init__(
        self, registry: Registry, probes: Probes, awake: Callable[[EngineKey], bool]
    ) -> None:
        self.registry = registry
        self.probes = probes
        self.awake = awake  # whether the routes of a container are awake (as the manager runs them)
        self.wakes: dict[EngineKey, asyncio.Task[float]] = {}
        self.waiting: dict[EngineKey, int] = {}  # clients waiting on each wake
        self.counts: dict[EngineKey, dict[str, float]] = {}
        self._last: dict[EngineKey, str] = {}  # why a wake under way is not ready yet

    def in_flight(self, key: EngineKey) -> bool:
        task = self.wakes.get(key)
        return task is not None and not task.done()

    def wake(self, key: EngineKey, chain: tuple[EngineKey, ...] = ()) -> asyncio.Task[float]:
        """The wake of ``key`` under way, or a new one; its result is the seconds it took."""
        task = self.wakes.get(key)
        if task is None or task.done():
            task = asyncio.create_task(self._wake(key, chain), name=f"wake {key[1][:12]}")
            task.add_done_callback(_retrieved)
            self.wakes[key] = task
        return task

    def count(self, key: EngineKey, name: str, value: float = 1.0, *, add: bool = True) -> None:
        counts = self.counts.setdefault(key, {})
        counts[name] = counts.get(name, 0.0) + value if add else value

    async def wait(self, key: EngineKey) -> None:
        """Wait (one client) until ``key`` is awake; ``WakeFailed`` when it does not wake
        within its ``wake_timeout``."""
        target = self.registry.targets.get(key)
        config = target.config if target is not None else None
        timeout = config.wake_timeout if config is not None else WAKE_TIMEOUT
        task = self.wake(key)
        self.waiting[key] = self.waiting.get(key, 0) + 1
        try:  # the wake ends by its own deadline, with its reason; this is a safety net
            await asyncio.wait_for(asyncio.shield(task), timeout + WAITER_GRACE)
        except TimeoutError:
            self.count(key, "clients_failed")
            raise WakeFailed(f"not awake after {timeout:g}s") from None
        except WakeFailed:
            self.count(key, "clients_failed")
            raise
        finally:
            self.waiting[key] -= 1
            if not self.waiting[key]:
                del self.waiting[key]

    async def _wake(self, key: EngineKey, chain: tuple[EngineKey, ...]) -> float:
        registry = self.registry
        target = registry.targets.get(key)
        if target is None:
            raise WakeFailed("the container is not known (removed?)")
        timeout = target.config.wake_timeout if target.config is not None else WAKE_TIMEOUT
        loop = asyncio.get_running_loop()
        started = loop.time()
        log = logger.bind(container=target.name, action="wake")
        registry.set_hold(key, "waking")
        try:
            async with registry.lock(key):  # after a sleep under way
                await asyncio.wait_for(self._bring_up(target, chain, started + timeout), timeout)
            registry.drop_hold(key, "waking")
            await asyncio.wait_for(self._settled(target), max(0.0, started + timeout - loop.time()))
        except Exception as exc:
            reason = str(exc)
            if isinstance(exc, TimeoutError):
                reason = f"not ready within {timeout:g}s ({self._last.get(key, 'no answer')})"
            elif not isinstance(exc, WakeFailed | EngineError):
                log.opt(exception=exc).error("wake failed unexpectedly")
                reason = f"unexpected {type(exc).__name__}"
            log.warning(
                f"wake of container {target.name} failed: {reason}; "
                f"{self.waiting.get(key, 0)} waiting client(s) closed or dropped"
            )
            registry.note("wake_failed", key, reason)
            self.count(key, "wake_failures")
            raise WakeFailed(reason) from None
        finally:
            registry.drop_hold(key, "waking")
            self._last.pop(key, None)
        took = loop.time() - started
        waiting = self.waiting.get(key, 0)
        log.info(f"container {target.name} woke in {took:.3f}s ({waiting} waiting client(s))")
        registry.note("wake", key, f"woke, ready in {took:.2f}s")
        self.count(key, "wakes")
        self.count(key, "last_wake", took, add=False)
        return took

    async def _settled(self, target: SleepTarget) -> None:
        """Until the manager runs the container's routes awake, so the clients that waited
        find it in the pool (an older look at the engine, such as an event's inspect answered
        before the start, can put them back to sleep for a moment: look again)."""
        while True:
            await self.registry.publish()
            if self.awake(target.key):
                return
            self._last[target.key] = "its routes were not awake yet"
            await self.registry.look(target)

    async def _bring_up(
        self, target: SleepTarget, chain: tuple[EngineKey, ...], deadline: float
    ) -> None:
        for name in target.missing:
            logger.warning(f"dependency {name!r} of {target.name} matches no container")
        for dep in target.deps:
            if dep.key in chain:
                logger.warning(f"dependency cycle: {target.name} -> {dep.name}; not followed")
                continue
            try:
                await asyncio.shield(self.wake(dep.key, (*chain, target.key)))
                if dep.wait_healthy:
                    await self._until_ready(self.registry.targets[dep.key], deadline, True)
            except (WakeFailed, KeyError) as exc:
                raise WakeFailed(f"dependency {dep.name}: {exc}") from None
        await self._start(target)
        await self._until_ready(target, deadline, False)

    async def _start(self, target: SleepTarget) -> None:
        """Start (or unpause) it, as ``target`` (else the last pass) saw it when that says it
        is stopped or paused (one call less on the way), else and when that was stale, as the
        engine says now (a sleep may have ended just before)."""
        engine = self.registry.engine(target)
        self._last[target.key] = "the engine had not finished starting it"
        seen = target if target.state == "paused" else self.registry.targets.get(target.key, target)
        state: str | None = seen.state
        if state in ("running", "restarting", "stopping"):
            info = await engine.inspect(target.id)
            state = info.state if info is not None else "removed"
        for attempt in range(2):
            try:
                if state == "paused":
                    logger.debug(f"unpausing container {target.name}")
                    await engine.unpause(target.id)
                elif state not in ("running", "restarting"):
                    logger.debug(f"starting container {target.name} ({state})")
                    await engine.start(target.id)
                return
            except EngineError as exc:
                info = await engine.inspect(target.id) if attempt == 0 else None
                if info is None or info.state == state:
                    raise WakeFailed(f"the engine could not start it: {exc}") from None
                state = info.state

    async def _look(self, target: SleepTarget) -> ContainerInfo:
        info = await self.registry.look(target)
        if info is None:
            raise WakeFailed("the container was removed while it woke")
        if info.state == "paused":  # the engine can report an unpause before it holds
            self._last[target.key] = "the engine still reports it paused"
            await self._start(replace(target, state="paused"))
        elif not info.running and info.state != "restarting":
            raise WakeFailed(f"the container stopped while it woke: {stopped_text(info)}")
        self._last[target.key] = "no route answered its probe yet"
        if info.health is not None:
            self._last[target.key] = f"Docker health {info.health}"
        return info

    async def _until_ready(self, target: SleepTarget, deadline: float, healthy: bool) -> None:
        """Until ``target`` is ready: Docker's ``healthy`` when it has a HEALTHCHECK; else a
        container that sleeps answers its routes' probes, a dependency just runs (or with
        ``healthy`` and a HEALTHCHECK, is healthy)."""
        loop = asyncio.get_running_loop()
        probing = False
        started = next_look = loop.time()
        while True:
            seen = self.registry.targets.get(target.key)  # events reach it at every pass
            if seen is not None and seen.running and seen.health == "healthy":
                return
            if loop.time() >= next_look:
                info = await self._look(target)
                next_look = loop.time() + LOOK_EVERY
                if info.running:
                    if info.health == "healthy":
                        return
                    if target.config is None and not (healthy and info.health is not None):
                        return
                    if info.health is None and target.config is not None and not probing:
                        await self.registry.publish()  # its routes have its new address now
                        probing = True
            if probing and await self._probed(target.key, deadline):
                return
            pause = min(WAKE_POLL_MAX, max(WAKE_POLL, (loop.time() - started) / 20))
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))

    async def _probed(self, key: EngineKey, deadline: float) -> bool:
        probes = self.probes(key)
        if probes is None:
            self._last[key] = "no address yet"
            return False
        remaining = max(0.05, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(asyncio.gather(*(p() for p in probes)), remaining)
        except (ProbeFailed, OSError, TimeoutError) as exc:
            self._last[key] = str(exc) or type(exc).__name__
            return False
        return True


def _retrieved(task: asyncio.Task[float]) -> None:
    """A wake nobody waits for any more must not log "exception never retrieved"."""
    if not task.cancelled():
        task.exception()
