"""The reconciler: keeps the known containers and static routes, and on every change runs one
pass: decide the touched listen sockets -> plan -> manager.apply.

Input arrives one container at a time (or as a full list at a resync, where containers whose
listing did not change are skipped before any parsing). Each container's parsed routes are its
contribution to the desired state (``decide.index``), which decides again only the socket
groups a change touched: the work per event does not grow with the number of containers, and
the result is the same as deciding everything from scratch. Changes during a pass fold into
one more pass.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from loguru import logger

from godoxy_streams.containers import ContainerInfo, signal_number
from godoxy_streams.decide.desired import Conflict, identity
from godoxy_streams.decide.index import Contributor, DesiredIndex
from godoxy_streams.decide.sleep import keeps_routes, serving_routes
from godoxy_streams.errors import LabelError
from godoxy_streams.labels import ParseContext, ParseResult, parse_container, without_protocols
from godoxy_streams.model import RouteSpec
from godoxy_streams.reconcile.sleepers import sleep_targets
from godoxy_streams.reconcile.timeline import note_conflicts
from godoxy_streams.runtime.manager import ApplyReport, StreamManager
from godoxy_streams.runtime.sleep import SleepController

EngineKey = tuple[str, str]  # (engine, container id)
STATIC: Contributor = ("file",)
NOTED_MAX = 10_000  # informational notes remembered so each is logged once
STOP_GRACE = 60.0  # seconds a container told to stop counts as stopping while still running


@dataclass
class ContainerEntry:
    info: ContainerInfo
    result: ParseResult

    @property
    def serving(self) -> bool:
        """Its routes are wanted: it runs, or it sleeps (stopped or paused, sleep/wake)."""
        return keeps_routes(self.info.state, self.result.idle is not None)


@dataclass
class PassReport:
    """What the last pass decided, for the status API."""

    conflicts: tuple[Conflict, ...] = ()
    applied: ApplyReport = field(default_factory=ApplyReport)
    finished_at: float = 0.0
    duration: float = 0.0


class Reconciler:
    def __init__(self, manager: StreamManager, ctx: ParseContext) -> None:
        self.manager = manager
        self.ctx = ctx
        self.containers: dict[EngineKey, ContainerEntry] = {}
        self.index = DesiredIndex()
        self.static = ParseResult()
        self.own_ids: set[str] = set()
        self.last = PassReport()
        self.passes = 0
        self.on_pass: Callable[[PassReport], None] | None = None
        self._dirty = asyncio.Event()
        self._changed = asyncio.Condition()
        self._noted: set[str] = set()
        self._conflicts_seen: set[tuple[object, ...]] = set()
        self._engine_hosts: dict[str, str | None] = {}
        self._engine_protos: dict[str, frozenset[str]] = {}
        self._stopping: dict[EngineKey, float] = {}  # told to stop (SIGTERM/SIGKILL), when
        self.sleep: SleepController | None = None  # sleep/wake, when the daemon has engines
        self._sleepers: set[EngineKey] = set()  # containers with sleep/wake

    # -- input -----------------------------------------------------------------------------
    def set_engine_host(self, engine: str, remote_host: str | None) -> None:
        """Containers of ``engine`` are dialled at ``remote_host`` and their published ports
        (None: a local engine, their own addresses)."""
        self._engine_hosts[engine] = remote_host

    def set_engine_protos(self, engine: str, protos: frozenset[str]) -> None:
        """Only routes of these protocols can be served for ``engine`` (an agent's
        capabilities); its other routes become errors."""
        if self._engine_protos.get(engine) != protos:
            self._engine_protos[engine] = protos
            for key, entry in list(self.containers.items()):
                if key[0] == engine:
                    self._store(key, ContainerEntry(entry.info, self._parse(entry.info)))
            self.mark_dirty()

    def _parse(self, info: ContainerInfo) -> ParseResult:
        host = info.node_address or self._engine_hosts.get(info.engine)
        ctx = self.ctx if host is None else replace(self.ctx, remote_host=host)
        result = parse_container(info, ctx)
        protos = self._engine_protos.get(info.engine)
        if protos is not None and any(r.proto not in protos for r in result.routes):
            result = without_protocols(result, protos, info.engine)
        for note in result.notes:
            if note not in self._noted:
                if len(self._noted) >= NOTED_MAX:  # bounded memory under container churn
                    self._noted.clear()
                self._noted.add(note)
                logger.info(note)
        return result

    def _store(self, key: EngineKey, entry: ContainerEntry) -> None:
        """Keep ``entry`` and hand its routes (none unless it serves; a container that sleeps
        has them marked with its sleep state, ``decide.sleep``) to the index."""
        self.containers[key] = entry
        info, result = entry.info, entry.result
        sleeps = result.idle is not None
        (self._sleepers.add if sleeps else self._sleepers.discard)(key)
        if key[1] in self.own_ids:
            self.index.set_routes(key, ())
            return
        hold = self.sleep.hold(key) if self.sleep is not None and sleeps else None
        self.index.set_routes(key, serving_routes(result.routes, info.state, sleeps, hold))

    def _forget(self, key: EngineKey) -> bool:
        self._sleepers.discard(key)
        if self.containers.pop(key, None) is None:
            return False
        self.index.set_routes(key, ())
        return True

    def held(self, engine: str, container_id: str) -> None:
        """A wake or a sleep of the container began or ended: its routes change marks."""
        entry = self.containers.get((engine, container_id))
        if entry is not None:
            self._store((engine, container_id), entry)
        self.mark_dirty()

    def update(self, info: ContainerInfo, *, listed: bool = False) -> None:
        """What one container is now: from an inspect, or (``listed``) from a full list,
        which cannot tell the image's stop signal and is skipped when unchanged."""
        key = (info.engine, info.id)
        entry = self.containers.get(key)
        if listed and entry is not None:  # a list entry is an inspect's facts but the signal
            info = replace(info, stop_signal=entry.info.stop_signal)
        told = self._stopping.get(key)
        if told is not None:
            if info.running and time.monotonic() - told < STOP_GRACE:
                info = replace(info, state="stopping")
            else:
                del self._stopping[key]
        if entry is not None and entry.info == info:
            return
        result = self._parse(info)
        if info.running and (entry is None or entry.result.errors != result.errors):
            for error in result.errors:
                logger.bind(container=info.name, label=error.label).warning(f"invalid: {error}")
        self._store(key, ContainerEntry(info, result))
        self.mark_dirty()

    def set_state(self, engine: str, container_id: str, state: str) -> None:
        """What an event says for sure (``die``, ``pause``) before an inspect confirms it: the
        engine may hold the container for a second of cleanup, its routes must not wait."""
        entry = self.containers.get((engine, container_id))
        if entry is not None and entry.info.state != state:
            info = replace(entry.info, state=state)
            self._store((engine, container_id), ContainerEntry(info, entry.result))
            self.mark_dirty()

    def signalled(self, engine: str, container_id: str, sent: str) -> None:
        """A ``kill`` event: SIGKILL, or the container's stop signal (SIGTERM unless its image
        says otherwise), means it is stopping."""
        entry = self.containers.get((engine, container_id))
        stop = entry.info.stop_signal if entry is not None else None
        number = signal_number(sent)  # None for SIGTERM
        if number == stop or number == signal.SIGKILL:
            self.set_stopping(engine, container_id)

    def set_stopping(self, engine: str, container_id: str) -> None:
        """The container was sent its stop signal or SIGKILL: no new connections go to it
        from now (its live ones drain) even while it still runs, until it dies, starts
        again, or ``STOP_GRACE`` passes (then it serves again if it still runs)."""
        if len(self._stopping) >= NOTED_MAX:
            self._stopping.clear()
        key = (engine, container_id)
        self._stopping[key] = told = time.monotonic()
        self.set_state(engine, container_id, "stopping")
        asyncio.get_running_loop().call_later(STOP_GRACE, self._grace_over, key, told)

    def _grace_over(self, key: EngineKey, told: float) -> None:
        if self._stopping.get(key) != told:
            return  # it died, started again, or was told to stop once more
        del self._stopping[key]
        entry = self.containers.get(key)
        if entry is not None and entry.info.state == "stopping":
            logger.info(f"container {entry.info.name} still runs {STOP_GRACE:g}s after its stop")
            self.set_state(key[0], key[1], "running")

    def clear_stopping(self, engine: str, container_id: str) -> None:
        self._stopping.pop((engine, container_id), None)

    def remove(self, engine: str, container_id: str) -> None:
        self._stopping.pop((engine, container_id), None)
        if self._forget((engine, container_id)):
            self.mark_dirty()

    def replace_engine(self, engine: str, infos: list[ContainerInfo]) -> None:
        """A full list from one engine: update what changed, forget what is gone."""
        seen = {info.id for info in infos}
        for key in [k for k in self.containers if k[0] == engine and k[1] not in seen]:
            self._forget(key)
        for info in infos:
            self.update(info, listed=True)
        self.mark_dirty()  # one pass per list, so the first sync always reports

    def set_static(self, result: ParseResult) -> None:
        for error in result.errors:
            logger.warning(f"invalid static route: {error}")
        self.static = result
        self.index.set_routes(STATIC, result.routes)
        self.mark_dirty()

    def own_container(self, info: ContainerInfo) -> None:
        """The container this daemon runs in: never routed; the networks it is on decide which
        address of a container on several networks is dialled."""
        if info.id not in self.own_ids:
            self.own_ids.add(info.id)
            entry = self.containers.get((info.engine, info.id))
            if entry is not None:
                self._store((info.engine, info.id), entry)
        networks = frozenset(n for n, ip in info.networks.items() if ip)
        if self.ctx.own_networks != networks:
            self.set_context(replace(self.ctx, own_networks=networks))

    def set_context(self, ctx: ParseContext) -> None:
        if ctx == self.ctx:
            return
        self.ctx = ctx
        for key, entry in list(self.containers.items()):
            self._store(key, ContainerEntry(entry.info, self._parse(entry.info)))
        self.mark_dirty()

    def mark_dirty(self) -> None:
        self._dirty.set()

    # -- decision --------------------------------------------------------------------------
    def candidates(self) -> list[RouteSpec]:
        routes = list(self.static.routes)
        for (_, cid), entry in sorted(self.containers.items()):
            if entry.serving and cid not in self.own_ids:
                routes.extend(entry.result.routes)
        return routes

    def label_errors(self) -> list[LabelError]:
        errors = list(self.static.errors)
        for entry in self.containers.values():
            if entry.serving:
                errors.extend(entry.result.errors)
        return errors

    async def reconcile(self) -> PassReport:
        """One pass: decide the touched socket groups, apply their plan, log new conflicts."""
        started = time.monotonic()
        running = self.manager.specs
        self.index.mark(self.manager.failed)  # a failed bind is retried at every pass
        plan = self.index.decide(running)
        touched = [*plan.stop, *(s.key for s in plan.retarget), *(s.key for s in plan.start)]
        before = {key: running.get(key) for key in touched}
        applied = await self.manager.apply(plan)
        self.index.applied(before, running)
        self._sync_sleep()
        conflicts = self.index.conflicts()
        self._log_new_conflicts(conflicts)
        note_conflicts(self.manager.events, self.last.conflicts, conflicts, self.manager.running)
        self.last = PassReport(conflicts, applied, time.time(), time.monotonic() - started)
        self.passes += 1
        if self.on_pass is not None:
            self.on_pass(self.last)
        if self.index.dirty:  # routes started or stopped holding a socket: rank again
            self.mark_dirty()
        async with self._changed:
            self._changed.notify_all()
        return self.last

    def _sync_sleep(self) -> None:
        """Hand the containers that sleep (and their dependencies) to sleep/wake; nothing to
        do while none does."""
        if self.sleep is None or not (self._sleepers or self.sleep.registry.targets):
            return
        own = self.own_ids
        entries = [(e.info, e.result) for k, e in self.containers.items() if k[1] not in own]
        self.sleep.sync(sleep_targets(entries) if self._sleepers else {})

    def _log_new_conflicts(self, conflicts: tuple[Conflict, ...]) -> None:
        seen: set[tuple[object, ...]] = set()
        for conflict in conflicts:
            mark = (identity(conflict.route), conflict.route.key, identity(conflict.holder))
            seen.add(mark)
            if mark not in self._conflicts_seen:
                spec = conflict.route
                logger.bind(
                    protocol=spec.scheme,
                    listen=str(spec.key),
                    action="conflict",
                    route=spec.alias,
                    source=spec.origin.name,
                ).warning(f"route conflict: {conflict.message}")
        self._conflicts_seen = seen

    async def run(self) -> None:
        """Reconcile whenever something changed, one pass at a time, forever."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.reconcile()
            except Exception:  # a bug in one pass must not stop the daemon
                logger.exception("reconcile pass failed; retrying on the next change")

    async def wait_for_pass(self, after: int, timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.passes > after), timeout)
            except TimeoutError:
                return False
        return True
