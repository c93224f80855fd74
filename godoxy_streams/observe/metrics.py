"""Prometheus metrics at ``GET /metrics``: read at scrape time from the engine's plain
counters, so the data path never calls into the metrics library.

Per route (labelled by alias, scheme, listen and source): connections or sessions total and
active, bytes each way, dial errors by reason, refusals and UDP drops, connections turned
away for want of a healthy upstream, and the route's state (``running``, ``unhealthy``, ...).
Per pool member (route labels plus ``member`` and ``container``): whether it is up, its open
and total connections, its failed dials. Per shared TLS socket: connections accepted, their
outcomes (routed, no match, not TLS, ...), terminated handshakes. Per container with
sleep/wake (``container``, ``engine``): whether it is awake, its sleeps, wakes, failed wakes
and the clients those turned away. Daemon-wide: routes by state, engine connectivity, last
sync time, reconcile durations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from godoxy_streams.snapshot import ROUTE_STATES, MemberView, Snapshot, SNISocketView

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

    def add(self, key: list[str], members: Sequence[MemberView]) -> None:
        for m in members:
            labels = [*key, f"{m.host}:{m.port}", m.container]
            self.up.add_metric(labels, 1 if m.available else 0)
            self.active.add_metric(labels, m.active)
            self.total.add_metric(labels, m.total)
            self.failures.add_metric(labels, m.failures)

    def families(self) -> tuple[Metric, ...]:
        return (self.up, self.active, self.total, self.failures)


def sleeper_families(taken: Snapshot) -> Iterator[Metric]:
    """The containers with sleep/wake: awake or not, and their counters."""
    labels = ["container", "engine"]
    awake = GaugeMetricFamily(
        f"{PREFIX}_container_awake", "1 while it runs and is ready", labels=labels
    )
    doc = {
        "sleeps": "times it was put to sleep when idle",
        "wakes": "times a client woke it",
        "wake_failures": "wakes that failed (start failed, stopped again, or timed out)",
        "clients_failed": "clients closed (TCP) or dropped (UDP) because a wake failed",
    }
    families = {
        name: CounterMetricFamily(f"{PREFIX}_container_{name}", text, labels=labels)
        for name, text in doc.items()
    }
    for row in taken.sleepers:
        key = [row.name, row.engine]
        awake.add_metric(key, 1 if row.state == "awake" else 0)
        for name, family in families.items():
            family.add_metric(key, getattr(row, name))
    yield awake
    yield from families.values()


def sni_families(sockets: Sequence[SNISocketView]) -> tuple[Metric, ...]:
    """Per shared TLS socket (label ``socket``; never per server name, which clients pick):
    connections accepted, what became of them, terminated handshakes."""
    accepted = CounterMetricFamily(
        f"{PREFIX}_sni_connections",
        "connections accepted on a shared TLS socket",
        labels=["socket"],
    )
    outcomes = CounterMetricFamily(
        f"{PREFIX}_sni_outcomes",
        "shared TLS socket connections by outcome: routed, or why not (no_match: alert "
        "unrecognized_name; not_tls, malformed, timed_out, empty, overloaded, no_certificate)",
        labels=["socket", "outcome"],
    )
    handshakes = CounterMetricFamily(
        f"{PREFIX}_tls_handshakes", "terminated TLS handshakes", labels=["socket", "result"]
    )
    for view in sockets:
        accepted.add_metric([view.socket], view.accepted)
        for outcome, count in view.outcomes:
            outcomes.add_metric([view.socket, outcome], count)
        handshakes.add_metric([view.socket, "ok"], view.handshakes)
        handshakes.add_metric([view.socket, "failed"], view.handshake_failed)
    return (accepted, outcomes, handshakes)


class DaemonCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        taken = self.snapshot()

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
        by_state = dict.fromkeys(ROUTE_STATES, 0)
        members = MemberMetrics()

        for route in taken.routes:
            spec, stats = route.spec, route.counters
            key = [spec.alias, spec.scheme, route.listen, spec.origin.name]
            by_state[route.state] += 1
            state.add_metric([*key, route.state], 1)
            if route.listen_port is None:
                continue  # not bound (error, conflict): no counters
            total.add_metric(key, stats.total)
            active.add_metric(key, stats.active)
            traffic.add_metric([*key, "client_to_upstream"], stats.bytes_in)
            traffic.add_metric([*key, "upstream_to_client"], stats.bytes_out)
            for reason, count in stats.dial_errors:
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
            members.add(key, route.members)
        yield from (total, active, traffic, dial, refused, denied, limited, proxy_errors)
        yield from (table_full, dropped, no_upstream, state)
        yield from members.families()
        yield from sni_families(taken.sni_sockets)
        yield from sleeper_families(taken)

        routes = gauge("routes", "routes by state", ["state"])
        for name, count in by_state.items():
            routes.add_metric([name], count)
        yield routes
        invalid = gauge("invalid_routes", "routes rejected for invalid labels", [])
        invalid.add_metric([], len(taken.errors))
        yield invalid
        engines = gauge("docker_connected", "1 while the Docker engine answers", ["engine"])
        for source in taken.sources:
            engines.add_metric([source.name], 1 if source.state == "connected" else 0)
        yield engines
        last = gauge("last_sync_timestamp_seconds", "when the last reconcile pass finished", [])
        last.add_metric([], taken.last_sync)
        yield last


class Metrics:
    """The registry of one daemon: its collector plus the reconcile-duration histogram."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(snapshot))
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
