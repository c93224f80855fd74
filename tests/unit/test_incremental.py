"""The incremental desired state equals deciding from scratch.

Random sequences of container changes (routes added, moved, retargeted, pooled, removed;
static routes replaced) go through ``DesiredIndex`` and a stand-in manager that applies each
plan (a bind may fail). Before every pass the reference is computed the old way, over every
candidate and every running route: the plan, the winners and the conflicts must be the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.decide.desired import build_desired, socket_group
from godoxy_streams.decide.index import Contributor, DesiredIndex
from godoxy_streams.decide.plan import Plan, make_plan
from godoxy_streams.model import RouteKey, RouteSpec

from .routekit import route

CONTAINERS = ("c0", "c1", "c2", "c3", "c4")


NAME_SETS = [(), (), ("a.example.com",), ("*.example.com",), ("a.example.com", "b.test"), ("*",)]


@st.composite
def a_route(draw: st.DrawFn, container: str) -> RouteSpec:
    lb = draw(st.sampled_from([None, None, "round_robin"]))
    extra: dict[str, object] = {"load_balance": lb} if lb else {}
    port = draw(st.sampled_from([None, 2222, 2222, 2223]))
    scheme = draw(st.sampled_from(["tcp", "tcp", "udp"]))
    if port and scheme == "tcp":  # an SNI route: names on a shared socket
        extra["sni"] = draw(st.sampled_from(NAME_SETS))
    return route(
        draw(st.sampled_from(["a", "b"])),
        port,
        scheme=scheme,
        bind=draw(st.sampled_from(["0.0.0.0", "0.0.0.0", "127.0.0.1", "::"])),
        target=(f"10.0.0.{draw(st.integers(1, 3))}", 22),
        container=container,
        created=float(draw(st.integers(1, 3))),
        **extra,
    )


@st.composite
def a_change(draw: st.DrawFn) -> tuple[str, tuple[RouteSpec, ...]]:
    """A contributor and its new routes (none: it stopped or went away)."""
    who = draw(st.sampled_from([*CONTAINERS, "file"]))
    if who == "file":
        routes = draw(st.lists(a_route("file:x"), max_size=2))
        routes = [
            r.model_copy(update={"origin": r.origin.model_copy(update={"kind": "file"})})
            for r in routes
        ]
    else:
        routes = draw(st.lists(a_route(who), max_size=2))
    unique = {(r.alias, r.proto): r for r in routes}  # one route per alias and protocol
    return who, tuple(unique.values())


@dataclass
class Manager:
    """Applies plans like the runtime: a start on a ``busy`` socket fails and is retried."""

    busy: frozenset[int]
    running: dict[RouteKey, RouteSpec] = field(default_factory=dict)
    failed: set[RouteKey] = field(default_factory=set)

    def apply(self, plan: Plan) -> None:
        for key in plan.stop:
            self.running.pop(key, None)
            self.failed.discard(key)
        for spec in plan.retarget:
            self.running[spec.key] = spec
        for spec in plan.start:
            if spec.listen_port in self.busy:
                self.failed.add(spec.key)
            else:
                self.running[spec.key] = spec
                self.failed.discard(spec.key)


def reference(
    contributions: Mapping[Contributor, tuple[RouteSpec, ...]],
    running: Mapping[RouteKey, RouteSpec],
) -> tuple[Plan, dict[RouteKey, RouteSpec], set[object]]:
    candidates = [r for routes in contributions.values() for r in routes]
    desired = build_desired(candidates, holders=running.values())
    plan = make_plan(desired.routes, running)
    return plan, dict(desired.routes), {(c.route, c.holder) for c in desired.conflicts}


def same_plan(a: Plan, b: Plan) -> bool:
    return (a.stop, a.retarget, a.start) == (b.stop, b.retarget, b.start)


@settings(max_examples=300, deadline=None)
@given(
    changes=st.lists(st.tuples(a_change(), st.booleans()), min_size=1, max_size=25),
    busy=st.sets(st.sampled_from([2222, 2223]), max_size=1),
)
def test_incremental_equals_from_scratch(
    changes: list[tuple[tuple[str, tuple[RouteSpec, ...]], bool]], busy: set[int]
) -> None:
    index = DesiredIndex()
    manager = Manager(frozenset(busy))
    contributions: dict[Contributor, tuple[RouteSpec, ...]] = {}

    def one_pass() -> None:
        expected, winners, conflicts = reference(contributions, manager.running)
        index.mark(manager.failed)
        plan = index.decide(manager.running)
        assert same_plan(plan, expected)
        assert index.desired() == winners
        assert {(c.route, c.holder) for c in index.conflicts()} == conflicts
        touched = [*plan.stop, *(s.key for s in plan.retarget), *(s.key for s in plan.start)]
        before = {key: manager.running.get(key) for key in touched}
        manager.apply(plan)
        index.applied(before, manager.running)

    for (who, routes), run_pass in changes:
        key: Contributor = ("file",) if who == "file" else ("local", who)
        index.set_routes(key, routes)
        if routes:
            contributions[key] = routes
        else:
            contributions.pop(key, None)
        if run_pass:
            one_pass()
    for _ in range(5):  # passes until nothing is left to decide (held sockets re-ranked)
        one_pass()
        if not index.dirty:
            break
    assert not index.dirty


def test_an_unrelated_change_decides_nothing_else() -> None:
    index = DesiredIndex()
    for n in range(100):
        index.set_routes(("local", f"c{n}"), (route("a", 3000 + n, container=f"c{n}"),))
    running: dict[RouteKey, RouteSpec] = {}
    plan = index.decide(running)
    assert len(plan.start) == 100
    for spec in plan.start:
        running[spec.key] = spec
    index.applied(dict.fromkeys(running), running)
    index.decide(running)  # the held-flip follow-up pass: no change
    assert not index.dirty
    index.set_routes(("local", "new"), (route("a", 4000, container="new"),))
    assert index.candidates(socket_group(RouteKey("tcp", "0.0.0.0", 4000))) != []
    plan = index.decide(running)
    assert [s.key.port for s in plan.start] == [4000] and not plan.stop


def test_one_edited_route_of_a_large_routes_file_marks_its_groups_only() -> None:
    index = DesiredIndex()
    routes = [
        route(f"r{n}", 3000 + n, container="file:x", kind="file", cid="") for n in range(2000)
    ]
    index.set_routes(("file",), routes)
    running: dict[RouteKey, RouteSpec] = {}
    for spec in index.decide(running).start:
        running[spec.key] = spec
    index.applied(dict.fromkeys(running), running)
    index.decide(running)
    edited = [*routes[:7], route("r7", 9999, container="file:x", kind="file", cid=""), *routes[8:]]
    index.set_routes(("file",), edited)
    assert index.marked == 2  # the old socket's group and the new one's
    plan = index.decide(running)
    assert [k.port for k in plan.stop] == [3007] and [s.key.port for s in plan.start] == [9999]


def test_a_replaced_contribution_frees_its_old_socket() -> None:
    index = DesiredIndex()
    index.set_routes(("local", "c"), (route("a", 2222, container="c"),))
    running: dict[RouteKey, RouteSpec] = {}
    (spec,) = index.decide(running).start
    running[spec.key] = spec
    index.applied({spec.key: None}, running)
    index.set_routes(("local", "c"), (route("a", 2223, container="c"),))
    plan = index.decide(running)
    assert plan.stop == (spec.key,) and [s.key.port for s in plan.start] == [2223]


def test_identical_replicas_expand_their_labels_once() -> None:
    from godoxy_streams.containers import ContainerInfo, PortFact
    from godoxy_streams.labels import ParseContext, expansion_of, parse_container

    labels = {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "echo",
        "proxy.#1.scheme": "tcp",
        "proxy.#1.port": "2222:22",
        "proxy.#1.load_balance.mode": "round_robin",
    }
    replicas = [
        ContainerInfo(
            id=f"id{n}",
            name=f"shop-echo-{n}",
            labels=labels,
            networks={"shop_default": f"10.0.0.{n}"},
            ports=(PortFact(22, "tcp"),),
        )
        for n in (1, 2)
    ]
    assert expansion_of(replicas[0], "proxy") is expansion_of(replicas[1], "proxy")
    routes = [parse_container(info, ParseContext()).routes[0] for info in replicas]
    assert [(r.alias, r.target_host, r.origin.name) for r in routes] == [
        ("echo", "10.0.0.1", "shop-echo-1"),
        ("echo", "10.0.0.2", "shop-echo-2"),
    ]
