"""Prometheus metrics at ``GET /metrics``: read at scrape time from the engine's plain
counters, so the data path never calls into the metrics library.

Per route (labelled by alias, scheme, listen and source; its counters also by ``path``,
``userspace``, or ``kernel`` for a route the fast path forwards): connections or sessions total
and active, bytes each way, dial errors by reason, refusals and UDP drops, connections turned
away for want of a healthy upstream, and the route's state (``running``, ``unhealthy``, ...).
Per pool member (route labels plus ``member`` and ``container``): whether it is up, its open
and total connections, its failed dials. Per shared TLS socket: connections accepted, their
outcomes (routed, no match, not TLS, ...), terminated handshakes. Per container with
sleep/wake (``container``, ``engine``): whether it is awake, its sleeps, wakes, failed wakes
and the clients those turned away. Daemon-wide: routes by state, engine connectivity, last
sync time, reconcile durations, open descriptors against the limit, the data plane's
descriptor budget and use by protocol, the status API's connections against its cap.

The text is written in one pass over the routes (each route's labels escaped once), not
through metric-family objects, and a render is served again for ``MAX_AGE`` seconds: at
10,000 routes a scrape costs a fraction of a second once, not per scraper.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from godoxy_streams.snapshot import (
    ROUTE_STATES,
    Counters,
    RouteView,
    SleeperView,
    Snapshot,
    SNISocketView,
)

PREFIX = "godoxy_streams"
MAX_AGE = 1.0  # seconds a render is served again

# name, type, help: in the order of the output; per-route families first.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("connections_total", "counter", "TCP connections accepted / UDP sessions created"),
    ("connections_active", "gauge", "open TCP connections / live UDP sessions"),
    ("bytes_total", "counter", "bytes relayed"),
    ("dial_errors_total", "counter", "upstream dial failures"),
    (
        "refused_total",
        "counter",
        "refused by a pre_dial hook (path=kernel: by the route's ACL or a limit)",
    ),
    ("denied_total", "counter", "connections or UDP datagrams denied by an ACL"),
    ("limited_total", "counter", "connections or UDP sessions refused by a limit"),
    ("proxy_header_errors_total", "counter", "connections closed for a bad PROXY header"),
    ("udp_sessions_refused_total", "counter", "UDP sessions refused: table full"),
    ("udp_datagrams_dropped_total", "counter", "UDP datagrams dropped"),
    ("udp_sessions_evicted_total", "counter", "idle UDP sessions ended for new clients"),
    ("no_upstream_total", "counter", "connections or UDP sessions with no healthy upstream"),
    ("route_state", "gauge", "1 for the route's current state"),
    ("upstream_up", "gauge", "1 while the member takes connections"),
    ("upstream_connections_active", "gauge", "open connections / sessions per member"),
    ("upstream_connections_total", "counter", "connections / sessions sent to the member"),
    ("upstream_dial_failures_total", "counter", "failed dials to the member"),
    ("sni_connections_total", "counter", "connections accepted on a shared TLS socket"),
    (
        "sni_outcomes_total",
        "counter",
        "shared TLS socket connections by outcome: routed, or why not (no_match: alert "
        "unrecognized_name; not_tls, malformed, timed_out, empty, overloaded, no_certificate)",
    ),
    ("tls_handshakes_total", "counter", "terminated TLS handshakes"),
    ("container_awake", "gauge", "1 while a container with sleep/wake runs and is ready"),
    ("container_sleeps_total", "counter", "times it was put to sleep when idle"),
    ("container_wakes_total", "counter", "times a client woke it"),
    (
        "container_wake_failures_total",
        "counter",
        "wakes that failed (the start failed, it stopped again, or wake_timeout passed)",
    ),
    (
        "container_clients_failed_total",
        "counter",
        "clients closed (TCP) or dropped (UDP) because a wake failed",
    ),
    ("routes", "gauge", "routes by state"),
    ("invalid_routes", "gauge", "routes rejected for invalid labels"),
    ("docker_connected", "gauge", "1 while the Docker engine answers"),
    ("last_sync_timestamp_seconds", "gauge", "when the last reconcile pass finished"),
    ("descriptors_open", "gauge", "file descriptors open"),
    ("descriptors_limit", "gauge", "the open-files limit (RLIMIT_NOFILE)"),
    ("data_plane_descriptors", "gauge", "descriptors the routes hold, by protocol"),
    ("data_plane_descriptors_budget", "gauge", "descriptors the routes may hold"),
    (
        "data_plane_budget_refused_total",
        "counter",
        "connections and UDP sessions refused for want of descriptors",
    ),
    ("api_connections", "gauge", "status API connections open"),
    ("api_connections_limit", "gauge", "status API connections at once"),
    ("api_connections_refused_total", "counter", "status API connections over the cap"),
)


def escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value as prometheus_client writes it (``3.0``, ``1.5e+09``)."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"  # most samples: small counts
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6 and "e" not in text:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def counter_lines(
    labels: tuple[str, str, str, str], path: str, c: Counters, proto: str, out: dict[str, list[str]]
) -> None:
    """One path's counters of a route (``labels``: alias, listen, scheme, source, escaped);
    the kernel counts flows admitted, refused, open, and bytes, nothing else."""
    a, lis, s, o = labels
    key = f'alias="{a}",listen="{lis}",path="{path}",scheme="{s}",source="{o}"'
    both = [("connections_total", c.total), ("connections_active", c.active)]
    both.append(("refused_total", c.refused))
    if path != "kernel":
        both += [("denied_total", c.denied), ("limited_total", c.limited)]
        both.append(("no_upstream_total", c.no_upstream))
    for name, value in both:
        out[name].append(f"{{{key}}} {number(value)}")
    head, tail = f'alias="{a}"', f'listen="{lis}",path="{path}",scheme="{s}",source="{o}"'
    out["bytes_total"].append(
        f'{{{head},direction="client_to_upstream",{tail}}} {number(c.bytes_in)}'
    )
    out["bytes_total"].append(
        f'{{{head},direction="upstream_to_client",{tail}}} {number(c.bytes_out)}'
    )
    if path == "kernel":
        return
    for reason, count in c.dial_errors:
        out["dial_errors_total"].append(
            f'{{alias="{a}",listen="{lis}",path="{path}",reason="{escape(reason)}",'
            f'scheme="{s}",source="{o}"}} {number(count)}'
        )
    if proto == "tcp":
        out["proxy_header_errors_total"].append(f"{{{key}}} {number(c.proxy_errors)}")
    else:
        out["udp_sessions_refused_total"].append(f"{{{key}}} {number(c.sessions_refused)}")
        out["udp_datagrams_dropped_total"].append(f"{{{key}}} {number(c.dropped)}")
        out["udp_sessions_evicted_total"].append(f"{{{key}}} {number(c.evicted)}")


def route_lines(route: RouteView, out: dict[str, list[str]]) -> None:
    """Append one route's samples to ``out`` (family name -> lines), labels sorted by name."""
    spec = route.spec
    a, lis, s, o = (escape(v) for v in (spec.alias, route.listen, spec.scheme, spec.origin.name))
    key = f'alias="{a}",listen="{lis}",scheme="{s}",source="{o}"'
    out["route_state"].append(f'{{{key},state="{route.state}"}} 1.0')
    if route.listen_port is None:
        return  # not bound (error, conflict): no counters
    for path, counters in route.by_path():
        counter_lines((a, lis, s, o), path, counters, spec.proto, out)
    for m in route.members:
        member = escape(f"{m.host}:{m.port}")
        labels = (
            f'{{alias="{a}",container="{escape(m.container)}",listen="{lis}",'
            f'member="{member}",scheme="{s}",source="{o}"}}'
        )
        out["upstream_up"].append(f"{labels} {1.0 if m.available else 0.0}")
        out["upstream_connections_active"].append(f"{labels} {number(m.active)}")
        out["upstream_connections_total"].append(f"{labels} {number(m.total)}")
        out["upstream_dial_failures_total"].append(f"{labels} {number(m.failures)}")


def sni_lines(view: SNISocketView, out: dict[str, list[str]]) -> None:
    """One shared TLS socket's samples (label ``socket``; never per server name, which
    clients pick)."""
    socket = escape(view.socket)
    out["sni_connections_total"].append(f'{{socket="{socket}"}} {number(view.accepted)}')
    for outcome, count in view.outcomes:
        out["sni_outcomes_total"].append(
            f'{{outcome="{escape(outcome)}",socket="{socket}"}} {number(count)}'
        )
    for result, count in (("ok", view.handshakes), ("failed", view.handshake_failed)):
        out["tls_handshakes_total"].append(
            f'{{result="{result}",socket="{socket}"}} {number(count)}'
        )


def sleeper_lines(view: SleeperView, out: dict[str, list[str]]) -> None:
    """One container with sleep/wake: awake or not, and its counters."""
    labels = f'{{container="{escape(view.name)}",engine="{escape(view.engine)}"}}'
    out["container_awake"].append(f"{labels} {1.0 if view.state == 'awake' else 0.0}")
    for name, value in (
        ("container_sleeps_total", view.sleeps),
        ("container_wakes_total", view.wakes),
        ("container_wake_failures_total", view.wake_failures),
        ("container_clients_failed_total", view.clients_failed),
    ):
        out[name].append(f"{labels} {number(value)}")


def budget_lines(taken: Snapshot, out: dict[str, list[str]]) -> None:
    """The descriptors against the limit, the routes' budget, the API's connections."""
    view = taken.descriptors
    if view is not None:
        if view.open >= 0:
            out["descriptors_open"] = [f" {number(view.open)}"]
        out["descriptors_limit"] = [f" {number(view.limit)}"]
        out["data_plane_descriptors"] = [f'{{protocol="{p}"}} {number(n)}' for p, n in view.used]
        out["data_plane_descriptors_budget"] = [f" {number(view.budget)}"]
        out["data_plane_budget_refused_total"] = [f" {number(view.refused)}"]
    api = taken.api
    if api is not None:
        out["api_connections"] = [f" {number(api.open)}"]
        out["api_connections_limit"] = [f" {number(api.cap)}"]
        out["api_connections_refused_total"] = [f" {number(api.refused)}"]


def render_snapshot(taken: Snapshot) -> str:
    """Every family but the reconcile histogram, as Prometheus text."""
    out: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
    by_state = dict.fromkeys(ROUTE_STATES, 0)
    for route in taken.routes:
        by_state[route.state] += 1
        route_lines(route, out)
    for view in taken.sni_sockets:
        sni_lines(view, out)
    for sleeper in taken.sleepers:
        sleeper_lines(sleeper, out)
    out["routes"] = [f'{{state="{state}"}} {number(n)}' for state, n in by_state.items()]
    out["invalid_routes"] = [f" {number(len(taken.errors))}"]
    out["docker_connected"] = [
        f'{{engine="{escape(s.name)}"}} {1.0 if s.state == "connected" else 0.0}'
        for s in taken.sources
    ]
    out["last_sync_timestamp_seconds"] = [f" {number(taken.last_sync)}"]
    budget_lines(taken, out)
    parts = []
    for name, kind, doc in FAMILIES:
        full = f"{PREFIX}_{name}"
        parts.append(f"# HELP {full} {doc}\n# TYPE {full} {kind}\n")
        parts.extend(f"{full}{line}\n" for line in out[name])
    return "".join(parts)


class Metrics:
    """The metrics of one daemon: the snapshot's families plus the reconcile-duration
    histogram (prometheus_client's, observed once per pass)."""

    def __init__(self, snapshot: Callable[[], Snapshot], max_age: float = MAX_AGE):
        self.snapshot = snapshot
        self.max_age = max_age
        self.registry = CollectorRegistry()
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "time of one reconcile pass (parse, plan, apply)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self._cached: tuple[float, bytes] | None = None

    def observe_pass(self, seconds: float) -> None:
        self.reconcile_duration.observe(seconds)

    def render(self) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.max_age:
            return self._cached[1]
        body = render_snapshot(self.snapshot()).encode() + generate_latest(self.registry)
        self._cached = (now, body)
        return body
