"""Pools in the desired state: who joins a pool instead of conflicting, in which order, and how
membership changes become retargets (never restarts)."""

from __future__ import annotations

from godoxy_streams.decide.desired import build_desired
from godoxy_streams.decide.plan import make_plan
from godoxy_streams.model import RouteOrigin, RouteSpec

from .routekit import route


def replica(name: str, created: float, ip: str, **extra: object) -> RouteSpec:
    spec = route(container=name, created=created, target=(ip, 7), **extra)
    origin = spec.origin.model_copy(update={"compose_project": "shop", "compose_service": "echo"})
    return spec.model_copy(update={"origin": origin})


def test_load_balance_mode_on_both_makes_one_pool_in_rank_order() -> None:
    a = route(container="a", created=1, target=("10.0.0.1", 7), load_balance="round_robin")
    b = route(container="b", created=2, target=("10.0.0.2", 7), load_balance="round_robin")
    state = build_desired([b, a])
    assert not state.conflicts
    (pool,) = state.routes.values()
    assert [m.origin.name for m in pool.members] == ["a", "b"]
    assert [m.address for m in pool.members] == [("10.0.0.1", 7), ("10.0.0.2", 7)]
    assert pool.target == ("10.0.0.1", 7) and pool.balance == "round_robin"


def test_compose_replicas_pool_without_a_mode() -> None:
    state = build_desired(
        [replica("shop-echo-2", 2, "10.0.0.2"), replica("shop-echo-1", 1, "10.0.0.1")]
    )
    assert not state.conflicts
    (pool,) = state.routes.values()
    assert [m.origin.name for m in pool.members] == ["shop-echo-1", "shop-echo-2"]
    assert pool.balance == "round_robin"


def test_replicas_of_different_services_conflict() -> None:
    one = replica("x", 1, "10.0.0.1")
    other = one.model_copy(
        update={"origin": one.origin.model_copy(update={"compose_service": "other", "name": "y"})}
    )
    state = build_desired([one, other])
    assert len(state.conflicts) == 1 and "cannot join" not in state.conflicts[0].message


def test_mode_on_one_side_only_is_a_conflict() -> None:
    a = route(container="a", created=1, load_balance="round_robin")
    b = route(container="b", created=2)
    assert len(build_desired([a, b]).conflicts) == 1


def test_different_modes_conflict() -> None:
    a = route(container="a", created=1, load_balance="round_robin")
    b = route(container="b", created=2, load_balance="least_conn")
    assert len(build_desired([a, b]).conflicts) == 1


def test_a_member_whose_listener_settings_differ_is_a_conflict_that_says_why() -> None:
    a = route(container="a", created=1, load_balance="ip_hash")
    b = route(container="b", created=2, load_balance="ip_hash", acl_allow=("10.0.0.0/8",))
    (conflict,) = build_desired([a, b]).conflicts
    assert "cannot join the holder's pool: acl_allow differ" in conflict.message


def test_aliases_may_differ_inside_a_pool() -> None:
    a = route("api", container="a", created=1, load_balance="round_robin")
    b = route("api2", container="b", created=2, load_balance="round_robin")
    (pool,) = build_desired([a, b]).routes.values()
    assert [m.alias for m in pool.members] == ["api", "api2"] and pool.alias == "api"


def test_overlapping_binds_still_conflict_even_with_a_mode() -> None:
    a = route(container="a", created=1, load_balance="round_robin", bind="0.0.0.0")
    b = route(container="b", created=2, load_balance="round_robin", bind="127.0.0.1")
    assert len(build_desired([a, b]).conflicts) == 1


def test_auto_ports_never_pool() -> None:
    a = route(container="a", port=None, load_balance="round_robin")
    b = route(container="b", port=None, load_balance="round_robin")
    state = build_desired([a, b])
    assert len(state.routes) == 2 and not state.conflicts


def test_a_member_joining_or_leaving_is_a_retarget() -> None:
    a, b = replica("e1", 1, "10.0.0.1"), replica("e2", 2, "10.0.0.2")
    c = replica("e3", 3, "10.0.0.3")
    running = build_desired([a, b]).routes
    grown = build_desired([a, b, c], holders=running.values()).routes
    plan = make_plan(grown, running)
    assert not plan.start and not plan.stop
    (spec,) = plan.retarget
    assert [m.origin.name for m in spec.members] == ["e1", "e2", "e3"]
    shrunk = build_desired([b, c], holders=grown.values()).routes
    plan = make_plan(shrunk, grown)
    assert not plan.start and not plan.stop and len(plan.retarget) == 1
    assert shrunk[next(iter(shrunk))].target == ("10.0.0.2", 7)


def test_a_docker_health_change_is_a_retarget() -> None:
    a = replica("e1", 1, "10.0.0.1")
    running = build_desired([a]).routes
    sick = a.model_copy(update={"origin": a.origin.model_copy(update={"health": "unhealthy"})})
    plan = make_plan(build_desired([sick], holders=running.values()).routes, running)
    assert not plan.start and not plan.stop and len(plan.retarget) == 1
    assert plan.retarget[0].members[0].origin.health == "unhealthy"


def test_members_of_a_running_pool_keep_their_place_over_older_newcomers() -> None:
    a = route(container="a", created=10, target=("10.0.0.1", 7), load_balance="least_conn")
    running = build_desired([a]).routes
    old = route(container="old", created=1, target=("10.0.0.9", 7), load_balance="least_conn")
    (pool,) = build_desired([a, old], holders=running.values()).routes.values()
    assert [m.origin.name for m in pool.members] == ["a", "old"]


def test_single_route_members_is_its_own_target() -> None:
    spec = route(target=("10.0.0.5", 22))
    (member,) = spec.members
    assert member.address == ("10.0.0.5", 22) and member.origin == spec.origin
    assert spec.public_dict()["members"] == [
        {"alias": "a", "host": "10.0.0.5", "port": 22, "container": "web"}
    ]


def test_origin_health_defaults_to_none() -> None:
    assert RouteOrigin(kind="docker", name="x").health is None


def test_the_first_member_leaving_keeps_the_listener_even_with_another_alias() -> None:
    a = route("web1", container="a", created=1, load_balance="round_robin")
    b = route("web2", container="b", created=2, target=("10.0.0.3", 22), load_balance="round_robin")
    running = build_desired([a, b]).routes
    left = build_desired([b], holders=running.values()).routes
    plan = make_plan(left, running)
    assert not plan.start and not plan.stop and len(plan.retarget) == 1
    assert plan.retarget[0].alias == "web2"
