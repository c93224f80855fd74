"""Listen-socket conflicts (docs/labels.md): who keeps a socket, who waits."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from godoxy_streams.decide.desired import PortClaims, build_desired
from godoxy_streams.model import RouteKey, RouteSpec, binds_overlap, keys_overlap, shared_name

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


# -- SNI routes: many routes on one socket, each with its server names ---------------------


def sni(alias: str, *names: str, **kw: Any) -> RouteSpec:
    return route(alias, 443, sni=tuple(sorted(names)), **kw)


def test_sni_routes_with_distinct_names_share_a_socket() -> None:
    a, b = sni("a", "a.example.com", container="web"), sni("b", "*.example.com", container="db")
    default = sni("any", "*", container="other")
    state = build_desired([a, b, default])
    assert not state.conflicts and len(state.routes) == 3
    assert {k.names for k in state.routes} == {("a.example.com",), ("*.example.com",), ("*",)}
    assert len({k.socket for k in state.routes}) == 1


def test_an_overlapping_name_is_a_conflict_that_names_it() -> None:
    old = sni("a", "a.example.com", "b.example.com", container="web", created=1)
    young = sni("x", "b.example.com", "c.example.com", container="new", created=2)
    state = build_desired([young, old])
    assert list(state.routes.values()) == [old]
    (conflict,) = state.conflicts
    assert conflict.name == "b.example.com"
    assert conflict.message.startswith(
        'server name "b.example.com" on tcp/0.0.0.0:443 is held by web (route "a"); '
    )


def test_the_same_names_twice_conflict_unless_they_pool() -> None:
    one, two = sni("a", "a.example.com", container="c1"), sni("a", "a.example.com", container="c2")
    (conflict,) = build_desired([one, two]).conflicts
    assert 'server name "a.example.com"' in conflict.message
    pooled = [
        sni("a", "a.example.com", container=c, load_balance="round_robin") for c in ("c1", "c2")
    ]
    state = build_desired(pooled)
    (winner,) = state.routes.values()
    assert not state.conflicts and [m.origin.name for m in winner.members] == ["c1", "c2"]


def test_a_plain_route_and_an_sni_route_never_share_a_socket() -> None:
    plain = route("p", 443, container="plain", created=1)
    named = sni("a", "a.example.com", container="named", created=2)
    state = build_desired([named, plain])
    assert list(state.routes.values()) == [plain]
    (conflict,) = state.conflicts
    assert conflict.name is None
    assert "listen socket tcp/0.0.0.0:443 is held by plain" in conflict.message
    assert "TLS server name share a socket only with each other" in conflict.message


def test_sni_routes_on_overlapping_binds_conflict_whatever_their_names() -> None:
    wild = sni("a", "a.example.com", bind="0.0.0.0", container="w", created=1)
    local = sni("b", "b.example.com", bind="127.0.0.1", container="l", created=2)
    (conflict,) = build_desired([wild, local]).conflicts
    assert conflict.route == local and conflict.name is None
    assert "tcp/127.0.0.1:443 overlaps tcp/0.0.0.0:443" in conflict.message
    apart = sni("c", "b.example.com", bind="127.0.0.2", container="o", created=3)
    assert not build_desired([local, apart]).conflicts


def test_an_exact_name_inside_a_wildcard_is_no_conflict() -> None:
    keys = [sni("a", "*.example.com").key, sni("b", "a.example.com").key]
    assert not keys_overlap(*keys) and shared_name(*keys) is None


@given(
    keys=st.lists(
        st.builds(
            RouteKey,
            st.just("tcp"),
            st.sampled_from(["0.0.0.0", "127.0.0.1", "::"]),
            st.just(443),
            st.sampled_from(["", "sni:*", "sni:a.test", "sni:a.test,b.test", "sni:*.test"]),
        ),
        max_size=6,
    ),
    new=st.sampled_from(["", "sni:b.test", "sni:*.test,c.test"]),
    bind=st.sampled_from(["0.0.0.0", "127.0.0.1"]),
)
def test_port_claims_find_an_overlap_iff_keys_overlap(
    keys: list[RouteKey], new: str, bind: str
) -> None:
    claims, kept = PortClaims(), []
    for n, key in enumerate(keys):
        spec = (
            sni(f"r{n}", *key.names, bind=key.bind)
            if key.names
            else route(f"r{n}", 443, bind=key.bind)
        )
        if claims.holder(spec.key) is None:
            claims.add(spec)
            kept.append(spec.key)
    wanted = RouteKey("tcp", bind, 443, new)
    holder = claims.holder(wanted)
    assert (holder is not None) == any(keys_overlap(wanted, k) for k in kept)
    assert holder is None or keys_overlap(wanted, holder.key)
