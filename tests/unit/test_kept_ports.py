"""Kept picked ports, the pure parts: who a route is (it must survive re-creation), what a
state document may hold, and what is forgotten."""

from __future__ import annotations

from typing import Any

import pytest

from godoxy_streams.model import RouteOrigin, RouteSpec
from godoxy_streams.runtime.kept_ports import (
    FORGET_AFTER,
    Entry,
    KeptPorts,
    parse_entries,
    route_identity,
)

COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "ssh"}


def spec(
    name: str = "box",
    *,
    id: str = "c1",
    alias: str = "ssh",
    scheme: str = "tcp",
    kind: str = "docker",
    engine: str = "local",
    project: str = "",
    service: str = "",
) -> RouteSpec:
    origin = RouteOrigin(
        kind=kind,
        name=name,
        id=id,
        engine=engine,
        compose_project=project,
        compose_service=service,
    )
    return RouteSpec(
        alias=alias,
        scheme=scheme,
        bind="0.0.0.0",
        listen_port=None,
        target_host="10.0.0.5",
        target_port=22,
        origin=origin,
    )


@pytest.mark.parametrize(
    ("route", "identity"),
    [
        (spec("box"), "local|container:box|ssh|tcp"),
        (spec("box", scheme="udp4"), "local|container:box|ssh|udp"),
        (spec("box", engine="edge"), "edge|container:box|ssh|tcp"),
        (spec("shop-ssh-1", project="shop", service="ssh"), "local|compose:shop/ssh/1|ssh|tcp"),
        (spec("shop_ssh_2", project="shop", service="ssh"), "local|compose:shop/ssh/2|ssh|tcp"),
        (spec("gitea", project="shop", service="ssh"), "local|container:gitea|ssh|tcp"),
        (spec("ssh.3", project="stack", service="ssh"), "local|compose:stack/ssh/3|ssh|tcp"),
        (spec("file:ssh", kind="file"), "file|file:ssh|ssh|tcp"),
    ],
)
def test_route_identity(route: RouteSpec, identity: str) -> None:
    assert route_identity(route) == identity


def test_identity_ignores_the_container_id_and_compose_name_style() -> None:
    v1 = spec("shop_ssh_1", id="aaa", project="shop", service="ssh")
    v2 = spec("shop-ssh-1", id="bbb", project="shop", service="ssh")
    assert route_identity(v1) == route_identity(v2)


def test_parse_entries_reads_a_document() -> None:
    document = {"version": 1, "ports": {"a|b|c|tcp": {"port": 40000, "used": 12.5}}}
    assert parse_entries(document) == {"a|b|c|tcp": Entry(40000, 12.5)}


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"ports": {}},
        {"version": 2, "ports": {}},
        {"version": 1, "ports": []},
        {"version": 1, "ports": {"x": 40000}},
        {"version": 1, "ports": {"x": {"port": 0, "used": 1}}},
        {"version": 1, "ports": {"x": {"port": 70000, "used": 1}}},
        {"version": 1, "ports": {"x": {"port": "40000", "used": 1}}},
        {"version": 1, "ports": {"x": {"port": True, "used": 1}}},
        {"version": 1, "ports": {"x": {"port": 40000}}},
        {"version": 1, "ports": {"x": {"port": 40000, "used": "yesterday"}}},
    ],
)
def test_parse_entries_refuses_what_is_no_state_document(document: Any) -> None:
    with pytest.raises(ValueError):
        parse_entries(document)


def test_forget_drops_long_unused_entries_but_never_a_held_one() -> None:
    now = 1_000_000_000.0
    kept = KeptPorts(clock=lambda: now)
    kept.entries = {
        "old": Entry(40001, now - FORGET_AFTER - 1),
        "held": Entry(40002, now - FORGET_AFTER - 1),
        "recent": Entry(40003, now - 60),
    }
    kept.live = {"held": (40002, "tcp", "box/held")}
    kept.forget(now)
    assert set(kept.entries) == {"held", "recent"}


def test_forget_keeps_at_most_max_entries_dropping_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from godoxy_streams.runtime import kept_ports

    monkeypatch.setattr(kept_ports, "MAX_ENTRIES", 3)
    now = 1_000_000_000.0
    kept = KeptPorts(clock=lambda: now)
    kept.entries = {f"r{i}": Entry(40000 + i, now - 100 + i) for i in range(5)}
    kept.live = {"r0": (40000, "tcp", "box/r0")}
    kept.forget(now)
    assert set(kept.entries) == {"r0", "r3", "r4"}
