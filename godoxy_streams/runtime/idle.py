"""Putting idle containers to sleep.

A container with sleep/wake is idle when none of its routes has an open connection or UDP
session of it and no counter of its traffic (connections, sessions, bytes either way) moved
for ``idle_timeout``; the counters are read every ``tick`` (at most a second), never on the
data path. Then, under the container's lock: its routes are held ``asleep`` (a client that
arrives now waits for a wake, which waits for this lock), the activity is checked once more,
and the container is stopped, paused or killed as ``stop_method`` says (``stop_signal``,
``stop_timeout``); the log and the events say so. Its ``depends_on`` containers are stopped
next, unless they sleep on their own or another running container depends on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from functools import partial

from loguru import logger

from godoxy_streams.errors import EngineError
from godoxy_streams.labels.idle import IdleConfig
from godoxy_streams.runtime.sleepers import (
    EngineKey,
    Lifecycle,
    Registry,
    SleepTarget,
    WakeFailed,
)

TICK_MAX = 1.0
RETRY_AFTER = 60.0  # seconds at least before another try when putting one to sleep failed
TICK_MIN = 0.05
Activity = tuple[int, tuple[int, ...]]  # (open connections / sessions, traffic counters)
VERBS = {"stop": "stopping", "pause": "pausing", "kill": "killing"}


def seconds(value: float) -> str:
    return f"{value:g}s" if value < 120 else f"{value / 60:g}m"


class IdleTracker:
    """Which containers have been idle since when, and the sleeps under way."""

    def __init__(
        self,
        registry: Registry,
        activity: Callable[[], Mapping[EngineKey, Activity]],
        busy: Callable[[EngineKey], bool],
    ) -> None:
        self.registry = registry
        self.activity = activity
        self.busy = busy  # a wake under way
        self.seen: dict[EngineKey, tuple[tuple[int, ...], float]] = {}
        self.sleeps: dict[EngineKey, asyncio.Task[None]] = {}
        self.counts: dict[EngineKey, int] = {}
        self.failed_at: dict[EngineKey, float] = {}

    def tick(self) -> float:
        """How often to look: a quarter of the shortest ``idle_timeout``, within bounds."""
        timeouts = [t.config.idle_timeout for t in self.registry.targets.values() if t.config]
        return min(TICK_MAX, max(TICK_MIN, min(timeouts, default=TICK_MAX) / 4))

    def idle_for(self, key: EngineKey, now: float) -> float | None:
        seen = self.seen.get(key)
        return None if seen is None else now - seen[1]

    def check(self, now: float | None = None) -> None:
        """One look at every awake container; the idle ones are put to sleep."""
        now = time.monotonic() if now is None else now
        registry = self.registry
        if not registry.targets:  # nothing sleeps: no route to look at
            self.seen.clear()
            return
        activity = self.activity()
        for key, target in registry.targets.items():
            config = target.config
            asleep = not target.running or key in registry.holds or self.busy(key)
            if config is None or asleep or key in self.sleeps:
                self.seen.pop(key, None)
                continue
            active, counters = activity.get(key, (0, ()))
            seen = self.seen.get(key)
            if seen is None or seen[0] != counters or active:
                self.seen[key] = (counters, now)
            elif now - seen[1] >= config.idle_timeout and not self._backing_off(key, now, config):
                self.seen[key] = (counters, now)  # next try, if this one does not happen
                task = asyncio.create_task(self.put_to_sleep(target, config, counters))
                self.sleeps[key] = task
                task.add_done_callback(partial(self._slept, key))
        for gone in [k for k in self.seen if k not in registry.targets]:
            del self.seen[gone]

    def _backing_off(self, key: EngineKey, now: float, config: IdleConfig) -> bool:
        failed = self.failed_at.get(key)
        if failed is None:
            return False
        if now - failed < max(config.idle_timeout, RETRY_AFTER):
            return True
        del self.failed_at[key]
        return False

    def _slept(self, key: EngineKey, task: asyncio.Task[None]) -> None:
        if self.sleeps.get(key) is task:
            del self.sleeps[key]
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("putting a container to sleep failed")

    async def put_to_sleep(
        self, target: SleepTarget, config: IdleConfig, counters: tuple[int, ...]
    ) -> None:
        key, registry = target.key, self.registry
        log = logger.bind(container=target.name, action="sleep")
        async with registry.lock(key):
            if key in registry.holds or self.busy(key):
                return
            registry.set_hold(key, "asleep")
            try:
                await registry.publish()  # from now on a client waits for a wake
                if self.activity().get(key, (0, ())) != (0, counters):
                    log.debug(f"container {target.name} got a client just now: stays awake")
                    return
                verb = VERBS[config.stop_method]
                log.info(
                    f"container {target.name} idle for {seconds(config.idle_timeout)}: {verb} it"
                )
                await stopped(registry, target, config)
            except (EngineError, WakeFailed) as exc:
                self.failed_at[key] = time.monotonic()
                log.warning(
                    f"putting container {target.name} to sleep failed: {exc}; "
                    f"next try in {seconds(max(config.idle_timeout, RETRY_AFTER))} at the earliest"
                )
                registry.note("sleep_failed", key, str(exc))
                return
            finally:
                registry.drop_hold(key, "asleep")  # unless a wake holds it now
            verb = {"stop": "stopped", "pause": "paused", "kill": "killed"}[config.stop_method]
            registry.note("sleep", key, f"{verb}: no traffic for {seconds(config.idle_timeout)}")
            self.counts[key] = self.counts.get(key, 0) + 1
        await self.stop_dependencies(target, config)

    async def stop_dependencies(self, target: SleepTarget, config: IdleConfig) -> None:
        """Stop the dependencies that came up for ``target`` and nothing else needs."""
        registry = self.registry
        for dep in reversed(target.deps):
            other = registry.targets.get(dep.key)
            if other is None or other.config is not None or not other.running:
                continue  # gone, sleeps on its own, or already stopped
            if other.needed_by - {target.key}:
                continue
            try:
                async with registry.lock(dep.key):
                    if self.busy(dep.key):
                        continue
                    logger.bind(container=other.name, action="sleep").info(
                        f"container {other.name} ({target.name} depends on it): "
                        f"{VERBS[config.stop_method]} it"
                    )
                    await stopped(registry, other, config)
            except (EngineError, WakeFailed) as exc:
                logger.warning(f"stopping dependency {other.name} failed: {exc}")


async def stop(engine: Lifecycle, target: SleepTarget, config: IdleConfig) -> None:
    """Stop, pause or kill ``target`` as ``config`` says."""
    if config.stop_method == "pause":
        await engine.pause(target.id)
    elif config.stop_method == "kill":
        await engine.kill(target.id, config.stop_signal)
    else:
        await engine.stop(target.id, config.stop_timeout, config.stop_signal)


async def stopped(registry: Registry, target: SleepTarget, config: IdleConfig) -> None:
    """Stop ``target`` and hand the engine's word on it to the reconciler. A call that fails
    although the container did stop (the engine may drop a slow call) counts as done."""
    try:
        await stop(registry.engine(target), target, config)
    except EngineError as exc:
        info = await registry.look(target)
        if info is None or info.running:
            raise
        logger.info(f"container {target.name} is {info.state} (the engine's answer: {exc})")
    else:
        await registry.look(target)
