"""Which routes the kernel path forwards, and what it becomes for them. Pure; no I/O.

The kernel path covers TCP and UDP routes on IPv4 with ACLs, ``max_connections`` /
``max_sessions``, the per-source limits, ``round_robin`` and ``ip_hash`` pools (health gating
re-renders without the member), ``udp_timeout`` and ``conn_idle_timeout``, drain and kill.
A route stays in userspace when it needs what only the engine does: a PROXY protocol header
out, an access log line per connection, a tunnel through an agent, a choice by TLS server
name (``sni``: a socket shared by name), ``least_conn`` (open connection counts per member),
a loopback bind (loopback traffic cannot be DNATed while ``route_localnet`` stays off), IPv6,
or a member whose replies would not come back through this host (only members on the local
Docker networks return through its NAT).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from godoxy_streams.model import Member, RouteSpec

from .routes import KernelRoute, KernelTable, Socket, Upstream

KERNEL_REASON = "nftables DNAT: the flows do not pass through the daemon"


@dataclass(frozen=True)
class FastPathContext:
    """What besides the route decides its path: the daemon's settings and its host.

    ``return_networks`` are the subnets whose hosts answer through this host (the local
    Docker bridge networks' subnets); ``proxy_protocol_trusted`` peers always reach the
    userspace listener (their PROXY header must be read)."""

    access_log: bool = True
    agent_engines: frozenset[str] = frozenset()
    return_networks: tuple[str, ...] = ()
    acl_allow: tuple[str, ...] = ()
    acl_deny: tuple[str, ...] = ()
    proxy_protocol_trusted: tuple[str, ...] = ()
    per_source_connections: int | None = None
    per_source_rate: float | None = None
    per_source_burst: int = 20


def _member_problem(member: Member, returns: list[ipaddress.IPv4Network]) -> str | None:
    try:
        address = ipaddress.ip_address(member.host)
    except ValueError:
        return f"target {member.host} is a name, not an address (DNAT needs an address)"
    if not isinstance(address, ipaddress.IPv4Address):
        return f"target {member.host} is IPv6 (the kernel path covers IPv4)"
    if address.is_loopback:
        return f"target {member.host} is a loopback address"
    if not any(address in net for net in returns):
        return (
            f"replies from target {member.host} would not come back through this host "
            "(not on a local Docker network)"
        )
    return None


def kernel_eligible(route: RouteSpec, ctx: FastPathContext) -> tuple[bool, str]:
    """Whether the kernel path can forward ``route``, and why (or why not)."""
    if route.sni:
        return False, "chosen by TLS server name: the engine reads each ClientHello"
    if route.proxy_protocol is not None:
        return False, "PROXY protocol out: the header is written by the userspace engine"
    if ctx.access_log:
        return False, "access log per connection (log.access_log) needs the userspace engine"
    if route.origin.engine in ctx.agent_engines:
        return False, "routes through an agent are tunnelled by the userspace engine"
    if route.balance == "least_conn":
        return False, "load_balance least_conn needs the userspace engine's connection counts"
    bind = ipaddress.ip_address(route.bind)
    if bind.is_loopback:
        return False, "loopback bind: loopback traffic cannot be DNATed (route_localnet is off)"
    if bind.version == 6 or route.scheme.endswith("6"):
        return False, "IPv6 route: the kernel path covers IPv4"
    returns = [
        net
        for net in (ipaddress.ip_network(n, strict=False) for n in ctx.return_networks)
        if isinstance(net, ipaddress.IPv4Network)
    ]
    for member in route.members:
        if (problem := _member_problem(member, returns)) is not None:
            return False, problem
    return True, KERNEL_REASON


def kernel_route(
    route: RouteSpec,
    ctx: FastPathContext,
    route_id: int,
    members: Iterable[Member] | None = None,
    listen_port: int | None = None,
) -> KernelRoute:
    """The KernelRoute of an eligible ``route``: ``members`` are the ones that may take new
    flows now (default: all; none leaves the route to the userspace listener), and
    ``listen_port`` the port bound when the route's own is picked automatically."""
    port = listen_port or route.listen_port
    if not port:
        raise ValueError(f"route {route.alias} has no listen port yet")
    upstreams = tuple(
        Upstream(m.host, m.port, m.origin.id or m.origin.name or f"{m.host}:{m.port}")
        for m in (route.members if members is None else members)
    )
    tcp = route.proto == "tcp"
    return KernelRoute(
        route_id=route_id,
        protocol=route.proto,
        bind="0.0.0.0" if ipaddress.ip_address(route.bind).is_unspecified else route.bind,
        listen_port=port,
        members=upstreams,
        balance="ip_hash" if route.balance == "ip_hash" else "round_robin",
        allow=route.acl_allow,
        deny=route.acl_deny,
        max_connections=route.max_connections if tcp else route.max_sessions,
        per_source_connections=ctx.per_source_connections,
        rate=ctx.per_source_rate,
        burst=ctx.per_source_burst,
        udp_timeout=None if tcp else route.udp_timeout,
        idle_timeout=route.conn_idle_timeout if tcp else None,
        name=f"{route.origin.name}/{route.alias}",
    )


def kernel_table(
    routes: Iterable[KernelRoute], ctx: FastPathContext, userspace: Iterable[Socket] = ()
) -> KernelTable:
    """The table for ``routes`` under the daemon's global ACL; ``userspace`` are the sockets
    with a specific bind that the userspace engine serves (a kernel wildcard route on the
    same port leaves them alone)."""
    return KernelTable(
        routes=tuple(routes),
        allow=ctx.acl_allow,
        deny=ctx.acl_deny,
        userspace_sources=ctx.proxy_protocol_trusted,
        userspace_sockets=tuple(userspace),
    )
