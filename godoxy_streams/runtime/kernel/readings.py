"""The kernel path's figures for the read model: each route's named counters (from nftables)
and open flows (from conntrack), read at most once per ``MAX_AGE`` seconds however many
observers ask, and kept when a reading fails.

The status API awaits ``refresh`` before it takes a snapshot (an ``nft`` and a ``conntrack``
run, a few milliseconds); the snapshot itself reads the cached values synchronously.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from loguru import logger

from godoxy_streams.snapshot import Counters, RouteView

from .conntrack import active_by_route
from .nft import KernelError
from .path import KernelPath
from .routes import RouteCounters

MAX_AGE = 1.0


class Readings:
    """Cached counters and open-flow counts per route id."""

    def __init__(self, path: KernelPath, max_age: float = MAX_AGE) -> None:
        self._path = path
        self._max_age = max_age
        self.counters: dict[int, RouteCounters] = {}
        self.active: dict[int, int] = {}
        self._taken = float("-inf")
        self._lock = asyncio.Lock()
        self._failing: str | None = None

    def fresh(self) -> bool:
        return time.monotonic() - self._taken < self._max_age

    async def refresh(self) -> None:
        """Read both again unless the last reading is younger than ``max_age``."""
        if self.fresh():
            return
        async with self._lock:
            if self.fresh():
                return  # another observer read them while this one waited
            try:
                counters = await self._path.counters()
                active = active_by_route(await self._path.flows())
            except KernelError as e:
                if str(e) != self._failing:
                    logger.warning(f"fast path: cannot read counters or flows: {e}")
                self._failing = str(e)
            else:
                self.counters, self.active, self._failing = counters, active, None
            self._taken = time.monotonic()

    def clear(self) -> None:
        self.counters, self.active = {}, {}
        self._taken = float("-inf")


def kernel_counters(counters: RouteCounters | None, active: int) -> Counters:
    """A kernel route's figures as ``Counters``: flows admitted and refused (by its ACL or a
    limit: one nftables counter), open flows, whole IP packets' bytes each way."""
    c = counters or RouteCounters()
    return Counters(
        active=active,
        total=c.connections,
        bytes_in=c.bytes_in,
        bytes_out=c.bytes_out,
        refused=c.refused,
    )


def with_path(view: RouteView, path: str, reason: str, kernel: Counters | None) -> RouteView:
    """``view`` with the path its clients from other hosts take, why, and (kernel routes) the
    kernel's counters beside the userspace listener's."""
    return replace(view, path=path, path_reason=reason, kernel=kernel)
