"""Timeouts that all last the same time, kept with one timer for all of them.

A connection's dial timeout, or its wait for a ClientHello, lasts a fixed time from when it
starts (the stream's ``dial_timeout``, the socket's ``hello_timeout``), so the one that
started first is always the first to expire. ``Deadlines`` keeps them in that order (a
dict keeps it) with one event-loop timer set for the first deadline; when it fires, every
item past its deadline leaves and is told (``expire``), and the timer is set again for the
first one left. An item costs a dict entry, not a timer of the event loop (uvloop makes,
starts, stops and closes a libuv handle for each ``call_later``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")  # hashable: a dict key
EARLY = 0.002  # s: the loop may fire a timer this early (uvloop rounds to milliseconds)


class Deadlines(Generic[T]):
    """See the module docstring. ``loop`` is set when the owner starts (``prepare``,
    ``serve``)."""

    __slots__ = ("loop", "timeout", "expire", "waiting", "timer")

    def __init__(self, timeout: float, expire: Callable[[T], None]) -> None:
        self.loop: asyncio.AbstractEventLoop
        self.timeout = timeout
        self.expire = expire
        self.waiting: dict[T, float] = {}  # deadline, in the order they started
        self.timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self.waiting)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self.waiting))

    def add(self, item: T) -> None:
        """``item``'s time starts now (again, if it was waiting)."""
        waiting = self.waiting
        waiting.pop(item, None)  # a restart goes to the end: the order stays the deadlines'
        deadline = waiting[item] = self.loop.time() + self.timeout
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self.sweep)

    def discard(self, item: T) -> bool:
        """``item`` no longer waits; False when it was not waiting."""
        return self.waiting.pop(item, None) is not None

    def sweep(self) -> None:
        """The timer: expire every item past its deadline, then wait for the next."""
        self.timer = None
        now = self.loop.time() + EARLY  # due now, or so nearly that waiting would spin
        waiting = self.waiting
        while waiting:
            item, deadline = next(iter(waiting.items()))
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self.sweep)
                return
            del waiting[item]
            self.expire(item)

    def close(self) -> list[T]:
        """Stop the timer; the items still waiting (they stay, for the caller to end)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        return list(self.waiting)
