"""The event timeline: the bounded ring, its filters, and the entries the runtime and the
reconciler write (pure: no loop, no sockets)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from godoxy_streams.decide.desired import Conflict
from godoxy_streams.events import KINDS, Event, EventLog, select
from godoxy_streams.model import Member
from godoxy_streams.reconcile.timeline import note_conflicts
from godoxy_streams.runtime import timeline
from godoxy_streams.runtime.manager import RunningRoute
from tests.unit.routekit import route


def test_ring_is_bounded_and_numbered_in_order() -> None:
    clock = itertools.count(100.0)
    log = EventLog(capacity=3, clock=lambda: next(clock))
    for n in range(5):
        log.record("route_started", f"n{n}")
    assert [(e.seq, e.time, e.message) for e in log.events()] == [
        (3, 102.0, "n2"),
        (4, 103.0, "n3"),
        (5, 104.0, "n4"),
    ]


def test_route_event_names_the_socket_id_and_alias() -> None:
    event = EventLog().route("sleep", route("ssh", 2222, bind="127.0.0.1"), "idle")
    assert (event.kind, event.route, event.alias) == ("sleep", "tcp_127.0.0.1_2222", "ssh")
    assert event.as_json()["route"] == "tcp_127.0.0.1_2222"
    assert EventLog().record("engine_lost", "gone").as_json()["route"] is None


EVENTS = [
    Event(1, 10.0, "route_started", "a up", "tcp_0.0.0.0_1", "a"),
    Event(2, 20.0, "member_down", "a down", "tcp_0.0.0.0_1", "a"),
    Event(3, 30.0, "engine_lost", "engine"),
    Event(4, 40.0, "route_started", "b up", "tcp_0.0.0.0_2", "b"),
    Event(5, 50.0, "member_up", "a up again", "tcp_0.0.0.0_1", "a"),
]


@pytest.mark.parametrize(
    ("query", "seqs"),
    [
        ({}, [1, 2, 3, 4, 5]),
        ({"route": "tcp_0.0.0.0_1"}, [1, 2, 5]),
        ({"kinds": ["route_started"]}, [1, 4]),
        ({"kinds": ["member_down", "member_up"]}, [2, 5]),
        ({"since": 30.0}, [3, 4, 5]),
        ({"route": "tcp_0.0.0.0_1", "since": 15.0}, [2, 5]),
        ({"limit": 2}, [4, 5]),
        ({"limit": 0}, []),
        ({"route": "nope"}, []),
    ],
)
def test_select(query: dict[str, Any], seqs: list[int]) -> None:
    assert [e.seq for e in select(EVENTS, **query)] == seqs


def kinds_and_messages(log: EventLog) -> list[tuple[str, str]]:
    return [(e.kind, e.message) for e in log.events()]


def test_runtime_entries() -> None:
    log = EventLog()
    spec = route("web", 8080, bind="127.0.0.1", target=("10.0.0.2", 80))
    timeline.started(log, spec, 8080)
    moved = route("web", 8080, bind="127.0.0.1", target=("10.0.0.3", 80))
    timeline.retargeted(log, spec, moved)
    timeline.retargeted(log, moved, moved)  # nothing changed: nothing recorded
    timeline.probed(log, moved, moved.members[0], False, "refused")
    timeline.probed(log, moved, moved.members[0], True, None)
    timeline.stopped(log, moved, 8080)
    timeline.failed(log, moved, "cannot listen")
    assert kinds_and_messages(log) == [
        ("route_started", "tcp 127.0.0.1:8080 -> 10.0.0.2:80"),
        ("route_retargeted", "now -> 10.0.0.3:80"),
        ("member_down", "10.0.0.3:80 (web): probe fails: refused"),
        ("member_up", "10.0.0.3:80 (web): probe succeeds again"),
        ("route_stopped", "tcp 127.0.0.1:8080 closed"),
        ("route_failed", "cannot listen"),
    ]
    assert {e.route for e in log.events()} == {"tcp_127.0.0.1_8080"}
    assert {e.kind for e in log.events()} <= set(KINDS)


def pooled(*healths: str | None) -> Any:
    base = route("web", 8080)
    members = [
        Member(
            alias="web",
            host=f"10.0.0.{i}",
            port=80,
            origin=base.origin.model_copy(update={"name": f"c{i}", "id": f"id{i}", "health": h}),
        )
        for i, h in enumerate(healths)
    ]
    return base.model_copy(update={"pool": tuple(members)})


def test_docker_health_changes_of_members_are_down_and_up() -> None:
    log = EventLog()
    timeline.retargeted(log, pooled("healthy", "starting"), pooled("unhealthy", "healthy"))
    assert kinds_and_messages(log) == [
        ("member_down", "10.0.0.0:80 (c0): Docker health unhealthy"),
        ("member_up", "10.0.0.1:80 (c1): Docker health healthy"),
    ]


def test_conflict_recorded_once_then_takeover_when_the_holder_goes() -> None:
    log = EventLog()
    holder, rival = route("a", 2222, container="one"), route("b", 2222, container="two")
    conflict = Conflict(rival, holder)
    running = {holder.key: RunningRoute(holder, stream=None)}  # type: ignore[arg-type]
    note_conflicts(log, (), (conflict,), running)
    note_conflicts(log, (conflict,), (conflict,), running)  # still the same conflict
    assert [e.kind for e in log.events()] == ["conflict"]
    assert log.events()[0].route == "tcp_0.0.0.0_2222" and log.events()[0].alias == "b"
    running = {rival.key: RunningRoute(rival, stream=None)}  # type: ignore[arg-type]
    note_conflicts(log, (conflict,), (), running)
    last = log.events()[-1]
    assert (last.kind, last.alias) == ("takeover", "b")
    assert last.message == "two took tcp/0.0.0.0:2222 over from one"


def test_conflict_gone_without_takeover_records_nothing() -> None:
    log = EventLog()
    holder, rival = route("a", 2222, container="one"), route("b", 2222, container="two")
    running = {holder.key: RunningRoute(holder, stream=None)}  # type: ignore[arg-type]
    note_conflicts(log, (Conflict(rival, holder),), (), running)  # the rival went away
    assert log.events() == ()
