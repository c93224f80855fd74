"""What the kernel table holds for the routes the daemon serves now, and each route's path with
its reason. Pure; no I/O: the controller feeds it the running routes (with the members that may
take new flows and the port each is bound to) and the host's facts, and applies the result.

The operator's settings become the ``FastPathContext`` here (``fast_path_context``). Access
logs: a line per connection is a userspace feature, and ``log.access_log`` is on by default.
Only an operator who *set* ``log.access_log: true`` (and logs at INFO or below, where the lines
are written) keeps every route in userspace for its lines; with the default, connections the
kernel forwards are not in the access log (the daemon never sees them) while those the
userspace listener serves still are. Turning ``fast_path`` on is the operator's choice of
speed; an explicit ``access_log: true`` is their choice of a line per connection, and wins.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from godoxy_streams.model import Member, RouteKey, RouteSpec
from godoxy_streams.settings import Settings

from .eligible import KERNEL_REASON, FastPathContext, kernel_eligible, kernel_route, kernel_table
from .routes import KernelRoute, KernelTable, Socket

Path = Literal["kernel", "userspace"]
LOGGED_LEVELS = ("TRACE", "DEBUG", "INFO")  # where access lines are written (at INFO)
WAITING = "waiting for the kernel table to be applied (the userspace listener serves)"


@dataclass(frozen=True)
class Served:
    """One route the userspace engine has bound: its key and spec, the port it is bound to,
    the members that may take new flows now, and its stable route id."""

    key: RouteKey
    spec: RouteSpec
    port: int
    healthy: tuple[Member, ...]
    route_id: int


@dataclass(frozen=True)
class Decision:
    """Which path serves a route's clients from other hosts, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class TablePlan:
    """The table to apply, every served route's decision, and the key of each route id in
    the table (to name the routes the kernel refuses)."""

    table: KernelTable
    decisions: dict[RouteKey, Decision]
    keys: dict[int, RouteKey]


def fast_path_context(
    settings: Settings, agent_engines: Iterable[str], return_networks: Iterable[str]
) -> FastPathContext:
    """The daemon's side of every route's eligibility (see the module doc on access logs)."""
    log, limits = settings.log, settings.limits
    return FastPathContext(
        access_log=log.access_log_asked and log.level in LOGGED_LEVELS,
        agent_engines=frozenset(agent_engines),
        return_networks=tuple(return_networks),
        acl_allow=settings.acl.allow,
        acl_deny=settings.acl.deny,
        proxy_protocol_trusted=settings.proxy_protocol_trusted,
        per_source_connections=limits.per_source_connections,
        per_source_rate=limits.per_source_rate,
        per_source_burst=limits.per_source_burst,
    )


def _kernel_route(
    served: Served, ctx: FastPathContext, default_max_connections: int | None
) -> KernelRoute:
    route = kernel_route(served.spec, ctx, served.route_id, served.healthy, served.port)
    if route.protocol == "tcp" and route.max_connections is None and default_max_connections:
        route = replace(route, max_connections=default_max_connections)
    return route


def _userspace_socket(served: Served) -> Socket | None:
    """The socket of a userspace route with a specific IPv4 bind (a kernel wildcard route on
    its port must leave it alone), else None."""
    try:
        bind = ipaddress.ip_address(served.spec.bind)
    except ValueError:
        return None
    if bind.version != 4 or bind.is_unspecified:
        return None
    return Socket(served.spec.proto, str(bind), served.port)


def plan_table(
    routes: Iterable[Served], ctx: FastPathContext, default_max_connections: int | None = None
) -> TablePlan:
    """The table for ``routes`` and why each route takes its path. A route the renderer's
    vocabulary refuses (a value nft cannot express) stays in userspace with that reason."""
    kernel: list[KernelRoute] = []
    userspace: list[Socket] = []
    decisions: dict[RouteKey, Decision] = {}
    keys: dict[int, RouteKey] = {}
    for served in routes:
        ok, reason = kernel_eligible(served.spec, ctx)
        if ok:
            try:
                kernel.append(_kernel_route(served, ctx, default_max_connections))
            except ValueError as e:
                ok, reason = False, f"not expressible as kernel rules: {e}"
        if ok:
            keys[served.route_id] = served.key
            decisions[served.key] = Decision("kernel", KERNEL_REASON)
            continue
        decisions[served.key] = Decision("userspace", reason)
        if (socket := _userspace_socket(served)) is not None:
            userspace.append(socket)
    return TablePlan(kernel_table(kernel, ctx, userspace), decisions, keys)


def refused(plan: TablePlan, errors: dict[int, str]) -> TablePlan:
    """``plan`` after the kernel refused the rules of the routes in ``errors`` (route id ->
    nft's message): those fall back to userspace with the error as their reason."""
    decisions = dict(plan.decisions)
    for route_id, error in errors.items():
        key = plan.keys.get(route_id)
        if key is not None:
            decisions[key] = Decision("userspace", f"nftables refused the route's rules: {error}")
    kept = tuple(r for r in plan.table.routes if r.route_id not in errors)
    keys = {rid: key for rid, key in plan.keys.items() if rid not in errors}
    return TablePlan(replace(plan.table, routes=kept), decisions, keys)
