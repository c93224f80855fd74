"""The reconciler: keeps the index of known containers and static routes, and on every change
runs one pass: parse -> desired (conflicts) -> plan -> manager.apply.

Input arrives incrementally (one container at a time); each pass decides on the full state,
so a missed event heals on the next pass. Changes during a pass fold into one more pass.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from loguru import logger

from godoxy_streams.containers import ContainerInfo, signal_number
from godoxy_streams.decide.desired import Conflict, build_desired, identity
from godoxy_streams.decide.plan import make_plan
from godoxy_streams.errors import LabelError
from godoxy_streams.labels import ParseContext, ParseResult, parse_container, without_protocols
from godoxy_streams.model import RouteSpec
from godoxy_streams.reconcile.timeline import note_conflicts
from godoxy_streams.runtime.manager import ApplyReport, StreamManager

EngineKey = tuple[str, str]  # (engine, container id)
NOTED_MAX = 10_000  # informational notes remembered so each is logged once
STOP_GRACE = 60.0  # seconds a container told to stop counts as stopping while still running


@dataclass
class ContainerEntry:
    info: ContainerInfo
    result: ParseResult

    @property
    def serving(self) -> bool:
        return self.info.running


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
                    self.containers[key] = ContainerEntry(entry.info, self._parse(entry.info))
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

    def update(self, info: ContainerInfo) -> None:
        key = (info.engine, info.id)
        told = self._stopping.get(key)
        if told is not None:
            if info.running and time.monotonic() - told < STOP_GRACE:
                info = replace(info, state="stopping")
            else:
                del self._stopping[key]
        entry = self.containers.get(key)
        if entry is not None and entry.info == info:
            return
        result = self._parse(info)
        if info.running and (entry is None or entry.result.errors != result.errors):
            for error in result.errors:
                logger.bind(container=info.name, label=error.label).warning(f"invalid: {error}")
        self.containers[key] = ContainerEntry(info, result)
        self.mark_dirty()

    def set_state(self, engine: str, container_id: str, state: str) -> None:
        """What an event says for sure (``die``, ``pause``) before an inspect confirms it: the
        engine may hold the container for a second of cleanup, its routes must not wait."""
        entry = self.containers.get((engine, container_id))
        if entry is not None and entry.info.state != state:
            self.containers[(engine, container_id)] = ContainerEntry(
                replace(entry.info, state=state), entry.result
            )
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
        if self.containers.pop((engine, container_id), None) is not None:
            self.mark_dirty()

    def replace_engine(self, engine: str, infos: list[ContainerInfo]) -> None:
        """A full list from one engine: update what changed, forget what is gone."""
        seen = {info.id for info in infos}
        for key in [k for k in self.containers if k[0] == engine and k[1] not in seen]:
            del self.containers[key]
            self.mark_dirty()
        for info in infos:
            self.update(info)
        self.mark_dirty()

    def set_static(self, result: ParseResult) -> None:
        for error in result.errors:
            logger.warning(f"invalid static route: {error}")
        self.static = result
        self.mark_dirty()

    def own_container(self, info: ContainerInfo) -> None:
        """The container this daemon runs in: never routed; the networks it is on decide which
        address of a container on several networks is dialled."""
        self.own_ids.add(info.id)
        networks = frozenset(n for n, ip in info.networks.items() if ip)
        if self.ctx.own_networks != networks:
            self.set_context(replace(self.ctx, own_networks=networks))

    def set_context(self, ctx: ParseContext) -> None:
        if ctx == self.ctx:
            return
        self.ctx = ctx
        for key, entry in list(self.containers.items()):
            self.containers[key] = ContainerEntry(entry.info, self._parse(entry.info))
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
        started = time.monotonic()
        running = self.manager.running_specs()
        desired = build_desired(self.candidates(), holders=running.values())
        applied = await self.manager.apply(make_plan(desired.routes, running))
        for conflict in desired.conflicts:
            seen = (identity(conflict.route), conflict.route.key, identity(conflict.holder))
            if seen not in self._conflicts_seen:
                spec = conflict.route
                logger.bind(
                    protocol=spec.scheme,
                    listen=str(spec.key),
                    action="conflict",
                    route=spec.alias,
                    source=spec.origin.name,
                ).warning(f"route conflict: {conflict.message}")
        self._conflicts_seen = {
            (identity(c.route), c.route.key, identity(c.holder)) for c in desired.conflicts
        }
        note_conflicts(
            self.manager.events, self.last.conflicts, desired.conflicts, self.manager.running
        )
        self.last = PassReport(desired.conflicts, applied, time.time(), time.monotonic() - started)
        self.passes += 1
        if self.on_pass is not None:
            self.on_pass(self.last)
        async with self._changed:
            self._changed.notify_all()
        return self.last

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
