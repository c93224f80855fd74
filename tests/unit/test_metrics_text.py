"""The /metrics text (observe/metrics.py) from hand-made snapshots, read back with
prometheus_client's own parser: families, labels, escaping, values, the render cache."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client.parser import text_string_to_metric_families

from godoxy_streams.observe.metrics import Metrics, number, render_snapshot
from godoxy_streams.snapshot import (
    Counters,
    LiveState,
    MemberView,
    RouteView,
    Snapshot,
    SNISocketView,
    SourceView,
)
from tests.unit.routekit import route

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(extra.items()))


def taken() -> Snapshot:
    tcp = route('we"ird\\al\nias', 8080, bind="127.0.0.1", container="web")
    udp = route("dns", 53, scheme="udp", bind="127.0.0.1", container="dns")
    counters = Counters(
        active=2,
        total=5,
        bytes_in=12_345_678,
        bytes_out=7,
        dial_errors=(("refused", 3),),
        denied=1,
        proxy_errors=4,
    )
    member = MemberView("k", "10.0.0.2", 80, "web", "healthy", True, active=2, total=5)
    live = LiveState(counters, (member,))
    routes = (
        RouteView(tcp, "running", listen_port=8080, live=lambda: live),
        RouteView(udp, "unhealthy", listen_port=53, live=lambda: LiveState(Counters(dropped=9))),
        RouteView(route("late", 9090), "conflict", error="held"),
    )
    sources = (SourceView("local", "unix:///x", state="connected"),)
    shared = SNISocketView("tcp/0.0.0.0:443", 2, 7, (("routed", 5), ("no_match", 2)), 4, 1)
    return Snapshot(
        routes_of=lambda: routes,
        sources=sources,
        last_sync=1_700_000_000.5,
        sni_sockets=(shared,),
    )


def test_every_family_and_value_reads_back() -> None:
    text = render_snapshot(taken())
    got = samples(text)
    web = dict(alias='we"ird\\al\nias', listen="127.0.0.1:8080", scheme="tcp", source="web")
    dns = dict(alias="dns", listen="127.0.0.1:53", scheme="udp", source="dns")
    by = dict(path="userspace")  # a route's counters carry the path that counted them
    expected = {
        ("godoxy_streams_connections_total", labels(**web, **by)): 5,
        ("godoxy_streams_connections_active", labels(**web, **by)): 2,
        (
            "godoxy_streams_bytes_total",
            labels(**web, **by, direction="client_to_upstream"),
        ): 12345678,
        ("godoxy_streams_bytes_total", labels(**web, **by, direction="upstream_to_client")): 7,
        ("godoxy_streams_dial_errors_total", labels(**web, **by, reason="refused")): 3,
        ("godoxy_streams_denied_total", labels(**web, **by)): 1,
        ("godoxy_streams_proxy_header_errors_total", labels(**web, **by)): 4,
        ("godoxy_streams_udp_datagrams_dropped_total", labels(**dns, **by)): 9,
        ("godoxy_streams_route_state", labels(**web, state="running")): 1,
        ("godoxy_streams_route_state", labels(**dns, state="unhealthy")): 1,
        ("godoxy_streams_upstream_up", labels(**web, member="10.0.0.2:80", container="web")): 1,
        ("godoxy_streams_routes", labels(state="conflict")): 1,
        ("godoxy_streams_docker_connected", labels(engine="local")): 1,
        ("godoxy_streams_last_sync_timestamp_seconds", ()): 1_700_000_000.5,
        ("godoxy_streams_invalid_routes", ()): 0,
        ("godoxy_streams_sni_connections_total", labels(socket="tcp/0.0.0.0:443")): 7,
        (
            "godoxy_streams_sni_outcomes_total",
            labels(socket="tcp/0.0.0.0:443", outcome="no_match"),
        ): 2,
        (
            "godoxy_streams_tls_handshakes_total",
            labels(socket="tcp/0.0.0.0:443", result="failed"),
        ): 1,
    }
    assert {k: got.get(k) for k in expected} == expected
    # a route that is not bound has its state and nothing else
    late = [k[0] for k in got if ("alias", "late") in k[1]]
    assert late == ["godoxy_streams_route_state"]
    # protocol-specific families only for their protocol
    assert not any(
        k[0].startswith("godoxy_streams_udp_") and ("scheme", "tcp") in k[1] for k in got
    )
    assert not any(
        k[0].startswith("godoxy_streams_proxy_") and ("scheme", "udp") in k[1] for k in got
    )
    assert "# TYPE godoxy_streams_bytes_total counter" in text
    assert "# TYPE godoxy_streams_connections_active gauge" in text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.0"), (3000, "3000.0"), (1.5, "1.5"), (12345678, "1.2345678e+07"), (1e16, "1e+16")],
)
def test_numbers_as_prometheus_client_writes_them(value: float, text: str) -> None:
    assert number(value) == text


def test_a_render_is_served_again_for_max_age_and_has_the_histogram() -> None:
    calls = itertools.count()

    def snapshot() -> Snapshot:
        next(calls)
        return taken()

    metrics = Metrics(snapshot, max_age=60)
    metrics.observe_pass(0.002)
    first = metrics.render()
    assert metrics.render() is first and next(calls) == 1
    assert b"godoxy_streams_reconcile_duration_seconds_count 1.0" in first
    fresh = Metrics(snapshot, max_age=0)
    assert fresh.render() is not fresh.render()
