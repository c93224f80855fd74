"""The Docker engine edge: list, inspect and follow events through aiodocker, and the
container lifecycle sleep/wake needs (start, stop, pause, unpause, kill).

The only module that talks to the engine and the only one that sees aiodocker or aiohttp
errors: each is translated into ``EngineError``/``EngineUnavailable`` here. Containers leave
as ``ContainerInfo``; events leave as ``EngineEvent``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from godoxy_streams.containers import ContainerInfo, from_inspect, from_list_entry
from godoxy_streams.errors import EngineError, EngineUnavailable
from godoxy_streams.sources.swarm import tasks_as_containers

CONTAINER_ACTIONS = (
    "start", "die", "stop", "kill", "destroy", "pause", "unpause", "rename", "health_status",
)  # fmt: skip
NETWORK_ACTIONS = ("connect", "disconnect")
SWARM_ACTIONS = ("create", "update", "remove")  # of services and nodes
SWARM_TASK = "com.docker.swarm.service.id"  # the label of a Swarm task's container
QUERY_TIMEOUT = 15.0
STOP_POLL = 0.2  # seconds between looks while a container stops on its own signal
ENGINE_ERRORS = (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class EngineEvent:
    """One engine event that may change a container's routes."""

    kind: str  # "container", "network", "service" or "node"
    action: str  # e.g. "start", "health_status: healthy", "connect"
    container_id: str  # the service's or node's id for those kinds
    swarm: bool = False  # may change Swarm services' routes
    signal: str = ""  # of a "kill" event: the signal sent


def _translate(exc: BaseException, what: str) -> EngineError:
    if isinstance(exc, aiodocker.DockerError) and exc.status != 900:
        return EngineError(f"{what}: the engine answered {exc.status}: {exc.message}")
    detail = exc.message if isinstance(exc, aiodocker.DockerError) else str(exc)
    return EngineUnavailable(f"{what}: {detail or type(exc).__name__}")


class DockerSource:
    """One Docker engine, reached at ``endpoint`` (``unix://...`` or ``tcp://...``)."""

    def __init__(
        self, endpoint: str, *, engine: str = "local", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self.ssl_context = ssl_context
        self._client: aiodocker.Docker | None = None

    async def connect(self) -> dict[str, Any]:
        """Open a client and ask the engine its version; raises ``EngineUnavailable``."""
        await self.close()
        try:
            self._client = aiodocker.Docker(url=self.endpoint, ssl_context=self.ssl_context)
            version: dict[str, Any] = await asyncio.wait_for(self._client.version(), QUERY_TIMEOUT)
        except (
            aiodocker.DockerError,
            aiohttp.ClientError,
            OSError,
            TimeoutError,
            ValueError,
        ) as exc:
            await self.close()
            raise _translate(exc, f"cannot reach the Docker engine at {self.endpoint}") from exc
        return version

    @property
    def client(self) -> aiodocker.Docker:
        if self._client is None:
            raise EngineUnavailable("not connected to the Docker engine")
        return self._client

    async def list_containers(self) -> list[ContainerInfo]:
        """Every container (running or not), from one list call."""
        try:
            entries = await asyncio.wait_for(self.client.containers.list(all=True), QUERY_TIMEOUT)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _translate(exc, "listing containers failed") from exc
        return [from_list_entry(entry._container, engine=self.engine) for entry in entries]

    async def agent_capabilities(self) -> dict[str, bool]:
        """An agent's ``/agent/capabilities`` (e.g. ``{"tcp": true, "udp": false}``)."""
        client = self.client
        try:
            async with client.session.get(
                f"{client.docker_host}/agent/capabilities",
                timeout=aiohttp.ClientTimeout(total=QUERY_TIMEOUT),
            ) as response:
                response.raise_for_status()
                body = await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise _translate(exc, "asking the agent its capabilities failed") from exc
        return {str(k): bool(v) for k, v in (body or {}).items()}

    async def swarm_tasks(self, namespace: str) -> list[ContainerInfo] | None:
        """The running tasks of labelled services when this engine is a Swarm manager (see
        ``swarm``), else None."""
        client = self.client
        try:
            info = await asyncio.wait_for(client.system.info(), QUERY_TIMEOUT)
            swarm = info.get("Swarm") or {}
            if not swarm.get("ControlAvailable"):
                return None
            services, tasks, nodes = await asyncio.wait_for(
                asyncio.gather(
                    client.services.list(),
                    client.tasks.list(filters={"desired-state": "running"}),
                    client.nodes.list(),
                ),
                QUERY_TIMEOUT,
            )
        except aiodocker.DockerError as exc:
            if exc.status in (403, 404):  # a filter that allows none of it
                return None
            raise _translate(exc, "listing Swarm services failed") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _translate(exc, "listing Swarm services failed") from exc
        return tasks_as_containers(
            services,
            tasks,
            nodes,
            engine=self.engine + ":swarm",
            namespace=namespace,
            fallback_address=str(swarm.get("NodeAddr") or "127.0.0.1"),
        )

    async def connected(self) -> aiodocker.Docker:
        """The client, connecting first when there is none (a source used for the lifecycle
        connects on first use, and again after a failure)."""
        if self._client is None:
            await self.connect()
        return self.client

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        """One container's facts, or None when it no longer exists."""
        client = await self.connected()
        try:
            found = await asyncio.wait_for(client.containers.get(container_id), QUERY_TIMEOUT)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise _translate(exc, f"inspecting container {container_id[:12]} failed") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _translate(exc, f"inspecting container {container_id[:12]} failed") from exc
        return from_inspect(found._container, engine=self.engine)

    # -- the lifecycle (sleep/wake; needs an engine or filter that allows it) -------------------
    async def _lifecycle(
        self, what: str, container_id: str, timeout: float = QUERY_TIMEOUT, **params: Any
    ) -> None:
        box = (await self.connected()).containers.container(container_id)
        try:
            await asyncio.wait_for(getattr(box, what)(**params), timeout)
        except ENGINE_ERRORS as exc:
            error = _translate(exc, f"{what} of container {container_id[:12]} failed")
            if isinstance(error, EngineUnavailable):
                await self.close()  # the next call connects again
            raise error from exc

    async def start(self, container_id: str) -> None:
        await self._lifecycle("start", container_id)

    async def stop(self, container_id: str, timeout: float, signal: str | None = None) -> None:
        """Stop: ``signal`` (the image's stop signal when None), then SIGKILL after
        ``timeout`` seconds (also on engines whose stop call cannot name a signal)."""
        if signal is None:
            wait = max(1, math.ceil(timeout))
            await self._lifecycle("stop", container_id, timeout + QUERY_TIMEOUT, t=wait)
            return
        await self._lifecycle("kill", container_id, signal=signal)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            info = await self.inspect(container_id)
            if info is None or not info.running:
                return
            await asyncio.sleep(STOP_POLL)
        await self.kill(container_id, "SIGKILL")

    async def pause(self, container_id: str) -> None:
        await self._lifecycle("pause", container_id)

    async def unpause(self, container_id: str) -> None:
        await self._lifecycle("unpause", container_id)

    async def kill(self, container_id: str, signal: str | None = None) -> None:
        """Send ``signal`` (SIGKILL when None)."""
        await self._lifecycle("kill", container_id, signal=signal)

    async def events(self, since: float | None = None) -> AsyncIterator[EngineEvent]:
        """Follow the engine's events (filtered on the engine's side), replaying those since
        ``since`` (seconds since the epoch); when the stream ends, raise ``EngineUnavailable``."""
        filters = {
            "type": ["container", "network", "service", "node"],
            "event": list(CONTAINER_ACTIONS + NETWORK_ACTIONS + SWARM_ACTIONS),
        }
        events = self.client.events
        params = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = str(int(since))
        subscriber = events.subscribe(**params)  # type: ignore[no-untyped-call]
        task = events.task
        try:
            while True:
                raw = await subscriber.get()
                if raw is None:
                    break
                event = _event_of(raw)
                if event is not None:
                    yield event
        finally:
            try:
                await events.stop()  # type: ignore[no-untyped-call]
            except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError):
                pass  # the stream's own failure is reported below
        reason = "the event stream ended"
        if task is not None and task.done() and not task.cancelled() and task.exception():
            reason = f"the event stream failed: {task.exception()}"
        raise EngineUnavailable(reason)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.events.stop()  # type: ignore[no-untyped-call]
                await client.close()
            except (aiohttp.ClientError, OSError, RuntimeError):
                pass


def _event_of(raw: dict[str, Any]) -> EngineEvent | None:
    kind = str(raw.get("Type") or "")
    action = str(raw.get("Action") or raw.get("status") or "")
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    if kind in ("service", "node"):
        return EngineEvent(kind, action, str(actor.get("ID") or ""), swarm=True)
    if kind == "container":
        cid = str(actor.get("ID") or raw.get("id") or "")
    elif kind == "network":
        cid = str(attributes.get("container") or "")
    else:
        return None
    if not cid:
        return None
    signal = str(attributes.get("signal") or "") if action == "kill" else ""
    return EngineEvent(kind, action, cid, swarm=SWARM_TASK in attributes, signal=signal)


_CONTAINER_ID = re.compile(r"(?:docker[-/]|/containers/)([0-9a-f]{64})")


def own_container_id(proc: Path = Path("/proc/self")) -> str | None:
    """The id of the container this process runs in, if any (from cgroup or mount info)."""
    for name in ("cgroup", "mountinfo"):
        try:
            text = (proc / name).read_text()
        except OSError:
            continue
        match = _CONTAINER_ID.search(text)
        if match:
            return match.group(1)
    return None
