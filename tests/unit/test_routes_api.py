"""Reading routes a page at a time, route ids, one route's history and the event filters of
the status API (observe/routes_api.py), over hand-made snapshots: no loop, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from godoxy_streams.events import Event
from godoxy_streams.model import RouteKey
from godoxy_streams.observe.routes_api import (
    MAX_LIMIT,
    BadQuery,
    RouteQuery,
    events_document,
    history_document,
    routes_document,
)
from godoxy_streams.route_history import SERIES, RouteHistory
from godoxy_streams.snapshot import Counters, LiveState, RouteView, Snapshot
from tests.unit.routekit import route


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (RouteKey("tcp", "0.0.0.0", 2222), "tcp_0.0.0.0_2222"),
        (RouteKey("udp", "::", 53), "udp_--_53"),
        (RouteKey("tcp", "::1", 80), "tcp_--1_80"),
        (RouteKey("tcp", "fe80::1%eth0", 80), "tcp_fe80--1-eth0_80"),
        (RouteKey("tcp", "127.0.0.1", 0, "web/ssh"), "tcp_127.0.0.1_auto-"),
        (RouteKey("tcp", "0.0.0.0", 443, "sni:a.example.com"), "tcp_0.0.0.0_443_sni-"),
    ],
)
def test_route_ids_are_url_safe_and_name_the_socket(key: RouteKey, expected: str) -> None:
    assert key.id.startswith(expected)
    assert all(c.isalnum() or c in "._-~" for c in key.id)
    if key.owner:  # a hash of the owner: the SNI names, or origin and alias
        assert len(key.id) == len(expected) + 10
        assert key.id != key._replace(owner=key.owner + "x").id


def test_a_route_in_conflict_has_an_id_of_its_own() -> None:
    holder = RouteView(route("a", 2222, container="one"), "running", listen_port=2222)
    rivals = [RouteView(route("b", 2222, container=c), "conflict") for c in ("two", "three")]
    ids = {holder.id, *(r.id for r in rivals)}
    assert len(ids) == 3 and all(i.startswith("tcp_0.0.0.0_2222") for i in ids)
    assert rivals[0].id == RouteView(route("b", 2222, container="two"), "conflict").id


class Reads:
    """Counts the routes whose counters were read."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def view(self, alias: str, port: int, state: str = "running", **kw: Any) -> RouteView:
        spec = route(alias, port, **kw)

        def live() -> LiveState:
            self.ids.append(spec.key.id)
            return LiveState(Counters(active=port % 7, total=port))

        bound = port if state in ("running", "unhealthy") else None
        return RouteView(spec, state, listen_port=bound, live=live)  # type: ignore[arg-type]


def histories(route_id: str) -> RouteHistory | None:
    if not route_id.endswith("_1001"):
        return None
    series = {**dict.fromkeys(SERIES, (0, 0)), "opened": (1, 2)}
    return RouteHistory(interval=5.0, end=99.0, series=series)


def snapshot(reads: Reads) -> Snapshot:
    routes = [
        reads.view("zeta", 1000),
        reads.view("alpha", 1001, container="shop"),
        reads.view("mid", 1002, state="unhealthy"),
        reads.view("beta", 1003, state="error"),
        *(reads.view(f"r{i:03}", 2000 + i) for i in range(120)),
    ]
    return Snapshot(routes_of=lambda: tuple(routes), history_of=histories)


def test_without_paging_every_route_as_before() -> None:
    reads = Reads()
    taken = snapshot(reads)
    doc = routes_document(taken, RouteQuery.parse({}))
    assert [r["alias"] for r in doc["routes"]] == [r.spec.alias for r in taken.routes]
    assert doc["total"] == 124 and "offset" not in doc
    assert doc["counts"] == {
        "running": 122,
        "sleeping": 0,
        "unhealthy": 1,
        "error": 1,
        "conflict": 0,
    }
    assert set(doc) >= {"routes", "errors", "containers"}
    assert "history" not in doc["routes"][0]


def test_a_page_is_sorted_by_state_then_alias_and_reads_only_its_routes() -> None:
    reads = Reads()
    doc = routes_document(snapshot(reads), RouteQuery.parse({"limit": "3"}))
    assert [r["alias"] for r in doc["routes"]] == ["alpha", "r000", "r001"]
    assert (doc["total"], doc["offset"], doc["limit"]) == (124, 0, 3)
    assert len(reads.ids) == 3
    doc = routes_document(snapshot(Reads()), RouteQuery.parse({"offset": "120", "limit": "10"}))
    assert [(r["alias"], r["state"]) for r in doc["routes"]] == [
        ("r119", "running"),
        ("zeta", "running"),
        ("mid", "unhealthy"),
        ("beta", "error"),
    ]


@pytest.mark.parametrize(
    ("q", "aliases"),
    [
        ("ALPHA", ["alpha"]),
        ("shop", ["alpha"]),  # container
        ("0.0.0.0:1002", ["mid"]),  # listen address
        ("unhealthy", ["mid"]),
        ("r11", [f"r11{i}" for i in range(10)]),
        ("tcp_0.0.0.0_1003", ["beta"]),  # id
        ("nothing like it", []),
    ],
)
def test_search(q: str, aliases: list[str]) -> None:
    doc = routes_document(snapshot(Reads()), RouteQuery.parse({"q": q, "limit": "50"}))
    assert [r["alias"] for r in doc["routes"]] == aliases and doc["total"] == len(aliases)


def test_history_rides_along_on_request() -> None:
    doc = routes_document(snapshot(Reads()), RouteQuery.parse({"q": "alpha", "history": "1"}))
    (row,) = doc["routes"]
    assert row["id"] == "tcp_0.0.0.0_1001"
    assert row["history"]["series"]["opened"] == [1, 2] and row["history"]["end"] == 99.0
    doc = routes_document(snapshot(Reads()), RouteQuery.parse({"q": "zeta", "history": "1"}))
    assert doc["routes"][0]["history"] is None


def test_history_document() -> None:
    taken = snapshot(Reads())
    found = history_document(taken, "tcp_0.0.0.0_1001")
    assert found is not None and found["id"] == "tcp_0.0.0.0_1001" and found["samples"] == 2
    assert history_document(taken, "tcp_0.0.0.0_9") is None


@pytest.mark.parametrize(
    "params",
    [{"limit": "-1"}, {"offset": "x"}, {"limit": "1e3"}, {"limit": "9" * 12}],
)
def test_bad_paging_is_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery):
        RouteQuery.parse(params)


def test_limit_is_capped() -> None:
    assert RouteQuery.parse({"limit": "100000"}).limit == MAX_LIMIT


TIMELINE = (
    Event(1, 10.0, "route_started", "a", "tcp_0.0.0.0_1", "a"),
    Event(2, 20.0, "member_down", "a down", "tcp_0.0.0.0_1", "a"),
    Event(3, 30.0, "engine_lost", "gone"),
)


@pytest.mark.parametrize(
    ("params", "seqs"),
    [
        ({}, [1, 2, 3]),
        ({"route": "tcp_0.0.0.0_1"}, [1, 2]),
        ({"kind": "member_down,engine_lost"}, [2, 3]),
        ({"since": "15"}, [2, 3]),
        ({"limit": "1"}, [3]),
    ],
)
def test_events_document(params: dict[str, str], seqs: list[int]) -> None:
    doc = events_document(Snapshot(timeline=TIMELINE), params)
    assert [e["seq"] for e in doc["events"]] == seqs
    assert "member_down" in doc["kinds"]


@pytest.mark.parametrize("params", [{"kind": "nope"}, {"since": "yesterday"}, {"limit": "x"}])
def test_bad_event_queries_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery):
        events_document(Snapshot(timeline=TIMELINE), params)
