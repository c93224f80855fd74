"""The table ``godoxy-streams routes`` prints, from an ``/api/routes`` document."""

from __future__ import annotations

from typing import Any

from godoxy_streams.app.routes_command import render_routes


def route(**fields: Any) -> dict[str, Any]:
    base = {
        "alias": "mc",
        "scheme": "tcp",
        "bind": "0.0.0.0",
        "listen_port": 25565,
        "target_host": "172.18.0.5",
        "target_port": 25565,
        "state": "running",
        "active": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "container": "minecraft",
    }
    return base | fields


def test_a_running_route_shows_its_target() -> None:
    table = render_routes({"routes": [route()]})
    assert "0.0.0.0:25565  172.18.0.5:25565  running" in table


def test_a_sleeping_route_has_no_target_address() -> None:
    table = render_routes({"routes": [route(target_host="", state="sleeping")]})
    assert "0.0.0.0:25565  -:25565  sleeping" in table
    assert " :25565" not in table
