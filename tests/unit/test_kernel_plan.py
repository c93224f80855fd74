"""The fast path's decisions in the daemon: each running route's path and reason, the table
they make, the operator's settings as the context, route ids, and the host's bridges."""

from __future__ import annotations

from typing import Any

import pytest

from godoxy_streams.model import Member, RouteSpec
from godoxy_streams.runtime.kernel.eligible import KERNEL_REASON, FastPathContext
from godoxy_streams.runtime.kernel.host import parse_bridge_subnets
from godoxy_streams.runtime.kernel.ids import IdsExhausted, RouteIds
from godoxy_streams.runtime.kernel.plan import (
    Decision,
    Served,
    fast_path_context,
    plan_table,
    refused,
)
from godoxy_streams.runtime.kernel.routes import Socket
from godoxy_streams.settings import Settings

from .routekit import route

CTX = FastPathContext(access_log=False, return_networks=("172.24.0.0/16",))
TARGET = ("172.24.0.2", 7)


def served(spec: RouteSpec, route_id: int = 1, port: int = 0, **extra: Any) -> Served:
    healthy: tuple[Member, ...] = extra.pop("healthy", spec.members)
    return Served(spec.key, spec, port or spec.listen_port or 40000, healthy, route_id)


@pytest.mark.parametrize(
    ("extra", "path", "reason", "socket"),
    [
        ({}, "kernel", KERNEL_REASON, None),
        ({"bind": "198.18.0.1"}, "kernel", KERNEL_REASON, None),
        ({"proxy_protocol": "v1"}, "userspace", "PROXY protocol", None),
        ({"proxy_protocol": "v1", "bind": "198.18.0.1"}, "userspace", "PROXY", "198.18.0.1"),
        ({"bind": "127.0.0.1"}, "userspace", "loopback bind", "127.0.0.1"),
        ({"target": ("10.9.9.9", 7)}, "userspace", "would not come back", None),
    ],
)
def test_each_route_gets_a_path_and_a_reason(
    extra: dict[str, Any], path: str, reason: str, socket: str | None
) -> None:
    spec = route(**{"target": TARGET, **extra})
    plan = plan_table([served(spec)], CTX)
    decision = plan.decisions[spec.key]
    assert decision.path == path and reason in decision.reason
    assert [r.route_id for r in plan.table.routes] == ([1] if path == "kernel" else [])
    sockets = (Socket("tcp", socket, 2222),) if socket else ()
    assert plan.table.userspace_sockets == sockets


def test_the_table_has_the_bound_port_the_healthy_members_and_the_default_limit() -> None:
    spec = route(port=None, target=TARGET)
    plan = plan_table([served(spec, 7, 41000, healthy=())], CTX, default_max_connections=50)
    (kernel,) = plan.table.routes
    assert (kernel.route_id, kernel.listen_port, kernel.members) == (7, 41000, ())
    assert kernel.max_connections == 50  # the operator's default for TCP routes
    assert plan.keys == {7: spec.key}
    own = route(target=TARGET, max_connections=3)
    (kernel,) = plan_table([served(own)], CTX, default_max_connections=50).table.routes
    assert kernel.max_connections == 3


def test_a_value_nft_cannot_express_keeps_the_route_in_userspace() -> None:
    spec = route(target=TARGET, conn_idle_timeout=float("inf"))
    decision = plan_table([served(spec)], CTX).decisions[spec.key]
    assert decision.path == "userspace" and "not expressible" in decision.reason


def test_routes_the_kernel_refused_fall_back_with_the_error() -> None:
    one, two = route("a", 2222, target=TARGET), route("b", 2223, target=TARGET)
    plan = refused(plan_table([served(one, 1), served(two, 2)], CTX), {2: "Error: bad"})
    assert [r.route_id for r in plan.table.routes] == [1]
    assert plan.decisions[two.key] == Decision(
        "userspace", "nftables refused the route's rules: Error: bad"
    )
    assert plan.decisions[one.key].path == "kernel" and plan.keys == {1: one.key}


@pytest.mark.parametrize(
    ("log", "asked"),
    [
        ({}, False),  # the default: kernel flows simply are not logged
        ({"access_log": True}, True),  # asked for: every route keeps its lines
        ({"access_log": True, "level": "WARNING"}, False),  # asked, but never written
        ({"access_log": False}, False),
    ],
)
def test_the_access_log_keeps_routes_in_userspace_only_when_asked_for(
    log: dict[str, Any], asked: bool
) -> None:
    settings = Settings(no_docker=True, log=log)  # type: ignore[arg-type]
    ctx = fast_path_context(settings, ["edge"], ["172.24.0.0/16"])
    assert ctx.access_log is asked
    assert ctx.agent_engines == frozenset({"edge"}) and ctx.return_networks == ("172.24.0.0/16",)


def test_the_context_carries_the_global_acl_and_per_source_limits() -> None:
    settings = Settings(
        no_docker=True,
        acl={"allow": ("198.18.0.0/15",)},  # type: ignore[arg-type]
        proxy_protocol_trusted=("198.18.0.9",),
        limits={"per_source_connections": 4, "per_source_rate": 2, "per_source_burst": 5},  # type: ignore[arg-type]
    )
    ctx = fast_path_context(settings, [], [])
    assert (ctx.acl_allow, ctx.proxy_protocol_trusted) == (("198.18.0.0/15",), ("198.18.0.9/32",))
    assert (ctx.per_source_connections, ctx.per_source_rate, ctx.per_source_burst) == (4, 2, 5)


def test_route_ids_are_stable_reserved_while_draining_then_reused() -> None:
    ids = RouteIds(limit=3)
    a, b, c, d = (route(str(i), 2000 + i).key for i in range(4))
    assert (ids.assign(a), ids.assign(b), ids.assign(a)) == (1, 2, 1)
    assert ids.retire(a) == 1 and ids.get(a) is None
    assert ids.assign(c) == 3  # 1 still drains
    with pytest.raises(IdsExhausted):
        ids.assign(d)
    ids.release(1)
    assert ids.assign(a) == 1 and len(ids) == 3
    assert ids.retire(d) is None


ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
br-0a1b2c3d4e5f\t000018AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
br-0a1b2c3d4e5f\t000018AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
br-via-gw\t000019AC\t010018AC\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker_gwbridge\tjunk
"""


def test_bridge_subnets_come_from_the_routing_table() -> None:
    assert parse_bridge_subnets(ROUTES) == ["172.17.0.0/16", "172.24.0.0/16"]
    assert parse_bridge_subnets("") == []
