"""The runtime's part of the read model: each running or failed route as a ``RouteView``,
read from its stream's counters and pool when first asked, and each shared TLS socket's
counters (no live object leaves)."""

from __future__ import annotations

import time
from functools import partial

from godoxy_streams.model import RouteSpec
from godoxy_streams.snapshot import (
    SNI_OUTCOMES,
    Counters,
    LiveState,
    MemberView,
    RouteState,
    RouteView,
    SNISocketView,
)
from godoxy_streams.streams.pool import Pool
from godoxy_streams.streams.stats import StreamStats
from godoxy_streams.streams.tls.listener import SNIListener


def counters_of(stats: StreamStats) -> Counters:
    return Counters(
        active=stats.active,
        total=stats.total,
        bytes_in=stats.bytes_in,
        bytes_out=stats.bytes_out,
        dial_errors=tuple(sorted(stats.dial_errors.items())),
        refused=stats.refused,
        denied=stats.denied,
        limited=stats.limited,
        proxy_errors=stats.proxy_errors,
        sessions_refused=stats.sessions_refused,
        evicted=stats.evicted,
        dropped=stats.dropped,
        no_upstream=stats.no_upstream,
    )


def members_of(
    pool: Pool, now: float, counted: StreamStats | None = None
) -> tuple[MemberView, ...]:
    """The members' views; ``counted``: the route's counters stand for a lone member's."""
    return tuple(
        MemberView(
            key=m.key,
            host=m.address[0],
            port=m.address[1],
            container=m.name,
            state=m.state(now),
            available=m.available(now),
            docker_health=m.docker_health,
            active=m.active if counted is None else counted.active,
            total=m.total if counted is None else counted.total,
            failures=m.failures,
            last_error=m.probe_error or m.last_error,
        )
        for m in pool.members
    )


def live_state(stats: StreamStats, pool: Pool | None, balancing: bool) -> LiveState:
    """A bound route's counters and members, read now."""
    if pool is None:
        return LiveState(counters_of(stats))
    # a lone healthy member is served by the plain relay, which counts per route
    lone = len(pool.members) == 1 and not balancing
    return LiveState(
        counters_of(stats), members_of(pool, time.monotonic(), stats if lone else None)
    )


def running_view(
    spec: RouteSpec,
    bound_port: int,
    stats: StreamStats,
    pool: Pool | None,
    balancing: bool,
    notice: str | None = None,
    route_id: str = "",
) -> RouteView:
    """A bound route: ``running`` while some member may take connections, else ``sleeping``
    when a member sleeps (a client wakes it), else ``unhealthy``; its counters and members
    are read when first asked."""
    healthy = pool is None or pool.any_available()
    sleeping = not healthy and pool is not None and any(m.sleeping for m in pool.members)
    state: RouteState = "running" if healthy else "sleeping" if sleeping else "unhealthy"
    return RouteView(
        spec=spec,
        state=state,
        error=None if healthy or sleeping else "no healthy upstream",
        listen_port=bound_port,
        live=partial(live_state, stats, pool, balancing),
        notice=notice,
        socket_id=route_id,
    )


def failed_view(spec: RouteSpec, message: str) -> RouteView:
    """A route whose listener could not be bound."""
    return RouteView(spec=spec, state="error", error=message)


def sni_socket_view(socket: str, routes: int, listener: SNIListener) -> SNISocketView:
    """A shared TLS socket's counters."""
    stats = listener.stats
    return SNISocketView(
        socket=socket,
        routes=routes,
        accepted=stats.accepted,
        outcomes=tuple((name, getattr(stats, name)) for name in SNI_OUTCOMES),
        handshakes=stats.handshakes,
        handshake_failed=stats.handshake_failed,
    )
