"""Which routes the kernel fast path takes, why the others stay in userspace, and what a
route becomes on the kernel path."""

from __future__ import annotations

from typing import Any

import pytest

from godoxy_streams.model import Member, RouteOrigin
from godoxy_streams.runtime.kernel.eligible import (
    KERNEL_REASON,
    FastPathContext,
    kernel_eligible,
    kernel_route,
    kernel_table,
)
from godoxy_streams.runtime.kernel.routes import Socket, Upstream

from .routekit import route

CTX = FastPathContext(
    access_log=False,
    agent_engines=frozenset({"edge"}),
    return_networks=("172.16.0.0/12", "fd00::/8"),
    acl_allow=("198.18.0.0/15",),
    proxy_protocol_trusted=("198.18.0.9",),
    per_source_connections=4,
    per_source_rate=2.0,
    per_source_burst=5,
)
TARGET = ("172.24.0.2", 7)


def _member(host: str, port: int = 7, name: str = "b") -> Member:
    origin = RouteOrigin(kind="docker", name=name, id=f"id-{name}")
    return Member(alias="a", host=host, port=port, origin=origin)


@pytest.mark.parametrize(
    ("extra", "ctx", "eligible", "reason"),
    [
        ({}, CTX, True, KERNEL_REASON),
        ({"scheme": "udp"}, CTX, True, KERNEL_REASON),
        ({"load_balance": "ip_hash"}, CTX, True, KERNEL_REASON),
        ({"acl_allow": ("10.0.0.0/8",), "max_connections": 3}, CTX, True, KERNEL_REASON),
        ({"proxy_protocol": "v2"}, CTX, False, "PROXY protocol out"),
        ({"sni": ("a.example.com",)}, CTX, False, "TLS server name"),
        ({}, FastPathContext(return_networks=("172.16.0.0/12",)), False, "access log"),
        ({"origin": RouteOrigin(kind="docker", name="c", engine="edge")}, CTX, False, "agent"),
        ({"load_balance": "least_conn"}, CTX, False, "least_conn"),
        ({"bind": "127.0.0.1"}, CTX, False, "loopback bind"),
        ({"bind": "::"}, CTX, False, "IPv6"),
        ({"scheme": "tcp6", "bind": "::"}, CTX, False, "IPv6"),
        ({"target": ("fd00::5", 7)}, CTX, False, "IPv6"),
        ({"target": ("db.internal", 7)}, CTX, False, "a name"),
        ({"target": ("127.0.0.1", 7)}, CTX, False, "loopback address"),
        ({"target": ("192.0.2.50", 7)}, CTX, False, "would not come back"),
        ({"pool": (_member("172.24.0.2"), _member("10.9.9.9"))}, CTX, False, "10.9.9.9"),
    ],
)
def test_kernel_eligible(
    extra: dict[str, Any], ctx: FastPathContext, eligible: bool, reason: str
) -> None:
    fields = {"target": TARGET, **extra}
    ok, why = kernel_eligible(route(**fields), ctx)
    assert ok is eligible
    assert reason in why


def test_a_tcp_route_on_the_kernel_path() -> None:
    spec = route(target=TARGET, acl_deny=("198.18.0.3",), max_connections=9, conn_idle_timeout=90)
    kernel = kernel_route(spec, CTX, route_id=7)
    assert (kernel.route_id, kernel.protocol, kernel.bind, kernel.listen_port) == (
        7,
        "tcp",
        "0.0.0.0",
        2222,
    )
    assert kernel.members == (Upstream("172.24.0.2", 7, "id-web"),)
    assert kernel.deny == ("198.18.0.3",) and kernel.max_connections == 9
    assert (kernel.idle_timeout, kernel.udp_timeout) == (90, None)
    assert (kernel.per_source_connections, kernel.rate, kernel.burst) == (4, 2.0, 5)
    assert kernel.name == "web/a"


def test_a_udp_route_counts_sessions_and_times_them_out() -> None:
    spec = route(scheme="udp", target=TARGET, max_sessions=50, udp_timeout=30)
    kernel = kernel_route(spec, CTX, route_id=1)
    assert (kernel.protocol, kernel.max_connections, kernel.udp_timeout) == ("udp", 50, 30)
    assert kernel.idle_timeout is None


def test_healthy_members_and_a_picked_port() -> None:
    pool = (_member("172.24.0.2", name="a"), _member("172.24.0.3", name="b"))
    spec = route(port=None, target=TARGET, pool=pool, load_balance="ip_hash")
    kernel = kernel_route(spec, CTX, route_id=2, members=pool[1:], listen_port=40000)
    assert kernel.members == (Upstream("172.24.0.3", 7, "id-b"),)
    assert (kernel.balance, kernel.listen_port) == ("ip_hash", 40000)
    assert kernel_route(spec, CTX, 2, members=(), listen_port=40000).members == ()
    with pytest.raises(ValueError, match="no listen port"):
        kernel_route(spec, CTX, route_id=2)


def test_the_table_carries_the_global_acl_and_proxy_protocol_peers() -> None:
    kernel = kernel_route(route(target=TARGET), CTX, route_id=1)
    socket = Socket("udp", "192.0.2.2", 53)
    table = kernel_table([kernel], CTX, [socket])
    assert table.routes == (kernel,)
    assert (table.allow, table.deny) == (("198.18.0.0/15",), ())
    assert table.userspace_sources == ("198.18.0.9",)
    assert table.userspace_sockets == (socket,)
