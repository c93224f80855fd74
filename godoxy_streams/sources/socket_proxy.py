"""The read-only Docker socket filter (``godoxy-streams socket-proxy``); with
``--allow-lifecycle``, also the start/stop/pause/unpause/kill calls sleep/wake needs, for the
containers under sleep/wake control only (``lifecycle_filter``).

Serves a unix socket and forwards to the engine only the reads the daemon needs: ``GET`` or
``HEAD`` of ``/_ping``, ``/version``, ``/info``, ``/containers/json``, ``/containers/{id}/json``,
``/events``, and Swarm's ``/services``, ``/tasks`` and ``/nodes`` lists, each optionally behind
an API version (``/v1.41/...``). Every other request is answered 403 here and never reaches the
engine. Answers pass through with their status, headers and body (``/events`` streamed chunk by
chunk), except that environment variables are removed from container inspect answers
(``Config.Env``) and from service and task lists (``ContainerSpec.Env``): no container's
environment leaves the engine through the filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from loguru import logger
from yarl import URL

from godoxy_streams.errors import ConfigError
from godoxy_streams.sources.lifecycle_filter import forward_lifecycle, lifecycle_call

DEFAULT_LISTEN = Path("/run/godoxy/docker.sock")
DEFAULT_ENGINE = "/var/run/docker.sock"
DEFAULT_MODE = 0o660

ALLOWED_METHODS = frozenset({"GET", "HEAD"})
_PATH = re.compile(
    r"(?:/v[0-9]{1,2}\.[0-9]{1,3})?"  # optional API version
    r"(?:/_ping|/version|/info|/events|/containers/json|/nodes"
    r"|(?P<inspect>/containers/[A-Za-z0-9][A-Za-z0-9_.-]{0,254}/json|/services|/tasks))"
)
_QUERY = re.compile(r'[!"$-~]*')  # printable ASCII without space or "#", forwarded verbatim

MAX_LINE = 8190  # request line and each header line (bytes)
MAX_HEADERS = 64
MAX_INSPECT_BYTES = 16 << 20  # an inspect answer larger than this is refused, not truncated
FORWARDED_HEADERS = ("Accept", "User-Agent")  # nothing else of the client's request goes on
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Trailers", "Transfer-Encoding", "Upgrade", "Content-Length",
    )
)  # fmt: skip
CONNECT_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 2.0
UPSTREAM = "http://docker"  # host part is irrelevant on a unix socket


def allowed(method: str, raw_target: str) -> tuple[bool, bool]:
    """(forward it?, is it a container inspect?) for a request line's method and raw target."""
    path, _, query = raw_target.partition("?")
    match = _PATH.fullmatch(path)
    if method not in ALLOWED_METHODS or match is None or not _QUERY.fullmatch(query):
        return False, False
    return True, match.group("inspect") is not None


def _drop_env(node: Any) -> None:
    """Remove ``Env`` from every ``Config`` and ``ContainerSpec`` object, at any depth (a
    service's ``Spec`` and ``PreviousSpec``, a task's ``Spec``, a container's ``Config``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("Config", "ContainerSpec") and isinstance(value, dict):
                value.pop("Env", None)
            _drop_env(value)
    elif isinstance(node, list):
        for item in node:
            _drop_env(item)


def strip_env(body: bytes) -> bytes:
    """A container inspect answer, or a service or task list, without environment variables
    (``Config.Env``, ``ContainerSpec.Env`` wherever they appear); raises ``ValueError`` when
    it is not JSON."""
    doc: Any = json.loads(body)
    _drop_env(doc)
    return json.dumps(doc, separators=(",", ":")).encode()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": f"socket-proxy: {message}"}, status=status)


def _passthrough_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}


async def _read_bounded(upstream: aiohttp.ClientResponse, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class SocketProxy:
    """The filter's request handler and its one client session to the engine."""

    def __init__(self, engine: str, lifecycle: str | None = None) -> None:
        """``lifecycle``: the label namespace whose sleep/wake containers may be started and
        stopped through the filter (None: read-only)."""
        self.engine = engine.removeprefix("unix://")
        self.lifecycle = lifecycle
        self._session: aiohttp.ClientSession | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.engine),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                auto_decompress=False,
            )
        return self._session

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = request.raw_path
        ok, inspect = allowed(request.method, target)
        call = lifecycle_call(request.method, target) if self.lifecycle is not None else None
        if call is not None and self.lifecycle is not None and not request.body_exists:
            try:
                return await forward_lifecycle(self.session, call, self.lifecycle)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                logger.warning("engine at {} failed: {}", self.engine, exc)
                return _error(502, f"the Docker engine did not answer: {exc or type(exc).__name__}")
        if not ok:
            logger.warning("denied {} {}", request.method, target[:200])
            return _error(403, f"{request.method} {target[:200]} is not allowed (read-only)")
        if request.body_exists:
            logger.warning("denied {} {}: a request body", request.method, target[:200])
            return _error(400, "a read-only request carries no body")
        logger.debug("{} {}", request.method, target)
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        url = URL(UPSTREAM + target, encoded=True)
        try:
            async with self.session.request(
                request.method, url, headers=headers, allow_redirects=False
            ) as upstream:
                if inspect:
                    return await self._inspect(request, upstream)
                return await self._stream(request, upstream)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.warning("engine at {} failed: {}", self.engine, exc)
            return _error(502, f"the Docker engine did not answer: {exc or type(exc).__name__}")

    async def _inspect(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        headers = _passthrough_headers(upstream)
        if request.method == "HEAD":
            return web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
        body = await _read_bounded(upstream, MAX_INSPECT_BYTES)
        if body is None:
            return _error(502, f"the inspect answer exceeds {MAX_INSPECT_BYTES} bytes")
        if upstream.status == 200:
            try:
                body = strip_env(body)
            except ValueError:  # never pass on what could not be cleaned
                return _error(502, "the engine's inspect answer is not JSON")
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=body
        )

    async def _stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=_passthrough_headers(upstream)
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            await response.prepare(request)  # headers leave now: /events clients wait on them
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
        finally:
            if task is not None:
                self._streams.discard(task)
        return response

    async def on_shutdown(self, _app: web.Application) -> None:
        """End every open stream (``/events``) so shutdown does not wait on them."""
        for task in list(self._streams):
            task.cancel()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _bind_unix(path: Path, mode: int) -> socket.socket:
    """A listening unix socket at ``path`` with file mode ``mode`` from the first moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket of a process that is gone
        else:
            raise ConfigError(f"{path}: another process is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen at {path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _check_engine(proxy: SocketProxy) -> None:
    try:
        async with proxy.session.get(UPSTREAM + "/_ping") as response:
            await response.read()
            logger.info("engine at {} answers /_ping with {}", proxy.engine, response.status)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        hint = ""
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
            exc.os_error, PermissionError
        ):
            hint = " (give this process the socket's group, e.g. compose group_add: DOCKER_GID)"
        logger.warning("the engine at {} does not answer yet: {}{}", proxy.engine, exc, hint)


async def serve(
    listen: Path, engine: str, mode: int = DEFAULT_MODE, lifecycle: str | None = None
) -> None:
    """Serve the filter at ``listen`` until SIGTERM or SIGINT, then close and remove it;
    ``lifecycle``: the namespace whose sleep/wake containers may be started and stopped."""
    proxy = SocketProxy(engine, lifecycle)
    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    app.on_shutdown.append(proxy.on_shutdown)
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,  # a client leaving /events closes the engine's stream
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        max_line_size=MAX_LINE,
        max_field_size=MAX_LINE,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock: socket.socket | None = None
    try:
        sock = _bind_unix(listen, mode)
        await web.SockSite(runner, sock, shutdown_timeout=SHUTDOWN_TIMEOUT).start()
        what = "read-only" if lifecycle is None else f"read-only + sleep/wake of {lifecycle}.*"
        logger.info("socket-proxy: {} (mode {:04o}) -> {}, {}", listen, mode, proxy.engine, what)
        await _check_engine(proxy)
        await stop.wait()
        logger.info("socket-proxy: stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await proxy.close()
        if sock is not None:
            with contextlib.suppress(FileNotFoundError):
                listen.unlink()


def run_socket_proxy(
    listen: Path, engine: str, mode: int = DEFAULT_MODE, lifecycle: str | None = None
) -> int:
    asyncio.run(serve(listen, engine, mode, lifecycle))
    return 0
