"""Builds the read model (``snapshot.Snapshot``) from the reconciler's state and the
manager's routes: routes with counters, conflicts, label errors, each labelled container
with the reason it is or is not exposed, the event timeline and the routes' history. Called
per request by the observers' provider; the costly parts are read when first asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from godoxy_streams.budget_views import ApiView
from godoxy_streams.reconcile.reconciler import ContainerEntry, Reconciler
from godoxy_streams.runtime.kernel.controller import KernelController
from godoxy_streams.snapshot import ContainerView, RouteView, Snapshot, SourceView


def container_reason(
    entry: ContainerEntry, reconciler: Reconciler, running: Mapping[str, int]
) -> tuple[bool, str]:
    """Whether a container is exposed and why (or why not); ``running`` counts the running
    routes each container id is a member of."""
    info, result = entry.info, entry.result
    if info.id in reconciler.own_ids:
        return False, "godoxy-streams itself"
    if result.excluded:
        return False, "excluded (proxy.exclude)"
    mine = running.get(info.id, 0)
    if not info.running and result.idle is not None and mine:
        return True, f"sleeping ({info.state}): {mine} route(s) wake it on connect"
    if not info.running:
        return False, f"not running ({info.state})"
    if result.errors and not result.routes:
        return False, "invalid label: " + "; ".join(e.message for e in result.errors)
    conflicted = [c for c in reconciler.last.conflicts if c.route.origin.id == info.id]
    if conflicted and not mine:
        return False, "conflict: " + conflicted[0].message
    if not result.routes and not result.errors:
        return False, "no stream routes in its labels"
    parts = [f"{mine} route(s) running"]
    if result.errors:
        parts.append(f"{len(result.errors)} invalid")
    if conflicted:
        parts.append(f"{len(conflicted)} in conflict")
    return bool(mine), ", ".join(parts)


def container_views(reconciler: Reconciler) -> tuple[ContainerView, ...]:
    entries = [e for e in reconciler.containers.values() if e.result.labelled]
    if not entries:
        return ()
    running: dict[str, int] = {}
    for route in reconciler.manager.running.values():
        spec = route.spec
        for cid in {m.origin.id for m in spec.pool} if spec.pool else (spec.origin.id,):
            running[cid] = running.get(cid, 0) + 1
    rows = []
    for entry in entries:
        exposed, reason = container_reason(entry, reconciler, running)
        info = entry.info
        rows.append(ContainerView(info.name, info.id, info.engine, info.state, exposed, reason))
    return tuple(sorted(rows, key=lambda r: r.name))


def route_views(
    reconciler: Reconciler, kernel: KernelController | None = None
) -> tuple[RouteView, ...]:
    """The running and failed routes (with their path, when the fast path runs), then those
    in conflict."""
    routes: list[RouteView] = reconciler.manager.route_views()
    if kernel is not None and kernel.enabled:
        routes = kernel.annotate(routes)
    routes += [
        RouteView(spec=c.route, state="conflict", error=c.message)
        for c in reconciler.last.conflicts
    ]
    return tuple(routes)


def build_snapshot(
    reconciler: Reconciler,
    sources: Sequence[SourceView],
    static_synced: bool,
    api: ApiView | None = None,
    kernel: KernelController | None = None,
) -> Snapshot:
    manager = reconciler.manager
    return Snapshot(
        routes_of=lambda: route_views(reconciler, kernel),
        bound=len(manager.running),
        errors=tuple(reconciler.label_errors()),
        containers_of=lambda: container_views(reconciler),
        sources=tuple(sources),
        static_synced=static_synced,
        passes=reconciler.passes,
        last_sync=reconciler.last.finished_at,
        agent_channels=manager.channel_views(),
        sni_sockets=tuple(manager.sni_views()),
        sleepers=reconciler.sleep.views() if reconciler.sleep is not None else (),
        timeline=manager.events.events(),
        history_of=manager.sampler.read,
        descriptors=manager.descriptor_view(),
        api=api,
        fast_path=kernel.health_view() if kernel is not None else {},
    )
