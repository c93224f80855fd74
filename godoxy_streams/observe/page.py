"""The status page: serves ``static/index.html`` at ``GET /``.

One self-contained HTML file (inline CSS and JS) that polls ``/api/routes`` and ``/healthz``
from the browser; this module only hands it out, read once from the package data.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

PAGE = "index.html"


@cache
def page() -> bytes:
    """The page's bytes, read from the installed package once."""
    return (resources.files("godoxy_streams.observe") / "static" / PAGE).read_bytes()


async def index(_: web.Request) -> web.Response:
    return web.Response(
        body=page(),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def add_ui(app: web.Application) -> None:
    """Register ``GET /`` (the status page) on `app`."""
    app.router.add_get("/", index)
