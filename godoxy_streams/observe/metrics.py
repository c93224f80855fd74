"""Prometheus metrics at ``GET /metrics``: read at scrape time from the engine's plain
counters, so the data path never calls into the metrics library.

Per route (labelled by alias, scheme, listen and source): connections or sessions total and
active, bytes each way, dial errors by reason, refusals and UDP drops, connections turned
away for want of a healthy upstream, and the route's state (``running``, ``unhealthy``, ...).
Per pool member (route labels plus ``member`` and ``container``): whether it is up, its open
and total connections, its failed dials. Daemon-wide: routes by state, engine connectivity,
last sync time, reconcile durations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from godoxy_streams.reconcile.reconciler import Reconciler
from godoxy_streams.sources.watcher import SourceState
from godoxy_streams.streams.pool import Pool

ROUTE_LABELS = ("alias", "scheme", "listen", "source")
PREFIX = "godoxy_streams"


class MemberMetrics:
    """The per-member families of one scrape."""

    def __init__(self) -> None:
        labels = [*ROUTE_LABELS, "member", "container"]
        name = f"{PREFIX}_upstream"
        self.up = GaugeMetricFamily(
            f"{name}_up", "1 while the member takes connections", labels=labels
        )
        self.active = GaugeMetricFamily(
            f"{name}_connections_active", "open connections / sessions per member", labels=labels
        )
        self.total = CounterMetricFamily(
            f"{name}_connections", "connections / sessions sent to the member", labels=labels
        )
        self.failures = CounterMetricFamily(
            f"{name}_dial_failures", "failed dials to the member", labels=labels
        )

    def add(self, key: list[str], pool: Pool) -> None:
        now = time.monotonic()
        for m in pool.members:
            labels = [*key, f"{m.address[0]}:{m.address[1]}", m.name]
            self.up.add_metric(labels, 1 if m.available(now) else 0)
            self.active.add_metric(labels, m.active)
            self.total.add_metric(labels, m.total)
            self.failures.add_metric(labels, m.failures)

    def families(self) -> tuple[Metric, ...]:
        return (self.up, self.active, self.total, self.failures)


class DaemonCollector(Collector):
    def __init__(self, reconciler: Reconciler, sources: Callable[[], Sequence[SourceState]]):
        self.reconciler = reconciler
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str, extra: Sequence[str] = ()) -> CounterMetricFamily:
            return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=[*ROUTE_LABELS, *extra])

        def gauge(name: str, doc: str, labels: Sequence[str] = ROUTE_LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

        total = counter("connections", "TCP connections accepted / UDP sessions created")
        active = gauge("connections_active", "open TCP connections / live UDP sessions")
        traffic = counter("bytes", "bytes relayed", ("direction",))
        dial = counter("dial_errors", "upstream dial failures", ("reason",))
        refused = counter("refused", "connections or sessions refused by a pre_dial hook")
        denied = counter("denied", "connections or UDP datagrams denied by an ACL")
        limited = counter("limited", "connections or UDP sessions refused by a limit")
        proxy_errors = counter("proxy_header_errors", "connections closed for a bad PROXY header")
        table_full = counter("udp_sessions_refused", "UDP sessions refused: table full")
        dropped = counter("udp_datagrams_dropped", "UDP datagrams dropped")
        no_upstream = counter("no_upstream", "connections or UDP sessions with no healthy upstream")
        state = gauge("route_state", "1 for the route's current state", [*ROUTE_LABELS, "state"])
        by_state: dict[str, int] = {"running": 0, "unhealthy": 0, "error": 0, "conflict": 0}
        members = MemberMetrics()

        for route in self.reconciler.manager.running.values():
            spec, stats = route.spec, route.stream.stats
            host = f"[{spec.bind}]" if ":" in spec.bind else spec.bind
            key = [spec.alias, spec.scheme, f"{host}:{route.bound_port}", spec.origin.name]
            total.add_metric(key, stats.total)
            active.add_metric(key, stats.active)
            traffic.add_metric([*key, "client_to_upstream"], stats.bytes_in)
            traffic.add_metric([*key, "upstream_to_client"], stats.bytes_out)
            for reason, count in stats.dial_errors.items():
                dial.add_metric([*key, reason], count)
            refused.add_metric(key, stats.refused)
            denied.add_metric(key, stats.denied)
            limited.add_metric(key, stats.limited)
            if spec.proto == "tcp":
                proxy_errors.add_metric(key, stats.proxy_errors)
            if spec.proto == "udp":
                table_full.add_metric(key, stats.sessions_refused)
                dropped.add_metric(key, stats.dropped)
            no_upstream.add_metric(key, stats.no_upstream)
            now = "running" if route.healthy else "unhealthy"
            state.add_metric([*key, now], 1)
            by_state[now] += 1
            if route.stream.pool is not None:
                members.add(key, route.stream.pool)
        idle = [(spec, "error") for spec, _ in self.reconciler.manager.failed.values()]
        idle += [(c.route, "conflict") for c in self.reconciler.last.conflicts]
        for spec, name in idle:
            where = f"{spec.bind}:{spec.listen_port or 0}"
            state.add_metric([spec.alias, spec.scheme, where, spec.origin.name, name], 1)
            by_state[name] += 1
        yield from (total, active, traffic, dial, refused, denied, limited, proxy_errors)
        yield from (table_full, dropped, no_upstream, state)
        yield from members.families()

        routes = gauge("routes", "routes by state", ["state"])
        for name, count in by_state.items():
            routes.add_metric([name], count)
        yield routes
        invalid = gauge("invalid_routes", "routes rejected for invalid labels", [])
        invalid.add_metric([], len(self.reconciler.label_errors()))
        yield invalid
        engines = gauge("docker_connected", "1 while the Docker engine answers", ["engine"])
        for source in self.sources():
            engines.add_metric([source.name], 1 if source.state == "connected" else 0)
        yield engines
        last = gauge("last_sync_timestamp_seconds", "when the last reconcile pass finished", [])
        last.add_metric([], self.reconciler.last.finished_at)
        yield last


class Metrics:
    """The registry of one daemon: its collector plus the reconcile-duration histogram."""

    def __init__(self, reconciler: Reconciler, sources: Callable[[], Sequence[SourceState]]):
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(reconciler, sources))
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "time of one reconcile pass (parse, plan, apply)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )

    def observe_pass(self, seconds: float) -> None:
        self.reconcile_duration.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
