"""The kernel fast path in the running daemon: decides at start whether it runs, keeps a route
id per running route, applies the table the running routes call for, ends drained and killed
routes' flows on time, and gives the read model each route's path and kernel counters.

It is fed, never fed back: the manager calls ``applied(report)`` after each plan it applies,
the health checks call ``changed()`` when a member goes down or up. Both only note the change
and wake the apply loop (``run``): an apply of a thousand routes takes seconds, and neither
the reconcile pass nor a health check waits for it; the userspace listener serves meanwhile.
Changes that arrive during an apply fold into the next one, applied one at a time.

Stopped routes leave the table at the next apply; their flows are killed then (``on_stop:
kill``) or after ``drain_timeout`` (``drain``), and only then is their route id free again. A
member a ``kill`` route loses on a retarget has its flows killed. A stop (``withdraw``, the
daemon's first step on SIGTERM) removes the table and the DOCKER-USER rule at once (no new
flow is forwarded; open ones run on through conntrack and Docker's rule for established
flows); ``drain`` then kills each route's flows when its drain ends (``drain_timeout``, at
most ``shutdown_grace``): a daemon killed meanwhile leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable

from loguru import logger

from godoxy_streams.errors import ConfigError
from godoxy_streams.model import Member, RouteKey, RouteSpec
from godoxy_streams.runtime.health_monitor import member_key
from godoxy_streams.runtime.manager import ApplyReport, RunningRoute, StreamManager
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import RouteView

from .flows import FlowEnds, drain
from .host import TableTaken, claim_table, docker_subnets
from .ids import IdsExhausted, RouteIds
from .nft import KernelError, availability
from .path import KernelPath
from .plan import WAITING, Decision, Served, fast_path_context, plan_table, refused
from .readings import Readings, kernel_counters, with_path
from .routes import KernelTable

RETRY_S = 30.0  # after the whole table failed to apply


def _takes_flows(route: RunningRoute, member: Member) -> bool:
    """Whether new flows may go to ``member``: Docker and the active probe say it is up (a
    passive mark-down after a local client's failed dial expires on its own; not rendered)."""
    pool = route.stream.pool
    state = pool.member(member_key(member)) if pool is not None else None
    return state is None or (state.docker_health in (None, "healthy") and state.probe_up)


class KernelController:
    """The fast path's state in the daemon (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        manager: StreamManager,
        path: KernelPath | None = None,
        *,
        check: Callable[[], Awaitable[str | None]] = availability,
        subnets: Callable[[], tuple[str, ...]] = docker_subnets,
        claimer: Callable[[], socket.socket] = claim_table,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.path = path or KernelPath()
        self.mode = settings.fast_path
        self.enabled = False
        self.reason = "fast_path is off"
        self.docker_user: tuple[str, ...] = ()
        self.readings = Readings(self.path)
        self._check = check
        self._claimer = claimer
        self._claim: socket.socket | None = None
        self._subnets = subnets
        self._ids = RouteIds()
        self._specs: dict[RouteKey, RouteSpec] = {}
        self._decisions: dict[RouteKey, Decision] = {}
        self._ends = FlowEnds(self._ids)
        self._dirty = asyncio.Event()
        self._cut = asyncio.Event()
        self._changes = self._applied = 0
        self._retry_at: float | None = None
        self._inflight: asyncio.Future[None] | None = None
        self._logged: set[str] = set()
        self._waits: dict[int, float] = {}  # set by withdraw, used by drain

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Decide whether the fast path runs (``auto``: say once why not; ``nftables``: fail
        the start with the reason), then replace any stale table and ensure the rule."""
        if self.mode == "off":
            return
        reason = await self._check()
        if reason is None:
            reason = await self._claim_and_start()
        if reason is not None:
            if self.mode == "nftables":
                raise ConfigError(f"fast_path: nftables cannot run here: {reason}")
            self.reason = f"unavailable: {reason}"
            logger.warning(f"fast path (auto) stays off: {reason}")
            return
        self.enabled, self.reason = True, "nftables DNAT for the routes that need nothing else"
        chains = ", ".join(self.docker_user) or "none (no DOCKER-USER chain)"
        logger.info(f"fast path on: table inet godoxy_streams; DOCKER-USER accept in {chains}")
        if self.settings.log.access_log and not self.settings.log.access_log_asked:
            logger.info(
                "fast path: connections the kernel forwards are not in the access log "
                "(set log.access_log: true to keep every route in userspace with its lines)"
            )

    async def _claim_and_start(self) -> str | None:
        try:
            self._claim = self._claimer()
        except TableTaken as e:
            return str(e)
        try:
            self.docker_user = tuple(await self.path.start())
        except KernelError as e:
            self._release()
            return f"cannot set up the nftables table: {e}"
        return None

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = None

    async def run(self) -> None:
        """Apply changes one at a time, end flows when due, re-check the DOCKER-USER rule
        every ``resync_interval`` (the loop of the daemon's life, until ``withdraw``)."""
        resync = time.monotonic() + self.settings.resync_interval
        while self.enabled:
            due = self._ends.next_due(self._applied)
            wake = min(resync, due or resync, self._retry_at or resync)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives as the event is set, and the daemon's stop would wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake - time.monotonic())):
                    await self._dirty.wait()
            if not self.enabled:
                return  # withdrawn meanwhile: nothing may be applied any more
            now = time.monotonic()
            if self._dirty.is_set() or (self._retry_at is not None and now >= self._retry_at):
                self._dirty.clear()
                self._inflight = asyncio.ensure_future(self._apply())
                await asyncio.shield(self._inflight)  # never cut an nft transaction short
            await self._ends.end_due(self.path, self._applied, self._log_once)
            if time.monotonic() >= resync:
                resync = time.monotonic() + self.settings.resync_interval
                await self._resync()

    def cut(self) -> None:
        """End every drain now (a second signal during shutdown)."""
        self._cut.set()

    async def withdraw(self, grace: float) -> None:
        """The first step of a stop: table and DOCKER-USER rule removed at once (no new flow
        is forwarded; open ones run on through conntrack and Docker's rule for established
        flows, so a daemon killed after this leaves nothing behind). ``drain`` then ends the
        open flows, each route's when its drain is over (at most ``grace``)."""
        if not self.enabled:
            return
        self.enabled, self.reason = False, "stopped"
        if self._inflight is not None and not self._inflight.done():
            await asyncio.gather(self._inflight, return_exceptions=True)
        running = {rid: spec for key, spec in self._specs.items() if (rid := self._ids.get(key))}
        self._waits = self._ends.waits(running, grace)
        try:
            await self.path.stop()
        except KernelError as e:
            logger.error(f"fast path: the table or the DOCKER-USER rule was not removed: {e}")
        else:
            logger.info("fast path off: table and DOCKER-USER rule removed")
        self._release()

    async def drain(self) -> None:
        """Kill each withdrawn route's flows when its drain ends (``kill`` routes at once);
        done when none is left, or at once after ``cut``."""
        waits, self._waits = self._waits, {}
        try:
            await drain(self.path, waits, self._cut)
        except KernelError as e:
            logger.warning(f"fast path: flows not ended: {e}")

    async def shutdown(self, grace: float) -> None:
        """``withdraw``, then ``drain``."""
        await self.withdraw(grace)
        await self.drain()

    # -- what the daemon tells it ----------------------------------------------------------
    def applied(self, report: ApplyReport) -> None:
        """The manager applied a plan: note stopped, retargeted and started routes."""
        if not self.enabled:
            return
        self._changes += 1
        for key in report.stopped:
            spec, route_id = self._specs.pop(key, None), self._ids.retire(key)
            if route_id is not None:
                self._ends.route_stopped(spec, route_id, self._changes)
        running = self.manager.running
        for key in report.retargeted:
            old, new = self._specs.get(key), running[key].spec if key in running else None
            route_id = self._ids.get(key)
            if new is not None:
                self._specs[key] = new
                if old is not None and route_id is not None:
                    self._ends.members_lost(old, new, route_id, self._changes)
        for key in report.started:
            if key in running:
                self._specs[key] = running[key].spec
        self._dirty.set()

    def changed(self, *_: object) -> None:
        """Something the table depends on changed (a member's health): apply again."""
        if self.enabled:
            self._changes += 1
            self._dirty.set()

    # -- applying --------------------------------------------------------------------------
    def _served(self) -> tuple[list[Served], dict[RouteKey, Decision]]:
        served, without_id = [], {}
        for key, route in self.manager.running.items():
            try:
                route_id = self._ids.assign(key)
            except IdsExhausted as e:
                without_id[key] = Decision("userspace", str(e))
                continue
            self._specs.setdefault(key, route.spec)
            healthy = tuple(m for m in route.spec.members if _takes_flows(route, m))
            served.append(Served(key, route.spec, route.bound_port, healthy, route_id))
        return served, without_id

    async def _apply(self) -> None:
        change = self._changes
        served, without_id = self._served()
        ctx = fast_path_context(self.settings, self.manager.tunnels, self._subnets())
        plan = plan_table(served, ctx, self.settings.limits.max_connections)
        try:
            errors = await self.path.apply(plan.table)
        except KernelError as e:
            await self._failed(plan.decisions, str(e), change)
            return
        for route_id, error in errors.items():
            self._log_once(f"fast path: the kernel refused route id {route_id}: {error}")
        plan = refused(plan, errors)
        self._decisions = {**plan.decisions, **without_id}
        self._ends.forwarded |= {r.route_id for r in plan.table.routes if r.members}
        self._applied, self._retry_at = change, None

    async def _failed(self, decisions: dict[RouteKey, Decision], error: str, change: int) -> None:
        """The table could not be applied at all: nothing is DNATed (every route in
        userspace, with the error) until a later apply succeeds; retried in RETRY_S."""
        message = f"the kernel table could not be applied: {error}"
        self._log_once(f"fast path: {message}")
        self._decisions = {
            key: d if d.path == "userspace" else Decision("userspace", message)
            for key, d in decisions.items()
        }
        self._retry_at = time.monotonic() + RETRY_S
        try:
            await self.path.apply(KernelTable())
        except KernelError:
            return
        self._applied = change

    async def _resync(self) -> None:
        try:
            self.docker_user = tuple(await self.path.docker_user.ensure())
        except KernelError as e:
            self._log_once(f"fast path: cannot check the DOCKER-USER rule: {e}")

    def _log_once(self, message: str) -> None:
        if message not in self._logged:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged.add(message)
            logger.warning(message)

    # -- what observers see ----------------------------------------------------------------
    async def refresh(self) -> None:
        """Read counters and flows again if the cached ones are older than a second."""
        if self.enabled:
            await self.readings.refresh()

    def annotate(self, views: list[RouteView]) -> list[RouteView]:
        """Each bound route's view with its path, the reason, and its kernel counters."""
        out = []
        for view in views:
            key = view.spec.key
            if view.listen_port is None or key not in self.manager.running:
                out.append(view)
                continue
            decision = self._decision(key)
            kernel = None
            route_id = self._ids.get(key)
            if decision.path == "kernel" and route_id is not None:
                counters = self.readings.counters.get(route_id)
                kernel = kernel_counters(counters, self.readings.active.get(route_id, 0))
            out.append(with_path(view, decision.path, decision.reason, kernel))
        return out

    def _decision(self, key: RouteKey) -> Decision:
        if not self.enabled:
            return Decision("userspace", self.reason)
        return self._decisions.get(key) or Decision("userspace", WAITING)

    def health_view(self) -> dict[str, object]:
        """``fast_path`` of ``/healthz``."""
        kernel = sum(1 for d in self._decisions.values() if d.path == "kernel")
        return {
            "mode": self.mode,
            "enabled": self.enabled,
            "reason": self.reason,
            "docker_user": list(self.docker_user),
            "kernel_routes": kernel if self.enabled else 0,
        }
