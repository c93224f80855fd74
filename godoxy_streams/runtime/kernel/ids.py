"""Route ids of the kernel path: one per running route (by its listen socket), stable for the
route's life, and reserved after it stops until its flows are drained or killed.

An id is the low half of the conntrack mark of every flow the route forwards, so a stopped
route's id must not serve a new route while its old flows still carry it: the new route's
counters and ``kill`` would take them for its own. A route that comes back on the same socket
while its old flows drain gets a new id. Ids count from 1 and the lowest free one is reused.
No I/O.
"""

from __future__ import annotations

import heapq

from godoxy_streams.model import RouteKey

from .routes import MAX_ROUTE_ID


class IdsExhausted(RuntimeError):
    """Every route id is held by a running or draining route."""


class RouteIds:
    """Which route id each running route holds, and which ids are still reserved."""

    def __init__(self, limit: int = MAX_ROUTE_ID) -> None:
        self._limit = limit
        self._by_key: dict[RouteKey, int] = {}
        self._free: list[int] = []  # released ids below _next, a heap
        self._next = 1
        self.reserved: set[int] = set()  # retired, not yet released

    def get(self, key: RouteKey) -> int | None:
        return self._by_key.get(key)

    def assign(self, key: RouteKey) -> int:
        """The id of ``key``: the one it holds, or the lowest free one."""
        held = self._by_key.get(key)
        if held is not None:
            return held
        if self._free:
            new = heapq.heappop(self._free)
        elif self._next <= self._limit:
            new, self._next = self._next, self._next + 1
        else:
            raise IdsExhausted(f"all {self._limit} kernel route ids are in use")
        self._by_key[key] = new
        return new

    def retire(self, key: RouteKey) -> int | None:
        """``key`` stopped: its id stays reserved until ``release``; the id, if it had one."""
        held = self._by_key.pop(key, None)
        if held is not None:
            self.reserved.add(held)
        return held

    def release(self, route_id: int) -> None:
        """A retired id's flows are gone: it may serve a new route."""
        if route_id in self.reserved:
            self.reserved.discard(route_id)
            heapq.heappush(self._free, route_id)

    def __len__(self) -> int:
        return len(self._by_key)
