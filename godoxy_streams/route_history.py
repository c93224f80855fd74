"""A route's recent past as the read model shows it: counters per sampling interval (the last
10 minutes at 5 s by default) and each pool member's state at every sample.

The runtime samples the streams' counters into rings (``runtime.sampler``) and copies one
route's rings into a ``RouteHistory`` when asked; ``verdict`` says whether the route is
failing (every new connection of the last minute failed to reach an upstream). Plain frozen
data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# Per interval: connections/sessions opened, bytes each way, failed upstream dials,
# refusals (ACL, limits, pre_dial hooks, bad PROXY headers, full UDP tables) and turn-aways
# for want of a healthy member; ``active`` is the open count at the sample.
SERIES: tuple[str, ...] = (
    "opened",
    "active",
    "bytes_in",
    "bytes_out",
    "dial_errors",
    "refused",
    "no_upstream",
)
COUNTERS = tuple(name for name in SERIES if name != "active")

# A member's state at each sample, one letter each; "-" while it was not a member.
STATE_LETTERS: Mapping[str, str] = {
    "healthy": "h",
    "starting": "s",
    "unhealthy": "u",
    "down": "d",
    "failing": "f",
    "sleeping": "z",  # its container sleeps (sleep/wake); a client wakes it
}
NOT_A_MEMBER = "-"
RECENT = 12  # samples the verdict looks at (a minute at 5 s)

Verdict = Literal["ok", "errors", "failing"]


@dataclass(frozen=True, slots=True)
class MemberTrack:
    """One pool member's state over the samples (``STATE_LETTERS``, oldest first)."""

    key: str
    container: str
    states: str

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "container": self.container, "states": self.states}


@dataclass(frozen=True, slots=True)
class RouteHistory:
    """``series[name][i]`` is sample ``i``, oldest first; the newest was taken at ``end``
    (epoch seconds) and samples are ``interval`` seconds apart."""

    interval: float
    end: float
    series: Mapping[str, Sequence[int]]
    members: tuple[MemberTrack, ...] = ()

    @property
    def samples(self) -> int:
        return len(self.series.get("active", ()))

    def failures(self, last: int | None = None) -> tuple[int, int]:
        """(failed connections, opened connections) over the newest ``last`` samples (all
        by default): dial errors plus turn-aways for want of a healthy member."""
        start = -last if last else 0
        failed = sum(self.series["dial_errors"][start:]) + sum(self.series["no_upstream"][start:])
        return failed, sum(self.series["opened"][start:])

    def verdict(self) -> Verdict:
        """``failing``: connections came in over the last ``RECENT`` samples and as many
        failed; ``errors``: some failed within the history; else ``ok``."""
        failed, opened = self.failures(RECENT)
        if failed and failed >= opened:
            return "failing"
        return "errors" if self.failures()[0] else "ok"

    def as_json(self) -> dict[str, object]:
        return {
            "interval": self.interval,
            "end": self.end,
            "samples": self.samples,
            "series": {name: list(values) for name, values in self.series.items()},
            "members": [m.as_json() for m in self.members],
            "verdict": self.verdict(),
            "failures": self.failures()[0],
        }
