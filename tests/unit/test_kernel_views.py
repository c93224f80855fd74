"""What observers show of the kernel fast path: a route's path and reason, both paths'
counters in the API (the top-level figures summed), a ``path`` label on the metrics, and
``fast_path`` in ``/healthz``."""

from __future__ import annotations

from godoxy_streams.observe.metrics import Metrics
from godoxy_streams.snapshot import Counters, LiveState, RouteView, Snapshot

from .routekit import route

USERSPACE = Counters(active=1, total=2, bytes_in=10, bytes_out=20)
KERNEL = Counters(active=3, total=7, bytes_in=1000, bytes_out=2000, refused=4)


def view(kernel: Counters | None) -> RouteView:
    path = "kernel" if kernel else "userspace"
    return RouteView(
        spec=route("echo", 2222, target=("172.24.0.2", 7)),
        state="running",
        listen_port=2222,
        live=lambda: LiveState(USERSPACE),
        path=path,
        path_reason=f"why {path}",
        kernel=kernel,
    )


def test_the_api_sums_both_paths_and_shows_each() -> None:
    row = view(KERNEL).as_json()
    assert (row["path"], row["path_reason"]) == ("kernel", "why kernel")
    assert (row["active"], row["bytes_in"], row["bytes_out"]) == (4, 1010, 2020)
    assert row["paths"]["kernel"] == {
        "active": 3,
        "total": 7,
        "bytes_in": 1000,
        "bytes_out": 2000,
        "refused": 4,
    }
    assert row["paths"]["userspace"]["total"] == 2
    plain = view(None).as_json()
    assert plain["path"] == "userspace" and "paths" not in plain
    assert (plain["active"], plain["bytes_in"]) == (1, 10)


def test_metrics_carry_a_path_label() -> None:
    text = Metrics(lambda: Snapshot(routes_of=lambda: (view(KERNEL),))).render().decode()
    key = 'alias="echo",listen="0.0.0.0:2222"'
    for path, total in (("kernel", 7), ("userspace", 2)):
        line = f'godoxy_streams_connections_total{{{key},path="{path}",scheme="tcp",source="web"}}'
        assert f"{line} {total}.0" in text
    assert 'godoxy_streams_refused_total{alias="echo"' in text and 'path="kernel"' in text
    assert text.count("godoxy_streams_dial_errors_total{") == 0  # userspace only, none here
    assert f'godoxy_streams_denied_total{{{key},path="kernel"' not in text  # the kernel has none


def test_healthz_has_the_fast_path() -> None:
    state = {"mode": "auto", "enabled": False, "reason": "unavailable: no CAP_NET_ADMIN"}
    body = Snapshot(fast_path=state).health_document()
    assert body["fast_path"] == state
    assert "fast_path" not in Snapshot().health_document()
