"""The daemon's lifecycle in one place: start-up, signals, the main wait, graceful shutdown.

``Daemon.serve()``: set up logging, start the reconciler, load the static routes (reloaded on
SIGHUP and when the file changes) and the TLS certificates of ``certificates_dir`` (the same),
start one watcher per Docker engine (an unreachable engine
is retried in the background), serve the status API, then wait for SIGTERM/SIGINT. Shutdown
stops every listener at once and drains live connections per route policy, bounded by
``shutdown_grace``; a second signal cuts them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from loguru import logger

from godoxy_streams import __version__
from godoxy_streams.agent.client.datagrams import DatagramTunnel
from godoxy_streams.agent.client.tunnel import Tunnel
from godoxy_streams.agent.quic.config import client_configuration
from godoxy_streams.agent.wire.header import ALPN_STREAM
from godoxy_streams.app.context import settings_context
from godoxy_streams.app.heap import HeapFreezer
from godoxy_streams.app.logs import setup_logging
from godoxy_streams.docker_endpoints import EngineSettings
from godoxy_streams.errors import ConfigError, StreamsError
from godoxy_streams.events import EventLog
from godoxy_streams.observe.metrics import Metrics
from godoxy_streams.observe.serving import ApiServer
from godoxy_streams.observe.status_api import build_app
from godoxy_streams.reconcile.reconciler import PassReport, Reconciler
from godoxy_streams.reconcile.snapshot import build_snapshot
from godoxy_streams.runtime.descriptors import raise_nofile
from godoxy_streams.runtime.kept_ports import KeptPorts
from godoxy_streams.runtime.kernel.controller import KernelController
from godoxy_streams.runtime.manager import StreamManager
from godoxy_streams.runtime.sleep import SleepController
from godoxy_streams.settings import Settings, api_address
from godoxy_streams.snapshot import Snapshot
from godoxy_streams.sources.routes_file import load_routes_file
from godoxy_streams.sources.watcher import Watcher

ROUTES_FILE_POLL = 1.0
CERTIFICATES_POLL = 5.0
STEP_TIMEOUT = 5.0  # each shutdown step besides the drain: a stuck one is named, then passed


class Daemon:
    def __init__(self, settings: Settings, tunnels: Mapping[str, Tunnel] | None = None) -> None:
        """``tunnels`` adds agent tunnels by engine name (beyond those of ``agent://``
        engines, which are made here)."""
        self.settings = settings
        self.ctx = settings_context(settings)
        self.tunnels: dict[str, Tunnel] = {
            engine.display_name(index): agent_tunnel(engine)
            for index, engine in enumerate(() if settings.no_docker else settings.docker)
            if engine.is_agent
        }
        self.tunnels.update(tunnels or {})
        kept_ports = KeptPorts(settings.state_dir)
        self.events = EventLog()  # the timeline: everyone who sees a change records it
        self.manager = StreamManager(settings, self.tunnels, kept_ports, self.events)
        self.reconciler = Reconciler(self.manager, self.ctx)
        self.reconciler.on_pass = self._after_pass
        self._metrics: Metrics | None = None
        self._heap = HeapFreezer()
        self.kernel = KernelController(settings, self.manager)
        self.manager.on_applied = self.kernel.applied
        self.manager.health.on_change = self.kernel.changed
        self.watchers = (
            []
            if settings.no_docker
            else [
                Watcher(
                    engine,
                    self.reconciler,
                    settings,
                    engine=engine.display_name(i),
                    events=self.events,
                )
                for i, engine in enumerate(settings.docker)
            ]
        )
        by_engine = {w.engine: w for w in self.watchers}
        if self.watchers:  # sleep/wake starts and stops containers through the watchers' clients
            self.reconciler.sleep = SleepController(
                self.manager,
                lambda name: w.lifecycle if (w := by_engine.get(name)) else None,
                self.reconciler,
            )
        self.stop = asyncio.Event()
        self.force = False
        self.api_port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._static_synced = settings.routes_file is None
        self._routes_mtime: float | None = None
        self._api: ApiServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def serve(self) -> None:
        await self.startup()
        try:
            await self.stop.wait()
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        logger.info(f"godoxy-streams {__version__} starting")
        logger.info(self.manager.descriptors.describe())
        self._capture_signals()
        await self.kernel.start()  # before the first pass: its routes find the table ready
        self._spawn(self.kernel.run(), "fast path")
        self._spawn(self.reconciler.run(), "reconciler")
        self._spawn(self.manager.sampler.run(self.manager.sampled), "history sampler")
        if self.settings.routes_file is not None:
            self.reload_routes()
            self._spawn(self._watch_routes_file(self.settings.routes_file), "routes file")
        if self.settings.certificates_dir is not None:
            self._spawn(self._watch_certificates(), "certificates")
        if not self.watchers:
            logger.info("Docker provider off: serving static routes only")
            if self.settings.routes_file is None:
                self.reconciler.mark_dirty()  # nothing to wait for: one empty pass, then ready
        for watcher in self.watchers:
            self._spawn(watcher.run(), f"watcher {watcher.endpoint}")
        if self.reconciler.sleep is not None:
            self._spawn(self.reconciler.sleep.run(), "sleep/wake")
        if self.settings.api:
            await self._start_api()

    async def shutdown(self) -> None:
        logger.info("shutting down: closing listeners, draining live connections")
        await self.kernel.withdraw(self.settings.shutdown_grace)  # first: the host's firewall
        if self._api is not None:
            await self._api.stop()
        await self._cancel_tasks()
        drain = asyncio.create_task(self._drain(self.settings.shutdown_grace))
        self.stop.clear()
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({drain, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            logger.warning("second signal: cutting live connections")
            self.kernel.cut()
            await self.manager.cut_all()
            await asyncio.gather(drain, return_exceptions=True)
        stopper.cancel()
        closing = [tunnel.close() for tunnel in self.tunnels.values()]
        closing += [watcher.lifecycle.close() for watcher in self.watchers]
        if closing:
            await self._bounded([asyncio.ensure_future(c) for c in closing], "closing clients")
        logger.info("stopped")

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await self._bounded(tasks, "stopping tasks")

    @staticmethod
    async def _bounded(tasks: Sequence[asyncio.Future[None]], what: str) -> None:
        """Wait up to ``STEP_TIMEOUT`` for ``tasks``; name (and leave) the ones still busy,
        so that one stuck peer cannot hold the shutdown past its grace."""
        _, pending = await asyncio.wait(tasks, timeout=STEP_TIMEOUT)
        for task in pending:
            task.cancel()
            stack = task.get_stack(limit=1) if isinstance(task, asyncio.Task) else []
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            at = f" at {stack[0].f_code.co_filename}:{stack[0].f_lineno}" if stack else ""
            logger.warning(f"{what}: {name!r} still busy after {STEP_TIMEOUT:g}s{at}; left behind")

    async def _drain(self, grace: float) -> None:
        """Userspace listeners and the kernel path drain side by side."""
        await asyncio.gather(self.manager.close_all(grace=grace), self.kernel.drain())

    def _capture_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_exit_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        self.reload_routes()
        self.refresh_certificates()

    def _on_exit_signal(self, sig: signal.Signals) -> None:
        logger.info(f"received {sig.name}")
        self.stop.set()

    def _spawn(self, coro: object, name: str) -> None:
        async def guarded() -> None:
            try:
                await coro  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(f"task {name!r} failed; stopping")
                self.stop.set()

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- static routes ---------------------------------------------------------------------
    def reload_routes(self) -> None:
        path = self.settings.routes_file
        if path is None:
            return
        try:
            self._routes_mtime = path.stat().st_mtime
            result = load_routes_file(path, self.ctx)
        except (ConfigError, OSError) as exc:
            logger.error(f"routes file not loaded, keeping the previous routes: {exc}")
        else:
            logger.info(
                f"routes file {path}: {len(result.routes)} route(s), {len(result.errors)} error(s)"
            )
            self.reconciler.set_static(result)
        self._static_synced = True

    async def _watch_routes_file(self, path: Path) -> None:
        while True:
            await asyncio.sleep(ROUTES_FILE_POLL)
            try:
                mtime: float | None = path.stat().st_mtime
            except OSError:
                mtime = None
            if mtime is not None and mtime != self._routes_mtime:
                self.reload_routes()

    # -- certificates ----------------------------------------------------------------------
    def refresh_certificates(self) -> None:
        """Reload changed certificate files; routes waiting for one are tried again."""
        if self.manager.sni.refresh_certificates():
            self.reconciler.mark_dirty()

    async def _watch_certificates(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATES_POLL)
            self.refresh_certificates()

    def _after_pass(self, report: PassReport) -> None:
        if self._metrics is not None:
            self._metrics.observe_pass(report.duration)
        self._heap.settled(len(self.manager.running))

    # -- status API ------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """What observers see now (built per call)."""
        sources = [w.status for w in self.watchers]
        api = self._api.view() if self._api is not None else None
        return build_snapshot(self.reconciler, sources, self._static_synced, api, self.kernel)

    async def _start_api(self) -> None:
        host, port = api_address(self.settings.api)
        metrics = self._metrics = Metrics(self.snapshot)
        app = build_app(self.snapshot, metrics, self.settings.api_token, self.kernel.refresh)
        self._api = ApiServer(app, self.settings.limits.api_connections)
        try:
            self.api_port = await self._api.start(host, port)
        except OSError as exc:
            raise ConfigError(f"cannot serve the status API on {self.settings.api}: {exc}") from exc
        logger.info(f"status API on http://{host}:{self.api_port}")


def agent_tunnel(engine: EngineSettings) -> Tunnel:
    """The tunnel (TCP and UDP) to an ``agent://`` engine."""
    host, port = engine.agent_address
    context = engine.ssl_context(ALPN_STREAM)
    ca, cert, key = engine.tls_files()
    assert context is not None and ca is not None and cert is not None and key is not None
    quic = client_configuration(ca, cert, key, host)
    return Tunnel(host, port, context, datagrams=DatagramTunnel(host, port, quic))


def run_daemon(settings: Settings, tunnels: Mapping[str, Tunnel] | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit code of ``godoxy-streams run``. ``tunnels`` adds
    agent tunnels by engine name (beyond those of ``agent://`` engines)."""
    from godoxy_streams.app.loops import run

    setup_logging(settings.log)
    raise_nofile()

    async def serve() -> None:
        daemon = Daemon(settings, tunnels)
        await daemon.serve()

    try:
        run(serve())
    except ConfigError as exc:
        logger.error(str(exc))
        return 2
    except StreamsError as exc:
        logger.error(f"fatal: {exc}")
        return 1
    return 0
