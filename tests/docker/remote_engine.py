"""A stand-in for a second Docker host: an HTTP proxy on loopback (``tcp://``, optionally TLS
with client certificates) in front of this machine's Docker socket, which presents the labels
of namespace ``remote_ns`` as namespace ``ns`` and hides the ``ns`` labels. Containers labelled
with ``remote_ns`` thus look, to a daemon reading ``ns``, like containers of another engine
only, while the machine's own engine does not route them."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from typing import Any

import aiohttp
from aiohttp import web

DOCKER_SOCKET = "/var/run/docker.sock"
REWRITTEN = re.compile(r"^(/v[\d.]+)?/containers/(json|[^/]+/json)$")


class RemoteEngine:
    def __init__(self, ns: str, remote_ns: str, ssl_context: ssl.SSLContext | None = None):
        self.ns, self.remote_ns = ns, remote_ns
        self.ssl_context = ssl_context
        self.port = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> RemoteEngine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(DOCKER_SOCKET))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()  # ends the event streams being relayed
        for transport in self._transports:
            transport.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for _ in range(3):  # let the closed transports run their connection_lost
            await asyncio.sleep(0)

    def _relabel(self, labels: dict[str, str] | None) -> dict[str, str]:
        own, theirs = f"{self.ns}.", f"{self.remote_ns}."
        out = {}
        for key, value in (labels or {}).items():
            if key.startswith(own):
                continue
            out[own + key[len(theirs) :] if key.startswith(theirs) else key] = value
        return out

    def _rewrite(self, doc: Any) -> Any:
        if isinstance(doc, list):  # /containers/json
            for entry in doc:
                entry["Labels"] = self._relabel(entry.get("Labels"))
        elif isinstance(doc, dict) and isinstance(doc.get("Config"), dict):  # inspect
            doc["Config"]["Labels"] = self._relabel(doc["Config"].get("Labels"))
        return doc

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.transport is not None:
            self._transports.add(request.transport)
        assert self._session is not None
        url = f"http://docker{request.rel_url}"
        body = await request.read()
        async with self._session.request(
            request.method, url, data=body or None, timeout=aiohttp.ClientTimeout(total=None)
        ) as upstream:
            if REWRITTEN.match(request.path) and upstream.status == 200:
                doc = self._rewrite(await upstream.json())
                return web.Response(body=json.dumps(doc).encode(), content_type="application/json")
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionError, aiohttp.ClientError):
                pass  # the daemon went away, or the proxy is stopping
            return response
