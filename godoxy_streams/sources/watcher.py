"""The watcher: one per Docker engine. Lists containers, follows the engine's events and feeds
the reconciler one container at a time; survives the engine going away.

On start and on every reconnect it relists; between, only the containers named in events are
re-inspected, in batches gathered over a short window. A stopped container with sleep/wake
(``<namespace>.idle_timeout``) is inspected at every list too: the list shows no ports of a
stopped container, and its routes stay up while it sleeps. ``lifecycle`` is a client of the
same engine for sleep/wake to start and stop containers with (its own: a reconnect of the
watcher must not cut a stop that takes a while). A periodic full
relist catches anything the event stream missed. An unreachable engine is a state (logged
once per change), retried with capped exponential backoff; running routes are left alone
meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Protocol

from loguru import logger

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.docker_endpoints import EngineSettings
from godoxy_streams.errors import EngineError, EngineUnavailable
from godoxy_streams.events import EventLog
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import SourceView
from godoxy_streams.sources.docker import DockerSource, EngineEvent, own_container_id

BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
SWARM_SETTLE = 0.25  # first pause before another look at Swarm tasks that are starting
STOPPING = {"die": "exited", "pause": "paused", "destroy": "removed"}


class ContainerSink(Protocol):
    """Where a watcher sends what it learns (the reconciler): one container at a time, a full
    list per engine, and what events say for sure before an inspect confirms it."""

    def set_engine_host(self, engine: str, remote_host: str | None) -> None: ...

    def set_engine_protos(self, engine: str, protos: frozenset[str]) -> None: ...

    def own_container(self, info: ContainerInfo) -> None: ...

    def update(self, info: ContainerInfo) -> None: ...

    def replace_engine(self, engine: str, infos: list[ContainerInfo]) -> None: ...

    def remove(self, engine: str, container_id: str) -> None: ...

    def set_state(self, engine: str, container_id: str, state: str) -> None: ...

    def signalled(self, engine: str, container_id: str, sent: str) -> None: ...

    def clear_stopping(self, engine: str, container_id: str) -> None: ...

    def mark_dirty(self) -> None: ...


class Watcher:
    def __init__(
        self,
        endpoint: EngineSettings,
        sink: ContainerSink,
        settings: Settings,
        *,
        engine: str = "local",
        events: EventLog | None = None,
    ) -> None:
        self.endpoint = endpoint.url
        self.events = events if events is not None else EventLog()
        self.engine = engine
        self._client_url = endpoint.client_url()
        self._ssl = endpoint.ssl_context()  # unreadable certificate files stop the start-up
        self._local = endpoint.is_local and not endpoint.is_agent
        self._agent = endpoint.is_agent
        sink.set_engine_host(engine, endpoint.remote_host)
        self.sink = sink
        self.settings = settings
        self.status = SourceView(engine, endpoint.url, since=time.time())
        self.synced = asyncio.Event()
        self._warned_network = False
        self._swarm = False  # whether the engine was a Swarm manager at the last look
        self.lifecycle = DockerSource(self._client_url, engine=engine, ssl_context=self._ssl)

    def _set(self, state: str, error: str | None = None) -> None:
        since = time.time() if state != self.status.state else self.status.since
        self.status = replace(self.status, state=state, since=since, error=error)

    async def run(self) -> None:
        attempt = 0
        while True:
            source = DockerSource(self._client_url, engine=self.engine, ssl_context=self._ssl)
            try:
                version = await source.connect()
                if self._agent:
                    capabilities = await source.agent_capabilities()
                    protos = {p for p in ("tcp", "udp") if capabilities.get(p)}
                    self.sink.set_engine_protos(self.engine, frozenset(protos))
                self.status = replace(self.status, version=str(version.get("Version", "")))
                since = time.time() - 1
                await self._sync(source)
                if self.status.state == "disconnected":
                    logger.info(f"Docker engine {self.endpoint} is back; resynced")
                    self.events.record("engine_back", f"{self.engine}: {self.endpoint} resynced")
                else:
                    logger.info(f"Docker engine {self.endpoint} connected ({self.status.version})")
                self._set("connected")
                attempt = 0
                await self._follow(source, since)
            except Exception as exc:  # an outage, or a surprise: either way a state, not a crash
                if not isinstance(exc, EngineError):
                    logger.opt(exception=exc).error("unexpected error talking to the engine")
                delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                attempt += 1
                if self.status.state != "disconnected":
                    logger.warning(
                        f"Docker engine unreachable ({exc}); running routes stay up; "
                        f"retrying with backoff up to {BACKOFF[-1]:.0f}s"
                    )
                    self.events.record("engine_lost", f"{self.engine}: {self.endpoint}: {exc}")
                self._set("disconnected", str(exc))
                if not self.status.synced:
                    self.sink.mark_dirty()  # one pass, so /healthz can answer
                self._mark_synced()
                await asyncio.sleep(delay)
            finally:
                await source.close()

    def _mark_synced(self) -> None:
        self.status = replace(self.status, synced=True)
        self.synced.set()

    async def _sync(self, source: DockerSource) -> None:
        infos = await self._sleepers_inspected(source, await source.list_containers())
        own = own_container_id() if self._local else None
        if own:
            mine = next((i for i in infos if i.id == own), None)
            if mine is not None:
                self.sink.own_container(mine)
                if not mine.host_network and not self._warned_network:
                    self._warned_network = True
                    mode = mine.network_mode
                    where = (
                        "the default bridge network"
                        if mode in ("default", "bridge")
                        else (f"network mode {mode!r}")
                    )
                    logger.warning(
                        f"godoxy-streams runs in {where}: its listeners appear on the host "
                        "only through published ports; run it with network_mode: host"
                    )
        self.sink.replace_engine(self.engine, infos)
        await self._sync_swarm(source)
        self._mark_synced()

    async def _sleepers_inspected(
        self, source: DockerSource, infos: list[ContainerInfo]
    ) -> list[ContainerInfo]:
        """``infos`` with each stopped container that has sleep/wake inspected."""
        label = self.settings.namespace.lower() + ".idle_timeout"
        asleep = [
            i
            for i, info in enumerate(infos)
            if not info.running and any(k.lower() == label for k in info.labels)
        ]
        found = await asyncio.gather(*(source.inspect(infos[i].id) for i in asleep))
        out = list(infos)
        for i, info in zip(asleep, found, strict=True):
            if info is not None:
                out[i] = info
        return out

    async def _sync_swarm(self, source: DockerSource) -> bool:
        """On a Swarm manager, the labelled services' tasks that should run (see ``swarm``);
        True while one of them is not running yet (the manager updates a task's state a
        moment after its container starts, with no event of its own). Not through an agent
        (its tunnel reaches containers, not Swarm nodes). A manager that cannot answer now
        (e.g. no leader during an election) keeps the last known tasks."""
        if self._agent:
            return False
        try:
            tasks = await source.swarm_tasks(self.settings.namespace)
        except EngineError as exc:
            if isinstance(exc, EngineUnavailable):
                raise
            logger.warning(f"Swarm services of {self.endpoint} unreadable now ({exc}); kept")
            return True
        if tasks is not None or self._swarm:
            self._swarm = tasks is not None
            self.sink.replace_engine(self.engine + ":swarm", tasks or [])
        return any(not task.running for task in tasks or [])

    async def _follow(self, source: DockerSource, since: float) -> None:
        await _Follower(self, source, since).run()

    def _note(self, event: EngineEvent) -> None:
        logger.debug(f"engine event {event.kind} {event.action} {event.container_id[:12]}")


class _Follower:
    """One connection's follow loop: events (a few say for sure what happened, the rest name a
    container to look at), the named containers inspected in batches after a short
    ``coalesce_window``, Swarm tasks looked at again while they settle, and a full relist
    every ``resync_interval``. The first of its tasks to end (the stream closing, an
    ``EngineError``) ends them all."""

    def __init__(self, watcher: Watcher, source: DockerSource, since: float) -> None:
        self.watcher = watcher
        self.source = source
        self.since = since
        self.sink = watcher.sink
        self.engine = watcher.engine
        self.pending: set[str] = set()
        self.swarm_changed = False
        self.wake = asyncio.Event()
        self.settle_timer: asyncio.TimerHandle | None = None
        self.settling = 0

    async def run(self) -> None:
        endpoint = self.watcher.endpoint
        tasks = [
            asyncio.create_task(self.collect(), name=f"events of {endpoint}"),
            asyncio.create_task(self.flush(), name=f"inspect for {endpoint}"),
            asyncio.create_task(self.resync(), name=f"resync of {endpoint}"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise EngineError("the event stream ended")
        finally:
            if self.settle_timer is not None:
                self.settle_timer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def collect(self) -> None:
        async for event in self.source.events(since=self.since):
            self.watcher._note(event)
            if event.swarm:
                self.swarm_changed = True
                self.wake.set()
            if event.kind in ("service", "node"):
                continue
            if event.kind == "container":
                self._what_it_says(event)
            self.pending.add(event.container_id)
            self.wake.set()

    def _what_it_says(self, event: EngineEvent) -> None:
        """Act at once on what a container event says for sure; an inspect confirms later."""
        cid = event.container_id
        if event.action in STOPPING:
            self.sink.set_state(self.engine, cid, STOPPING[event.action])
        elif event.signal:
            self.sink.signalled(self.engine, cid, event.signal)
        elif event.action in ("start", "unpause"):
            self.sink.clear_stopping(self.engine, cid)

    async def flush(self) -> None:
        """Inspect what events named. A lone event is handled at once; events that keep
        coming (another arrived within ``coalesce_window`` of the last flush: a burst) are
        gathered for one window and handled together."""
        window = self.watcher.settings.coalesce_window
        loop = asyncio.get_running_loop()
        last = -window
        while True:
            await self.wake.wait()
            if window and loop.time() - last < window:
                await asyncio.sleep(window)
            self.wake.clear()
            if self.swarm_changed:
                self.swarm_changed = False
                await self._look_at_swarm()
            await self._inspect_pending()
            last = loop.time()

    async def _look_at_swarm(self) -> None:
        """Swarm tasks again; while some are not running yet, again after a backing-off
        pause (one timer), since the manager updates them with no event of their own."""
        if not await self.watcher._sync_swarm(self.source):
            self.settling = 0
        elif self.settle_timer is None:
            delay = min(SWARM_SETTLE * 2**self.settling, 15.0)
            self.settle_timer = asyncio.get_running_loop().call_later(delay, self._settled)
            self.settling += 1

    def _settled(self) -> None:
        self.settle_timer = None
        self.swarm_changed = True
        self.wake.set()

    async def _inspect_pending(self) -> None:
        ids = list(self.pending)
        self.pending.clear()
        infos = await asyncio.gather(*(self.source.inspect(cid) for cid in ids))
        for cid, info in zip(ids, infos, strict=True):
            if info is None:
                self.sink.remove(self.engine, cid)
            else:
                self.sink.update(info)

    async def resync(self) -> None:
        while True:
            await asyncio.sleep(self.watcher.settings.resync_interval)
            await self.watcher._sync(self.source)
