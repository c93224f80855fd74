"""The connections of a shared TLS socket that wait for their ClientHello: the caps that
keep one client from holding them all, and the hello timeout, kept with one timer for all.

Every connection waits at most ``timeout`` from the moment it starts waiting, so the one that
started first is always the first to expire. They wait in that order (a dict keeps it), and
one timer, set for the first one's deadline, expires everything past its deadline when it
fires and is set again for the first one left. A waiting connection costs a dict entry and
a count, not a timer of the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from godoxy_streams.streams.tls.routing import PendingHello


class PendingHellos:
    """See the module docstring. A connection whose hello timeout passed leaves, then is
    told (``timed_out``). ``loop`` is set when the socket starts serving."""

    __slots__ = (
        "loop",
        "timeout",
        "max_pending",
        "max_per_source",
        "waiting",
        "by_source",
        "timer",
    )

    def __init__(self, timeout: float, max_pending: int, max_per_source: int) -> None:
        self.loop: asyncio.AbstractEventLoop
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self.waiting: dict[PendingHello, float] = {}  # deadline, in the order they came
        self.by_source: dict[str, int] = {}  # waiting connections per source key
        self.timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.waiting)

    def __iter__(self) -> Iterator[PendingHello]:
        return iter(list(self.waiting))

    def enter(self, reader: PendingHello, source: str) -> str | None:
        """``reader`` starts waiting, counted under ``source``; or why the caps refuse it."""
        waiting = self.waiting
        if len(waiting) >= self.max_pending:
            return "too many ClientHellos being read"
        by_source = self.by_source
        held = by_source.get(source, 0)
        if held >= self.max_per_source:
            return f"{held} ClientHellos being read from {source}"
        by_source[source] = held + 1
        reader.source = source
        deadline = waiting[reader] = self.loop.time() + self.timeout
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self.sweep)
        return None

    def leave(self, reader: PendingHello) -> None:
        """``reader`` no longer waits (a no-op when it was not waiting)."""
        if self.waiting.pop(reader, None) is None:
            return
        source = reader.source
        reader.source = None
        by_source = self.by_source
        left = by_source[source] - 1  # type: ignore[index]
        if left:
            by_source[source] = left  # type: ignore[index]
        else:
            del by_source[source]  # type: ignore[arg-type]

    def sweep(self) -> None:
        """The timer: expire every connection past its deadline, then wait for the next."""
        self.timer = None
        now = self.loop.time()
        waiting = self.waiting
        while waiting:
            reader, deadline = next(iter(waiting.items()))
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self.sweep)
                return
            self.leave(reader)
            reader.timed_out()

    def close(self) -> list[PendingHello]:
        """Stop the timer; the connections still waiting, for the caller to drop."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return list(self.waiting)
