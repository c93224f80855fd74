"""The simulated engine's HTTP face (see bench/fake_engine.py): routes Engine API paths, with or
without ``/v1.NN``, to the engine's state, streams ``/events``, and serves the benchmark's
``/_bench/*`` control requests. Unknown requests get Docker's 404 shape and are counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bench.fake_engine import (
    API_VERSION,
    INSPECT_PATH,
    VERSIONED,
    FakeEngine,
    event_matches,
    parse_filters,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PING_HEADERS = {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux"}
ENGINE: web.AppKey[FakeEngine] = web.AppKey("engine", FakeEngine)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


def _not_found(message: str) -> web.Response:
    return _json({"message": message}, 404)


async def ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="OK", headers=PING_HEADERS)


async def version(request: web.Request) -> web.StreamResponse:
    return _json(
        {
            "Version": "20.10.24",
            "ApiVersion": API_VERSION,
            "MinAPIVersion": "1.12",
            "GitCommit": "bench",
            "GoVersion": "go1.19",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": os.uname().release,
            "Components": [{"Name": "Engine", "Version": "20.10.24", "Details": {}}],
        }
    )


async def info(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    stats = engine.stats()
    return _json(
        {
            "ID": "BENCH:FAKE:ENGINE",
            "Name": "fake-engine",
            "Containers": stats["containers"],
            "ContainersRunning": stats["running"],
            "ServerVersion": "20.10.24",
            "OperatingSystem": "simulated",
            "NCPU": os.cpu_count() or 1,
            "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False, "NodeAddr": ""},
        }
    )


async def containers(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    all_ = request.query.get("all", "") in ("1", "true", "True")
    body = engine.list_body(parse_filters(request.query.get("filters")), all_)
    return web.Response(body=body, content_type="application/json")


async def inspect(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    match = INSPECT_PATH.match(VERSIONED.sub("", request.path, count=1))
    ref = match.group(1) if match else ""
    box = engine.find(ref)
    await engine.note_inspect(ref, box)
    if box is None:
        return _not_found(f"No such container: {ref}")
    return _json(box.inspect_doc())


async def events(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    filters = parse_filters(request.query.get("filters"))
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    since = request.query.get("since")
    if since:
        cutoff = int(float(since) * 1_000_000_000)
        for stamp, event, old in engine.history:
            if stamp >= cutoff and event_matches(filters, event):
                queue.put_nowait(old)
    engine.streams[queue] = filters
    engine.subscriptions += 1
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    try:
        await response.prepare(request)
        while True:
            line = await queue.get()
            if line is None:
                break
            await response.write(line)
    finally:
        engine.streams.pop(queue, None)
    return response


# -- control ---------------------------------------------------------------------------------
async def bench_add(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await request.json()
    added = []
    for _ in range(int(body.get("count", 1))):
        box, started = engine.add(labelled=bool(body.get("labelled", True)))
        added.append({"id": box.id, "name": box.name, "port": box.port, "start_ns": started})
    return _json({"containers": added})


async def bench_remove(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await request.json()
    done = {}
    for ref in body.get("ids", []):
        box = engine.find(str(ref))
        if box is not None:
            done[box.id] = engine.remove(box)
    return _json({"kill_ns": done})


async def bench_wait_inspected(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    body = await request.json()
    ids = [str(i) for i in body.get("ids", [])]
    deadline = float(body.get("timeout", 30.0))
    try:
        async with engine.inspected:
            await asyncio.wait_for(
                engine.inspected.wait_for(lambda: engine.inspected_after_event(ids)), deadline
            )
        ok = True
    except TimeoutError:
        ok = False
    return _json({"ok": ok, "inspect_ns": {i: engine.last_inspect.get(i, 0) for i in ids}})


async def bench_drop(request: web.Request) -> web.StreamResponse:
    return _json({"dropped": request.app[ENGINE].drop_streams(), "t_ns": time.time_ns()})


async def bench_stats(request: web.Request) -> web.StreamResponse:
    return _json(request.app[ENGINE].stats())


GET_ROUTES: dict[str, tuple[str, Handler]] = {
    "/_ping": ("ping", ping),
    "/version": ("version", version),
    "/info": ("info", info),
    "/containers/json": ("list", containers),
    "/events": ("events", events),
    "/_bench/stats": ("control", bench_stats),
}
POST_ROUTES: dict[str, Handler] = {
    "/_bench/add": bench_add,
    "/_bench/remove": bench_remove,
    "/_bench/wait-inspected": bench_wait_inspected,
    "/_bench/drop-streams": bench_drop,
}


async def dispatch(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    path = VERSIONED.sub("", request.path, count=1)
    handler: Handler | None = None
    kind = ""
    if request.method in ("GET", "HEAD"):
        kind, handler = GET_ROUTES.get(path, ("", None))
        if handler is None and INSPECT_PATH.match(path):
            kind, handler = "inspect", inspect
    elif request.method == "POST" and path in POST_ROUTES:
        kind, handler = "control", POST_ROUTES[path]
    if handler is None:
        engine.unknown[f"{request.method} {path}"] += 1
        return _not_found(f"page not found: {request.method} {path}")
    engine.requests[kind] += 1
    return await handler(request)


def build_app(engine: FakeEngine) -> web.Application:
    app = web.Application()
    app[ENGINE] = engine
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def start(engine: FakeEngine, path: Path) -> web.AppRunner:
    """Serve ``engine`` on the unix socket ``path`` (replaced if present) until the runner is
    cleaned up."""
    path.unlink(missing_ok=True)
    runner = web.AppRunner(build_app(engine), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


async def stop(engine: FakeEngine, runner: web.AppRunner) -> None:
    engine.drop_streams()
    await runner.cleanup()


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def serve_forever(engine: FakeEngine, path: Path, *, accept_targets: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then remove the socket. With ``accept_targets``, also
    accept (and close at once) TCP connections to the containers' port on every local
    address: only where the fake range is local (the benchmark's own network namespace)."""
    runner = await start(engine, path)
    if accept_targets:
        await asyncio.start_server(_close_at_once, "0.0.0.0", engine.target_port)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await stop(engine, runner)
        with contextlib.suppress(OSError):
            path.unlink()
