"""The daemon's file descriptors, planned per plane: the open-files limit (raised to its hard
limit at start), what the daemon keeps for its own work and for the status API, and the
rest, which is the data plane's ``DescriptorBudget``; plus how many are open now.

Without a plan the daemon would run with whatever soft limit it was given (often 1,024) and
one plane could take every descriptor: idle API connections would shut out every route.
"""

from __future__ import annotations

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
COUNT_EVERY = 1.0


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


_counted: tuple[float, int] = (float("-inf"), -1)  # (when, how many)


def open_descriptors() -> int:
    """How many descriptors the process has open (-1 where that cannot be read), counted
    at most once per ``COUNT_EVERY`` seconds (a listing of many is not free)."""
    global _counted
    now = time.monotonic()
    if now - _counted[0] >= COUNT_EVERY:
        try:
            _counted = (now, len(os.listdir(FD_DIR)) - 1)  # the listing's own descriptor
        except OSError:
            _counted = (now, -1)
    return _counted[1]


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


def descriptor_view(plan: DescriptorPlan, budget: DescriptorBudget) -> DescriptorView:
    """The figures of ``/healthz`` and the metrics, as of now."""
    return DescriptorView(
        limit=plan.limit,
        open=open_descriptors(),
        budget=budget.total,
        used=tuple(budget.used().items()),
        guaranteed_per_route=budget.guaranteed,
        reserved_per_protocol=budget.reserved,
        refused=budget.refusals,
    )
