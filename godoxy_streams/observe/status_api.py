"""The status API (aiohttp): ``/healthz``, ``/api/routes`` (paged on request), a route's
``/api/routes/{id}/history``, ``/api/events``, ``/metrics`` and the page.

Plain JSON from a ``Snapshot`` taken per request; it never changes anything and never sees a
live object of the daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from godoxy_streams.observe.auth import require_token
from godoxy_streams.observe.metrics import Metrics
from godoxy_streams.observe.page import add_ui
from godoxy_streams.observe.routes_api import (
    BadQuery,
    RouteQuery,
    events_document,
    history_document,
    routes_document,
)
from godoxy_streams.snapshot import Snapshot

SnapshotSource = Callable[[], Snapshot]


def build_app(
    snapshot: SnapshotSource,
    metrics: Metrics | None = None,
    token: str | None = None,
    refresh: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """The status API over ``snapshot``, which is called once per request; ``refresh`` is
    awaited before routes or metrics are read (figures read from the kernel, cached)."""

    async def refreshed() -> Snapshot:
        if refresh is not None:
            await refresh()
        return snapshot()

    async def healthz(_: web.Request) -> web.Response:
        taken = snapshot()
        return web.json_response(taken.health_document(), status=200 if taken.ready else 503)

    async def api_routes(request: web.Request) -> web.Response:
        try:
            query = RouteQuery.parse(request.query)
        except BadQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(routes_document(await refreshed(), query))

    async def api_history(request: web.Request) -> web.Response:
        route_id = request.match_info["id"]
        found = history_document(snapshot(), route_id)
        if found is None:
            error = f"no running route has the id {route_id[:100]!r}"
            return web.json_response({"error": error}, status=404)
        return web.json_response(found)

    async def api_events(request: web.Request) -> web.Response:
        try:
            return web.json_response(events_document(snapshot(), request.query))
        except BadQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def prometheus(_: web.Request) -> web.Response:
        assert metrics is not None
        if refresh is not None:
            await refresh()
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    middlewares = [require_token(token)] if token else []
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/routes", api_routes)
    app.router.add_get("/api/routes/{id}/history", api_history)
    app.router.add_get("/api/events", api_events)
    if metrics is not None:
        app.router.add_get("/metrics", prometheus)
    add_ui(app)
    return app
