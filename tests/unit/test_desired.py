"""Listen-socket conflicts (docs/labels.md): who keeps a socket, who waits."""

from __future__ import annotations

from godoxy_streams.decide.desired import build_desired
from godoxy_streams.model import binds_overlap

from .routekit import route


def test_distinct_sockets_all_win() -> None:
    routes = [route("a", 1), route("b", 2), route("c", 1, scheme="udp")]
    state = build_desired(routes)
    assert len(state.routes) == 3 and not state.conflicts


def test_older_container_wins_at_start_up() -> None:
    young, old = route(container="young", created=200), route(container="old", created=100)
    state = build_desired([young, old])
    assert list(state.routes.values()) == [old]
    (conflict,) = state.conflicts
    assert conflict.route == young and conflict.holder == old
    assert "held by old" in conflict.message and "takes over" in conflict.message


def test_name_breaks_a_creation_time_tie() -> None:
    state = build_desired([route(container="b"), route(container="a")])
    assert next(iter(state.routes.values())).origin.name == "a"


def test_static_routes_beat_docker_routes() -> None:
    static = route(container="file:x", kind="file", created=0, cid="")
    docker = route(container="old", created=1)
    state = build_desired([docker, static])
    assert next(iter(state.routes.values())) == static


def test_the_holder_keeps_the_socket_over_an_older_newcomer() -> None:
    holder = route(container="young", created=200)
    state = build_desired([holder, route(container="old", created=100)], holders=[holder])
    assert next(iter(state.routes.values())) == holder


def test_loser_takes_over_when_holder_goes_away() -> None:
    holder, loser = route(container="a"), route(container="b")
    assert build_desired([holder, loser], holders=[holder]).conflicts
    state = build_desired([loser], holders=[holder])
    assert list(state.routes.values()) == [loser] and not state.conflicts


def test_overlapping_binds_conflict() -> None:
    wild, local = route("w", bind="0.0.0.0", created=1), route("l", bind="127.0.0.1", created=2)
    state = build_desired([wild, local])
    assert list(state.routes.values()) == [wild] and len(state.conflicts) == 1
    other = route("o", bind="127.0.0.2", created=3)
    assert len(build_desired([local, other]).routes) == 2


def test_bind_overlap_rules() -> None:
    assert binds_overlap("0.0.0.0", "10.1.2.3")
    assert binds_overlap("::", "127.0.0.1")  # dual-stack wildcard
    assert binds_overlap("::", "::1")
    assert not binds_overlap("0.0.0.0", "::1")
    assert not binds_overlap("127.0.0.1", "127.0.0.2")


def test_tcp_and_udp_on_one_port_do_not_conflict() -> None:
    state = build_desired([route(scheme="tcp"), route(scheme="udp")])
    assert len(state.routes) == 2


def test_auto_port_routes_never_conflict() -> None:
    state = build_desired([route("a", None), route("b", None), route("a", None, container="x")])
    assert len(state.routes) == 3 and not state.conflicts
