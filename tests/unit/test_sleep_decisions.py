"""Sleep/wake decisions (decide.sleep, the plan, reconcile.sleepers): which routes a container
serves in each state and how they are marked; a sleeping member's route is retargeted, not
restarted, as it sleeps and wakes; depends_on names resolved as GoDoxy does."""

from __future__ import annotations

import pytest

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.decide.plan import make_plan
from godoxy_streams.decide.sleep import Neighbour, Neighbours, serving_routes
from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.model import RouteSpec, SleepState
from godoxy_streams.reconcile.sleepers import sleep_targets
from godoxy_streams.runtime.sleepers import Dep

from .routekit import route


def marks(routes: tuple[RouteSpec, ...]) -> list[SleepState | None]:
    return [r.origin.sleep for r in routes]


@pytest.mark.parametrize(
    ("state", "sleeps", "hold", "expected"),
    [
        ("running", False, None, [None]),
        ("exited", False, None, []),
        ("paused", False, None, []),
        ("running", True, None, ["awake"]),
        ("exited", True, None, ["asleep"]),
        ("created", True, None, ["asleep"]),
        ("paused", True, None, ["asleep"]),
        ("stopping", True, None, ["asleep"]),
        ("restarting", True, None, ["asleep"]),
        ("running", True, "waking", ["waking"]),  # runs, but not ready yet
        ("running", True, "asleep", ["asleep"]),  # being put to sleep
        ("exited", True, "waking", ["waking"]),
        ("removing", True, None, []),
        ("dead", True, None, []),
        ("removed", True, None, []),
    ],
)
def test_serving_routes(
    state: str, sleeps: bool, hold: SleepState | None, expected: list[str | None]
) -> None:
    assert marks(serving_routes([route()], state, sleeps, hold)) == expected


def test_a_route_with_no_target_yet_is_never_awake() -> None:
    (marked,) = serving_routes([route(target=("", 22))], "running", True)
    assert marked.origin.sleep == "waking"


def test_sleep_and_wake_retarget_the_route_and_gaining_a_sleeper_restarts_it() -> None:
    awake = serving_routes([route()], "running", True)[0]
    asleep = serving_routes([route(target=("", 22))], "exited", True)[0]
    plan = make_plan({asleep.key: asleep}, {awake.key: awake})
    assert plan.retarget == (asleep,) and not plan.stop
    plain = route()
    plan = make_plan({awake.key: awake}, {plain.key: plain})  # the hook must be installed
    assert plan.stop == (plain.key,) and plan.start == (awake,)


def nb(
    name: str, project: str = "", service: str = "", *aliases: str, engine: str = "local"
) -> Neighbour:
    return Neighbour(engine, f"id-{name}", name, project, service, frozenset(aliases))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("db", "p-db-1"),  # the compose service of the same project first
        ("other-db", "other-db"),  # a container name
        ("cache", "redis"),  # a route alias
        ("DB", "p-db-1"),
        ("app", None),  # itself
        ("nothing", None),
        ("far", None),  # another engine
    ],
)
def test_depends_on_names(name: str, expected: str | None) -> None:
    owner = nb("app", "p", "app")
    index = Neighbours(
        [
            owner,
            nb("p-db-1", "p", "db"),
            nb("db", "q", "db"),  # another project's service of that name
            nb("other-db"),
            nb("redis", "", "", "cache"),
            nb("far", engine="edge"),
        ]
    )
    found = index.find(name, owner)
    assert (found.name if found else None) == expected


def info(name: str, labels: dict[str, str], state: str = "running") -> ContainerInfo:
    base = {"com.docker.compose.project": "p", "com.docker.compose.service": name}
    return ContainerInfo(
        id=f"id-{name}", name=f"p-{name}-1", labels={**base, **labels}, state=state,
        networks={"p_default": "" if state != "running" else "172.18.0.9"},
    )  # fmt: skip


def test_targets_resolve_dependencies_and_who_still_needs_them() -> None:
    ctx = ParseContext()
    app = info(
        "app",
        {
            "proxy.app.port": "2222:22",
            "proxy.idle_timeout": "1s",
            "proxy.depends_on": "db:service_healthy, ghost",
        },
        state="exited",
    )
    db = info("db", {})
    web = info("web", {"com.docker.compose.depends_on": "db:service_started:false"})
    old = info("old", {"com.docker.compose.depends_on": "db:service_started:false"}, "exited")
    entries = [(c, parse_container(c, ctx)) for c in (app, db, web, old)]
    targets = sleep_targets(entries)
    assert set(targets) == {("local", "id-app"), ("local", "id-db")}
    sleeper = targets[("local", "id-app")]
    assert sleeper.config is not None and sleeper.state == "exited"
    assert sleeper.deps == (Dep(("local", "id-db"), "p-db-1", True),)
    assert sleeper.missing == ("ghost",)
    dependency = targets[("local", "id-db")]
    assert dependency.config is None  # it does not sleep on its own
    assert dependency.needed_by == {("local", "id-web")}  # web runs and needs it; old does not
    assert sleep_targets(entries[1:]) == {}  # nothing sleeps: nothing to track
