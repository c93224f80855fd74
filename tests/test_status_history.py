"""The daemon's history and event timeline through its API, without a browser or Docker:
counters sampled per route, conflicts and takeovers, an absent engine, and bad queries."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_kit import DaemonProcess, unique_namespace
from tests.echo_server import echo_server
from tests.helpers import eventually, free_port, tcp_exchange

LOCAL = "127.0.0.1"


def get(daemon: DaemonProcess, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{LOCAL}:{daemon.api_port}{path}", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def upstream() -> Iterator[int]:
    with echo_server() as port:
        yield port


def test_history_conflict_takeover_engine_lost_and_bad_queries(
    tmp_path: Path, upstream: int
) -> None:
    port = free_port()
    routes = tmp_path / "routes.yml"
    first = f"  first: {{scheme: tcp, bind: {LOCAL}, port: '{port}:{upstream}'}}\n"
    second = f"  second: {{scheme: tcp, bind: {LOCAL}, port: '{port}:{upstream}'}}\n"
    routes.write_text("routes:\n" + first + second)
    absent = f"unix://{tmp_path / 'no-engine.sock'}"
    args = ("--routes", str(routes), "--docker", absent)
    env = {"GODOXY_STREAMS_HISTORY_INTERVAL": "0.2"}
    daemon = DaemonProcess(tmp_path, *args, namespace=unique_namespace(), env=env)
    daemon.start(wait_healthy=False)
    route_id = f"tcp_{LOCAL}_{port}"
    try:
        for size in (100, 200, 300):
            assert tcp_exchange(LOCAL, port, b"x" * size) == b"x" * size

        def sampled() -> dict[str, Any] | None:
            status, body = get(daemon, f"/api/routes/{route_id}/history")
            done = status == 200 and sum(body["series"]["bytes_in"]) == 600
            return body if done and body["series"]["active"][-1] == 0 else None

        history = eventually(sampled, what="the traffic in the route's history")
        assert sum(history["series"]["opened"]) == 3 and sum(history["series"]["bytes_out"]) == 600
        assert history["verdict"] == "ok" and history["interval"] == 0.2
        assert history["members"][0]["states"].endswith("h")

        def kinds(query: str = "") -> list[tuple[str, str | None]]:
            status, body = get(daemon, "/api/events" + query)
            assert status == 200, body
            return [(e["kind"], e["alias"]) for e in body["events"]]

        eventually(lambda: ("engine_lost", None) in kinds(), what="the engine reported lost")
        assert kinds(f"?kind=conflict&route={route_id}") == [("conflict", "second")]
        assert ("route_started", "first") in kinds(f"?route={route_id}")

        routes.write_text("routes:\n" + second)  # the holder goes: the other takes over
        eventually(lambda: ("takeover", "second") in kinds("?kind=takeover"), what="takeover")
        status, doc = get(daemon, "/api/routes?q=second&limit=5")
        assert status == 200 and [r["id"] for r in doc["routes"]] == [route_id]

        for path, code in [
            ("/api/routes/tcp_nope_1/history", 404),
            ("/api/routes?limit=-3", 400),
            ("/api/routes?offset=%00", 400),
            ("/api/events?kind=nope", 400),
            ("/api/events?since=yesterday", 400),
        ]:
            status, body = get(daemon, path)
            assert (status, bool(body.get("error"))) == (code, True), (path, body)
        assert daemon.alive and "Traceback" not in daemon.log()
    finally:
        assert daemon.stop() == 0
