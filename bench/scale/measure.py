"""Small instruments shared by the simulated and the real scale runs: a time budget, listener
probes that do not disturb the daemon, percentiles, the machine's load average."""

from __future__ import annotations

import os
import socket
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


class OverBudget(Exception):
    """The run for one size used up its time budget; what was measured so far is kept."""


def measured(n: int, steps: Sequence[Callable[[], None]], close: Callable[[], None],
             res: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Run one size's ``steps`` in order into ``res``; an over-budget step or a failure ends
    the run with its reason in ``res["status"]``, keeping what was measured; ``close`` always
    runs. The load average is noted before and after."""
    res.update(n=n, status="ok", load=[loadavg()])
    try:
        for step in steps:
            step()
    except OverBudget as exc:
        res["status"] = str(exc)
    except Exception as exc:  # reported with what was measured
        res["status"] = f"error: {type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        try:
            close()
        except Exception as exc:  # a failed clean-up must not lose the figures
            traceback.print_exc()
            res.setdefault("notes", []).append(f"clean-up failed: {type(exc).__name__}: {exc}")
        res["load"].append(loadavg())
    return res


class Budget:
    """A wall-clock deadline for one size's run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise OverBudget(f"over budget ({self.seconds / 60:g} min) during {what}")

    def timeout(self, cap: float) -> float:
        """The smaller of ``cap`` and what is left (at least a little)."""
        return max(0.1, min(cap, self.left()))


def accepts(port: int) -> bool:
    """A TCP connect to the port succeeds (a closed port costs the daemon nothing: the
    kernel answers with a reset)."""
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
        return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Nothing listens on the port: we can bind it (with SO_REUSEADDR, so connections in
    TIME_WAIT do not count). Never used for a port the daemon is about to bind (the probe
    holds it for a moment), only to see a listener go away; costs the daemon nothing."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
            return True
        except OSError:
            return False


def poll_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.0005
) -> int | None:
    """Poll until true; the wall-clock time (ns) at which it first held, None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.time_ns()
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: Sequence[float]) -> dict[str, float]:
    """mean, p50, p99 and max of a sample (empty: {})."""
    if not values:
        return {}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": pct(values, 0.5),
        "p99": pct(values, 0.99),
        "max": max(values),
    }


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def cpu_ns(pid: int) -> int:
    """CPU time (ns) of every thread of the process, from /proc/PID/task/*/schedstat
    (nanosecond resolution, where /proc/PID/stat counts 10 ms clock ticks)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def wait_quiet(pid: int, quiet: float, timeout: float) -> bool:
    """Until the process used no CPU for ``quiet`` seconds (an idle event loop sleeps)."""
    deadline = time.monotonic() + timeout
    last, since = cpu_ns(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(0.01, quiet / 4))
        now = cpu_ns(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False
