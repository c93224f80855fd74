"""Where the agent may lead: the destinations that the host's running, labelled containers
publish, by protocol, read from the engine (and reused for ``ALLOWED_TTL`` seconds); or a
fixed set (``FixedDestinations``: an agent whose destinations are not containers, as the
benchmark's backend)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from godoxy_streams.labels import ParseContext, parse_container
from godoxy_streams.sources.docker import DockerSource

ALLOWED_TTL = 1.0  # seconds a computed allow-list is reused before the engine is asked again


class Destinations:
    """The (protocol, host, port) triples the host's running, labelled containers publish: the
    only places a tunnel or a flow may lead. Recomputed from the engine at most every
    ``ALLOWED_TTL`` seconds, and once more before a refusal (a container may have just
    started)."""

    def __init__(self, engine: str, namespace: str) -> None:
        self.engine = engine
        self.ctx = ParseContext(namespace=namespace)
        self.allowed: frozenset[tuple[str, str, int]] = frozenset()
        self._at = 0.0
        self._refreshing = asyncio.Lock()

    async def refresh(self) -> None:
        started = time.monotonic()
        source = DockerSource(self.engine)
        try:
            await source.connect()
            infos = await source.list_containers()
        finally:
            await source.close()
        found: set[tuple[str, str, int]] = set()
        for info in infos:
            if info.running:
                routes = parse_container(info, self.ctx).routes
                found.update((route.proto, *route.target) for route in routes)
        self.allowed, self._at = frozenset(found), started

    async def permits(self, proto: str, host: str, port: int) -> bool:
        asked = time.monotonic()
        wanted = (proto, host, port)
        if asked - self._at > ALLOWED_TTL or wanted not in self.allowed:
            async with self._refreshing:  # one refresh serves everyone who waited for it
                if self._at < asked:
                    await self.refresh()
        return wanted in self.allowed


class FixedDestinations(Destinations):
    """A fixed allow-list of (protocol, host, port); the engine is never asked."""

    def __init__(self, allowed: Iterable[tuple[str, str, int]]) -> None:
        super().__init__("unix:///nonexistent.sock", "proxy")
        self.allowed = frozenset(allowed)
        self._at = time.monotonic()

    async def refresh(self) -> None:
        self._at = time.monotonic()  # nothing to ask: the set never changes
