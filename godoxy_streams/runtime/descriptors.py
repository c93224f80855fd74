"""The daemon's file descriptors, planned per plane: the open-files limit (raised to its hard
limit at start), what the daemon keeps for its own work and for the status API, and the
rest, which is the data plane's ``DescriptorBudget``; plus how many are open now.

Without a plan the daemon would run with whatever soft limit it was given (often 1,024) and
one plane could take every descriptor: idle API connections would shut out every route.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from dataclasses import dataclass

from loguru import logger

from godoxy_streams.budget_views import DescriptorView
from godoxy_streams.streams.budget import DescriptorBudget

RESERVED = 64  # the daemon's own: event loop, logs, engine connections, probes, tunnels
DATA_MIN = 16  # the data plane's budget is never smaller than this
FD_DIR = "/proc/self/fd"


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as HAProxy and nginx do), saying so;
    the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning(f"open-files limit left at {soft}: cannot raise it to {target}: {exc}")
        else:
            logger.info(f"open-files limit raised from {soft} to {target} (the hard limit)")
    return nofile()


def nofile() -> int:
    """The soft RLIMIT_NOFILE in force."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_descriptors() -> int:
    """How many descriptors the process has open now (-1 where that cannot be read)."""
    try:
        return len(os.listdir(FD_DIR)) - 1  # the listing's own descriptor
    except OSError:
        return -1


class OpenCount:
    """The count of open descriptors for the read model, taken off the event loop: listing
    ``/proc/self/fd`` costs about 4 ms per thousand descriptors, too long to hold the loop
    with many open. ``get`` answers at once with the last count and, when that is older than
    ``MAX_AGE``, starts a new one in a worker thread (one at a time)."""

    MAX_AGE = 1.0

    def __init__(self) -> None:
        self.value = open_descriptors()
        self.taken = time.monotonic()
        self.counting: asyncio.Future[int] | None = None

    def get(self) -> int:
        if self.counting is None and time.monotonic() - self.taken >= self.MAX_AGE:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._taken(open_descriptors())
            else:
                self.counting = loop.run_in_executor(None, open_descriptors)
                self.counting.add_done_callback(self._done)
        return self.value

    def _done(self, counting: asyncio.Future[int]) -> None:
        self.counting = None
        if not counting.cancelled() and counting.exception() is None:
            self._taken(counting.result())

    def _taken(self, value: int) -> None:
        self.value, self.taken = value, time.monotonic()


@dataclass(frozen=True, slots=True)
class DescriptorPlan:
    """How ``limit`` descriptors are split between the daemon's planes."""

    limit: int
    api_cap: int  # status API connections (its listener is one more)

    @property
    def api(self) -> int:
        return self.api_cap + 1

    @property
    def data(self) -> int:
        """The data plane's budget: what the daemon and the API do not keep."""
        return max(DATA_MIN, self.limit - RESERVED - self.api)

    def describe(self) -> str:
        return (
            f"descriptor budget: {self.limit} open files (RLIMIT_NOFILE): {RESERVED} for the "
            f"daemon's own work, {self.api} for the status API ({self.api_cap} connections), "
            f"{self.data} for the routes (a TCP connection takes 2, a UDP session 1)"
        )


def descriptor_view(
    plan: DescriptorPlan, budget: DescriptorBudget, count: OpenCount
) -> DescriptorView:
    """The figures of ``/healthz`` and the metrics: the budget as of now, the open
    descriptors as of ``count``'s last count (at most a second or so old)."""
    return DescriptorView(
        limit=plan.limit,
        open=count.get(),
        budget=budget.total,
        used=tuple(budget.used().items()),
        guaranteed_per_route=budget.guaranteed,
        reserved_per_protocol=budget.reserved,
        refused=budget.refusals,
    )
