"""The connections of a shared TLS socket that wait for their ClientHello: the caps that
keep one client from holding them all (in all, and per source), and the hello timeout,
kept for all of them with one timer (``deadlines.Deadlines``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from godoxy_streams.streams.deadlines import Deadlines
from godoxy_streams.streams.tls.routing import PendingHello


class PendingHellos:
    """See the module docstring. A connection whose hello timeout passed leaves, then is
    told (``timed_out``). ``loop`` is set when the socket starts serving."""

    __slots__ = ("max_pending", "max_per_source", "deadlines", "by_source")

    def __init__(self, timeout: float, max_pending: int, max_per_source: int) -> None:
        self.max_pending = max_pending
        self.max_per_source = max_per_source
        self.deadlines: Deadlines[PendingHello] = Deadlines(timeout, self._expired)
        self.by_source: dict[str, int] = {}  # waiting connections per source key

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.deadlines.loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.deadlines.loop = loop

    def __len__(self) -> int:
        return len(self.deadlines)

    def __iter__(self) -> Iterator[PendingHello]:
        return iter(self.deadlines)

    def enter(self, reader: PendingHello, source: str) -> str | None:
        """``reader`` starts waiting, counted under ``source``; or why the caps refuse it."""
        deadlines = self.deadlines
        if len(deadlines) >= self.max_pending:
            return "too many ClientHellos being read"
        by_source = self.by_source
        held = by_source.get(source, 0)
        if held >= self.max_per_source:
            return f"{held} ClientHellos being read from {source}"
        by_source[source] = held + 1
        reader.source = source
        deadlines.add(reader)
        return None

    def leave(self, reader: PendingHello) -> None:
        """``reader`` no longer waits (a no-op when it was not waiting)."""
        if self.deadlines.discard(reader):
            self._uncount(reader)

    def close(self) -> list[PendingHello]:
        """Stop the timer; the connections still waiting, for the caller to drop."""
        return self.deadlines.close()

    def _expired(self, reader: PendingHello) -> None:
        self._uncount(reader)
        reader.timed_out()

    def _uncount(self, reader: PendingHello) -> None:
        source = reader.source
        reader.source = None
        by_source = self.by_source
        left = by_source[source] - 1  # type: ignore[index]
        if left:
            by_source[source] = left  # type: ignore[index]
        else:
            del by_source[source]  # type: ignore[arg-type]
