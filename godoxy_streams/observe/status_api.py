"""The status API (aiohttp): ``/healthz`` and ``/api/routes``, read-only views of the daemon.

Builds plain JSON from the reconciler's last pass and the manager's running streams; it never
changes anything.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from godoxy_streams.observe.metrics import Metrics
from godoxy_streams.observe.page import add_ui
from godoxy_streams.reconcile.reconciler import ContainerEntry, Reconciler
from godoxy_streams.sources.watcher import SourceState

SourceList = Callable[[], Sequence[SourceState]]


def route_rows(reconciler: Reconciler) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    manager = reconciler.manager
    for route in manager.running.values():
        stats = route.stream.stats
        row = route.spec.public_dict()
        pool = route.stream.pool
        if pool is not None:
            row["members"] = pool.view()
            if len(pool.members) == 1 and not route.stream.balancing:
                # a lone healthy member is served by the plain relay, which counts per route
                row["members"][0].update(active=stats.active, total=stats.total)
        row.update(
            listen_port=route.bound_port,
            state="running" if route.healthy else "unhealthy",
            error=None if route.healthy else "no healthy upstream",
            active=stats.active,
            bytes_in=stats.bytes_in,
            bytes_out=stats.bytes_out,
        )
        rows.append(row)
    idle = {"listen_port": None, "active": 0, "bytes_in": 0, "bytes_out": 0}
    for spec, message in manager.failed.values():
        rows.append({**spec.public_dict(), **idle, "state": "error", "error": message})
    for conflict in reconciler.last.conflicts:
        rows.append(
            {**conflict.route.public_dict(), **idle, "state": "conflict", "error": conflict.message}
        )
    return rows


def _container_reason(entry: ContainerEntry, reconciler: Reconciler) -> tuple[bool, str]:
    info, result = entry.info, entry.result
    if info.id in reconciler.own_ids:
        return False, "godoxy-streams itself"
    if result.excluded:
        return False, "excluded (proxy.exclude)"
    if not info.running:
        return False, f"not running ({info.state})"
    mine = [
        r
        for r in reconciler.manager.running.values()
        if any(m.origin.id == info.id for m in r.spec.members)
    ]
    if result.errors and not result.routes:
        return False, "invalid label: " + "; ".join(e.message for e in result.errors)
    conflicted = [c for c in reconciler.last.conflicts if c.route.origin.id == info.id]
    if conflicted and not mine:
        return False, "conflict: " + conflicted[0].message
    if not result.routes and not result.errors:
        return False, "no stream routes in its labels"
    parts = [f"{len(mine)} route(s) running"]
    if result.errors:
        parts.append(f"{len(result.errors)} invalid")
    if conflicted:
        parts.append(f"{len(conflicted)} in conflict")
    return bool(mine), ", ".join(parts)


def container_rows(reconciler: Reconciler) -> list[dict[str, Any]]:
    rows = []
    for entry in reconciler.containers.values():
        if not entry.result.labelled:
            continue
        exposed, reason = _container_reason(entry, reconciler)
        rows.append(
            {
                "name": entry.info.name,
                "id": entry.info.id[:12],
                "engine": entry.info.engine,
                "state": entry.info.state,
                "exposed": exposed,
                "reason": reason,
            }
        )
    return sorted(rows, key=lambda r: str(r["name"]))


def routes_document(reconciler: Reconciler) -> dict[str, Any]:
    return {
        "routes": route_rows(reconciler),
        "errors": [error.as_dict() for error in reconciler.label_errors()],
        "containers": container_rows(reconciler),
    }


def _bearer(token: str) -> Any:
    """Every request must carry ``Authorization: Bearer <token>``, except ``/healthz``
    (container health checks)."""
    expected = f"Bearer {token}"

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if request.path != "/healthz" and not hmac.compare_digest(given, expected):
            return web.json_response({"error": "a bearer token is required"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    return check


def build_app(
    reconciler: Reconciler,
    sources: SourceList,
    static_synced: Callable[[], bool],
    metrics: Metrics | None = None,
    token: str | None = None,
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        states = list(sources())
        ready = static_synced() and all(s.synced for s in states) and reconciler.passes > 0
        body: dict[str, object] = {
            "status": "ok" if ready else "starting",
            "sources": [s.as_json() for s in states],
            "routes_running": len(reconciler.manager.running),
            "last_sync": reconciler.last.finished_at or None,
        }
        flows = {
            engine: tunnel.datagrams.view()
            for engine, tunnel in reconciler.manager.tunnels.items()
            if tunnel.datagrams is not None
        }
        if flows:
            body["agent_flows"] = flows
        return web.json_response(body, status=200 if ready else 503)

    async def api_routes(_: web.Request) -> web.Response:
        return web.json_response(routes_document(reconciler))

    async def prometheus(_: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    middlewares = [_bearer(token)] if token else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/routes", api_routes)
    if metrics is not None:
        app.router.add_get("/metrics", prometheus)
    add_ui(app)
    return app
