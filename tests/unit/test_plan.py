"""make_plan: stop, retarget, start, unchanged."""

from __future__ import annotations

from godoxy_streams.decide.plan import make_plan

from .routekit import route


def keyed(*routes):  # type: ignore[no-untyped-def]
    return {r.key: r for r in routes}


def test_nothing_running_starts_everything() -> None:
    a, b = route("a", 1), route("b", 2)
    plan = make_plan(keyed(a, b), {})
    assert plan.start == (a, b) and not plan.stop and not plan.retarget


def test_unchanged_route_is_never_touched() -> None:
    a = route("a", 1)
    plan = make_plan(keyed(a), keyed(route("a", 1)))
    assert plan.empty and plan.unchanged == {a.key}


def test_gone_route_is_stopped() -> None:
    a = route("a", 1)
    plan = make_plan({}, keyed(a))
    assert plan.stop == (a.key,) and not plan.start


def test_new_target_is_a_retarget_not_a_restart() -> None:
    old = route("a", 1, target=("10.0.0.2", 22), container="web-1", cid="x")
    new = route("a", 1, target=("10.0.0.3", 22), container="web-2", cid="y", created=500)
    plan = make_plan(keyed(new), keyed(old))
    assert plan.retarget == (new,) and not plan.stop and not plan.start


def test_changed_listener_options_restart_the_route() -> None:
    old, new = route("a", 1), route("a", 1, udp_timeout=5.0, scheme="udp")
    plan = make_plan(keyed(new), keyed(route("a", 1, scheme="udp")))
    assert plan.stop == (new.key,) and plan.start == (new,)
    assert make_plan(keyed(old), keyed(old)).empty


def test_auto_port_route_keyed_by_owner() -> None:
    a = route("a", None)
    assert a.key.port == 0 and a.key.owner == "web/a"
    assert make_plan(keyed(a), keyed(a)).empty
