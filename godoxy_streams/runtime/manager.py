"""The stream manager: applies a plan to the data plane.

Owns one stream per running route, keyed by ``RouteKey``, each with its pool of members (one
for a plain route) and their health checks. A bind failure is an error of that route only
(kept in ``failed`` and retried by the next reconcile), never a crash. Stopped streams free
their port at once and drain in the background. A changed member set (a replica joining or
leaving, a Docker health change) updates the pool in place: no rebind, live connections kept.
A route with no listen port binds the port it picked before (``kept_ports``); routes with a
listen port start first, so a port a label names wins over one only kept. Routes chosen by TLS
server name share their socket's listener (``sni_sockets``): their streams are registered with
it instead of bound.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from loguru import logger

from godoxy_streams.budget_views import DescriptorView
from godoxy_streams.decide.plan import Plan
from godoxy_streams.errors import ListenError
from godoxy_streams.events import EventLog
from godoxy_streams.model import RouteKey, RouteSpec
from godoxy_streams.runtime import timeline
from godoxy_streams.runtime.access_log import access_logger
from godoxy_streams.runtime.descriptors import (
    DescriptorPlan,
    OpenCount,
    descriptor_view,
    nofile,
)
from godoxy_streams.runtime.health_monitor import HealthChecks, member_key
from godoxy_streams.runtime.kept_ports import KeptPorts
from godoxy_streams.runtime.sampler import Sampled, Sampler
from godoxy_streams.runtime.sni_sockets import SNISockets, socket_of
from godoxy_streams.runtime.tunnels import EngineTunnel
from godoxy_streams.runtime.views import failed_view, running_view
from godoxy_streams.settings import Settings
from godoxy_streams.snapshot import RouteView, SNISocketView
from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.budget import DescriptorBudget
from godoxy_streams.streams.context import Hook, OnClose
from godoxy_streams.streams.limits import ConcurrencyCounter
from godoxy_streams.streams.options import StreamOptions
from godoxy_streams.streams.pool import MemberSpec, describe
from godoxy_streams.streams.tcp.stream import TCPStream
from godoxy_streams.streams.udp.stream import UDPStream

Stream = TCPStream | UDPStream


@dataclass
class RunningRoute:
    spec: RouteSpec
    stream: Stream
    notice: str | None = None  # e.g. a kept port was taken and a new one picked
    id: str = field(init=False)  # the socket's id (it outlives retargets)

    def __post_init__(self) -> None:
        self.id = self.spec.key.id

    @property
    def bound_port(self) -> int:
        return self.stream.local_addr[1]

    @property
    def healthy(self) -> bool:
        """Whether any member may take new connections."""
        pool = self.stream.pool
        return pool is None or pool.any_available()


@dataclass(frozen=True)
class ApplyReport:
    started: tuple[RouteKey, ...] = ()
    stopped: tuple[RouteKey, ...] = ()
    retargeted: tuple[RouteKey, ...] = ()
    failed: Mapping[RouteKey, str] = field(default_factory=dict)


def _where(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def member_specs(spec: RouteSpec) -> list[MemberSpec]:
    return [
        MemberSpec(
            member_key(m),
            m.address,
            m.origin.name,
            m.origin.health,
            sleeping=m.origin.sleep in ("asleep", "waking"),
        )
        for m in spec.members
    ]


class StreamManager:
    def __init__(
        self,
        settings: Settings,
        tunnels: Mapping[str, EngineTunnel] | None = None,
        kept_ports: KeptPorts | None = None,
        events: EventLog | None = None,
    ) -> None:
        self._settings = settings
        self.kept_ports = kept_ports or KeptPorts()  # default: kept while this manager lives
        self.running: dict[RouteKey, RunningRoute] = {}
        self.generation = 0  # counts the passes that changed a running route
        self.specs: dict[RouteKey, RouteSpec] = {}  # running[key].spec, kept in step
        self.failed: dict[RouteKey, tuple[RouteSpec, str]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closing_streams: dict[asyncio.Task[None], Stream] = {}
        acl = settings.acl
        self._global_acl = Acl(acl.allow, acl.deny) if acl.allow or acl.deny else None
        trusted = settings.proxy_protocol_trusted
        self._trusted = Acl(allow=trusted) if trusted else None
        limits = settings.limits
        api_cap = limits.api_connections if settings.api else 0
        self.descriptors = DescriptorPlan(nofile(), api_cap)
        self.budget = DescriptorBudget(self.descriptors.data)
        self._open_count = OpenCount()
        cap = limits.max_total_connections
        self._global_limit = ConcurrencyCounter(cap) if cap is not None else None
        self._warned_open_udp: set[RouteKey] = set()
        self.tunnels: Mapping[str, EngineTunnel] = tunnels or {}  # engine name -> its tunnel
        self.events = events if events is not None else EventLog()
        self.health = HealthChecks(self.tunnels, self.events)
        self.sampler = Sampler(settings.history_interval)  # ``run`` by the daemon
        self.sni = SNISockets(settings)
        # The pre_dial hook of a route with a member that sleeps (``sleep.SleepController``).
        self.gate_for: Callable[[RouteKey], Hook] | None = None
        self.on_applied: Callable[[ApplyReport], None] | None = None  # the kernel fast path
        # Close records cost a little per connection: only keep them when lines will be written.
        log = settings.log
        self._access_log = log.access_log and logger.level(log.level).no <= logger.level("INFO").no

    def route_views(self) -> list[RouteView]:
        """The running and failed routes for the read model, counters as of now."""
        views = [
            running_view(
                r.spec,
                r.bound_port,
                r.stream.stats,
                r.stream.pool,
                r.stream.balancing,
                notice=r.notice,
                route_id=r.id,
            )
            for r in self.running.values()
        ]
        views += [failed_view(spec, message) for spec, message in self.failed.values()]
        return views

    def sampled(self) -> Iterator[Sampled]:
        """What the history sampler reads each tick: every running route's counters."""
        return ((r.id, r.stream.stats, r.stream.pool) for r in self.running.values())

    def sni_views(self) -> list[SNISocketView]:
        """Each shared TLS socket's counters, for the read model."""
        return self.sni.views()

    def descriptor_view(self) -> DescriptorView:
        """The descriptors and the data plane's budget, for the read model."""
        return descriptor_view(self.descriptors, self.budget, self._open_count)

    def channel_views(self) -> dict[str, dict[str, object]]:
        """Each tunnel's datagram channel, for ``/healthz``."""
        return {
            engine: view
            for engine, tunnel in self.tunnels.items()
            if (view := tunnel.channel_view()) is not None
        }

    def running_specs(self) -> dict[RouteKey, RouteSpec]:
        return dict(self.specs)

    def route_acl(self, spec: RouteSpec) -> Acl | None:
        """The global ACL and the route's own, combined (a route can only narrow the global)."""
        own = Acl(spec.acl_allow, spec.acl_deny) if spec.acl_allow or spec.acl_deny else None
        combined = Acl.combine(self._global_acl, own)
        return None if combined.is_open else combined

    def options_for(self, spec: RouteSpec) -> StreamOptions:
        limits = self._settings.limits
        return StreamOptions(
            dial_timeout=limits.dial_timeout,
            idle_timeout=spec.conn_idle_timeout,
            on_stop=spec.on_stop,
            drain_timeout=spec.drain_timeout,
            udp_timeout=spec.udp_timeout,
            max_sessions=spec.max_sessions,
            acl=self.route_acl(spec),
            peer_acl=self._global_acl if self._trusted is not None else None,
            max_connections=spec.max_connections or limits.max_connections,
            per_source_max=limits.per_source_connections,
            per_source_rate=limits.per_source_rate,
            per_source_burst=limits.per_source_burst,
            global_limit=self._global_limit,
            budget=self.budget,
            proxy_protocol=spec.proxy_protocol if spec.proto == "tcp" else None,
            # a shared TLS socket reads the ClientHello first: no PROXY header in
            proxy_protocol_trusted=self._trusted if spec.proto == "tcp" and not spec.sni else None,
            proxy_header_timeout=limits.proxy_header_timeout,
            dialer=tunnel.dial if (tunnel := self.tunnels.get(spec.origin.engine)) else None,
            datagram_dialer=tunnel.open_flow if tunnel and spec.proto == "udp" else None,
        )

    def _log(self, spec: RouteSpec, action: str, port: int | None = None, **extra: object) -> None:
        listen = _where(spec.bind, port or spec.listen_port or "auto")
        logger.bind(
            protocol=spec.scheme,
            listen=listen,
            dst=_where(spec.target_host, spec.target_port),
            action=action,
            route=spec.alias,
            source=spec.origin.name,
            **extra,
        ).info(f"route {action}")

    async def apply(self, plan: Plan) -> ApplyReport:
        stopped = []
        for key in plan.stop:
            self.failed.pop(key, None)
            route = self.running.pop(key, None)
            self.specs.pop(key, None)
            if route is not None:
                self._log(route.spec, "stop", route.bound_port)
                self.kept_ports.release(route.spec, route.bound_port)
                timeline.stopped(self.events, route.spec, route.bound_port)
                if route.spec.sni:
                    self.sni.remove(route.spec)
                self._close_in_background(route.stream)
                stopped.append(key)
        if stopped:
            await self.sni.settle(keep=[socket_of(s) for s in plan.start if s.sni])
            await asyncio.sleep(0)  # let the closes stop their listeners before new binds
        retargeted = []
        for spec in plan.retarget:
            route = self.running[spec.key]
            pool = route.stream.set_pool(member_specs(spec), spec.balance)
            if [m.address for m in route.spec.members] != [m.address for m in spec.members]:
                self._log(spec, "retarget", route.bound_port, members=describe(pool.members))
            timeline.retargeted(self.events, route.spec, spec)
            route.spec = self.specs[spec.key] = spec
            retargeted.append(spec.key)
        started, failed = [], {}
        for spec in sorted(plan.start, key=lambda s: s.listen_port is None):
            error = await self._start(spec)
            if error is None:
                started.append(spec.key)
            else:
                failed[spec.key] = error
        await self.sni.settle()  # a shared socket whose routes all failed to start
        for key in (*stopped, *retargeted, *started):
            route = self.running.get(key)
            if route is not None and route.stream.pool is not None:
                self.health.sync_route(key, route.spec, route.stream.pool)
            else:
                self.health.sync_route(key, None, None)
        self.kept_ports.save()
        if stopped or retargeted or started:
            self.generation += 1
        report = ApplyReport(tuple(started), tuple(stopped), tuple(retargeted), failed)
        if self.on_applied is not None:
            self.on_applied(report)
        return report

    def _stream(self, spec: RouteSpec, port: int) -> Stream:
        stream_cls = UDPStream if spec.proto == "udp" else TCPStream
        stream = stream_cls(
            (spec.bind, port),
            spec.target,
            options=self.options_for(spec),
            name=f"{spec.origin.name}/{spec.alias}",
        )
        stream.set_pool(member_specs(spec), spec.balance)
        return stream

    def _gate(self, spec: RouteSpec) -> Hook | None:
        """The hook that holds a route's new clients while a member wakes (sleep/wake)."""
        return self.gate_for(spec.key) if self.gate_for is not None and spec.wakes else None

    def _on_close(self, spec: RouteSpec) -> OnClose | None:
        return access_logger(spec) if self._access_log else None

    async def _serve(self, spec: RouteSpec, port: int) -> Stream:
        stream = self._stream(spec, port)
        await stream.serve(pre_dial=self._gate(spec), on_close=self._on_close(spec))
        return stream

    async def _share(self, spec: RouteSpec) -> tuple[Stream, str | None]:
        """A route chosen by TLS server name: its stream, registered with the listener of
        its shared socket; or the error that keeps it out."""
        stream = self._stream(spec, spec.listen_port or 0)
        assert isinstance(stream, TCPStream)  # sni is a TCP field
        return stream, await self.sni.add(spec, stream, self._on_close(spec), self._gate(spec))

    async def _start(self, spec: RouteSpec) -> str | None:
        notice: str | None = None
        try:
            if spec.sni:
                stream, message = await self._share(spec)
            else:
                stream, notice = await self.kept_ports.bind(spec, lambda p: self._serve(spec, p))
                message = None
        except ListenError as exc:
            listen = _where(spec.bind, spec.listen_port or 0)
            message = f"cannot listen on {spec.proto} {listen}: {exc}"
        if message is not None:
            previous = self.failed.get(spec.key)
            if previous is None or previous[1] != message:
                self._log(spec, "error", error=message)
                timeline.failed(self.events, spec, message)
            self.failed[spec.key] = (spec, message)
            return message
        self.failed.pop(spec.key, None)
        self.running[spec.key] = RunningRoute(spec, stream, notice)
        self.specs[spec.key] = spec
        extra = {"members": describe(stream.pool.members)} if spec.pool and stream.pool else {}
        if spec.sni:
            extra["sni"] = ",".join(spec.sni)
        self._log(spec, "start", stream.local_addr[1], **extra)
        timeline.started(self.events, spec, stream.local_addr[1])
        self._warn_open_udp(spec)
        return None

    def _warn_open_udp(self, spec: RouteSpec) -> None:
        """An open UDP port on every address is a reflection source: say so once per route."""
        if spec.proto != "udp" or spec.key in self._warned_open_udp:
            return
        if ipaddress.ip_address(spec.bind).is_unspecified and self.route_acl(spec) is None:
            self._warned_open_udp.add(spec.key)
            logger.bind(route=spec.alias, source=spec.origin.name).warning(
                f"UDP route {spec.alias!r} listens on {spec.bind} with no ACL: anyone can make "
                "it send datagrams (a reflection source); set acl.allow or bind"
            )

    def _close_in_background(self, stream: Stream, **kwargs: object) -> None:
        task = asyncio.create_task(stream.close(**kwargs), name=f"close {stream.local_addr}")  # type: ignore[arg-type]
        self._closing.add(task)
        self._closing_streams[task] = stream
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(self._closing_streams.pop)

    async def cut_all(self) -> None:
        """End every drain now: kill the live connections of every closing stream."""
        streams = list(self._closing_streams.values())
        await asyncio.gather(*(s.close(on_stop="kill", grace=0) for s in streams))

    async def close_all(self, *, grace: float | None = None, kill: bool = False) -> None:
        """Stop every listener at once, then drain (per route policy, at most ``grace``)."""
        routes, self.running = list(self.running.values()), {}
        self.specs = {}
        self.generation += 1
        self.health.close()
        for route in routes:
            self._log(route.spec, "stop", route.bound_port)
            self.kept_ports.release(route.spec, route.bound_port)
            if route.spec.sni:
                self.sni.remove(route.spec)
            if kill:
                self._close_in_background(route.stream, on_stop="kill")
            elif grace is not None:
                self._close_in_background(route.stream, grace=min(grace, route.spec.drain_timeout))
            else:
                self._close_in_background(route.stream)
        self.kept_ports.save()
        await self.sni.settle()
        if self._closing:
            await asyncio.wait(set(self._closing))
