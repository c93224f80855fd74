"""The data plane's descriptor budget, split so that no protocol, route or flood takes it all.

Units are file descriptors: a proxied TCP connection holds two (client and upstream), a UDP
session one (its upstream socket), a listener one (taken when its stream claims a share).
The daemon sizes ``total`` from its open-files limit, less what the status API and its own
work keep. Each stream (one route on one protocol) holds a ``Share``; ``take`` and ``give``
are synchronous and O(1), no I/O.

The split is checked when something is taken, never by taking anything back:

- every share is guaranteed ``guaranteed`` descriptors (``total / 4``, divided among the
  shares): what another share has not used of its guarantee is never taken from it;
- every protocol in use (TCP, UDP) is guaranteed ``reserved`` descriptors in all (``total /
  4``; its shares' guarantees count towards it, or exceed it when they add up to more);
- the rest is shared, first come, first served.

So a flood of UDP sources on one route can take the shared part and its own guarantee, and
a TCP client of another route still finds that route's guarantee and TCP's reserve free.
A take is allowed when, with it, everything used plus what the other protocols and the
other shares of the same protocol still keep for themselves fits in ``total``.
"""

from __future__ import annotations

from collections.abc import Mapping

COST = {"tcp": 2, "udp": 1}  # descriptors of one connection / one session
PROTOCOLS = ("tcp", "udp")
OTHER = {"tcp": "udp", "udp": "tcp"}


class Share:
    """One stream's part of a ``DescriptorBudget`` (see the module docstring)."""

    __slots__ = ("budget", "proto", "cost", "used", "closed")

    def __init__(self, budget: DescriptorBudget, proto: str) -> None:
        self.budget = budget
        self.proto = proto
        self.cost = COST[proto]  # descriptors of one connection or session
        self.used = 0
        self.closed = False

    def take(self, count: int = 1) -> bool:
        """Take ``count`` connections' or sessions' descriptors if the split allows it."""
        return self.budget.take(self, count * self.cost)

    def take_checked(self) -> None:
        """Take one connection's or session's descriptors right after ``room()`` said yes
        (nothing ran in between: the check is not repeated)."""
        self.budget.add(self, self.cost)

    def give(self, count: int = 1) -> None:
        """Give back what ``take(count)`` took (nothing once the share is closed)."""
        if not self.closed:
            self.budget.give(self, count * self.cost)

    def room(self) -> bool:
        """Whether one more connection or session would be allowed now: at once while the
        share is within its guarantee (which the split never takes from it), else by the
        whole rule."""
        if self.closed:
            return False
        budget = self.budget
        return self.used + self.cost <= budget.guaranteed or budget.allows(self, self.cost)

    def refuse(self) -> None:
        """Count a connection or session turned away because ``room()`` said no."""
        self.budget.refusals += 1

    def close(self) -> None:
        """The stream is gone: its listener and whatever it still counts are given back."""
        if not self.closed:
            self.closed = True
            self.budget.leave(self)


class DescriptorBudget:
    """Descriptors of the data plane, shared by every stream; see the module docstring.

    ``add`` runs for every connection and ``allows`` for those beyond their share's
    guarantee: a few integers kept up to date, no loop over shares. A share coming or going
    changes every share's guarantee; the recount then walks only the busy shares (those with
    a connection or session open): an idle share uses exactly its listener's descriptor, so
    the idle ones are counted, not walked, and starting ten thousand routes stays linear."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"the budget must be at least 1 descriptor, not {total}")
        self.total = total
        self.reserved = total // 4  # per protocol in use
        self.guaranteed = 0  # per share, set as shares come and go
        self.in_use = 0
        self.refusals = 0
        self._shares: dict[str, set[Share]] = {p: set() for p in PROTOCOLS}
        self._busy: dict[str, set[Share]] = {p: set() for p in PROTOCOLS}  # used > 1
        self._used: dict[str, int] = dict.fromkeys(PROTOCOLS, 0)
        self._unused_guarantees: dict[str, int] = dict.fromkeys(PROTOCOLS, 0)

    def claim(self, proto: str) -> Share:
        """A new stream's share; its listener's descriptor counts at once."""
        share = Share(self, proto)
        share.used = 1
        self.in_use += 1
        self._used[proto] += 1
        self._shares[proto].add(share)
        self._regroup()
        return share

    def used(self) -> Mapping[str, int]:
        """Descriptors in use by protocol."""
        return dict(self._used)

    def allows(self, share: Share, cost: int) -> bool:
        if share.closed:
            return False
        proto = share.proto
        unused_own = self.guaranteed - share.used
        kept = self._unused_guarantees[proto] - (unused_own if unused_own > 0 else 0)
        other = OTHER[proto]  # what the other protocol keeps for itself
        if self._shares[other]:
            reserve = self.reserved - self._used[other]
            unused = self._unused_guarantees[other]
            kept += reserve if reserve > unused else unused
        return self.in_use + cost + kept <= self.total

    def take(self, share: Share, cost: int) -> bool:
        if not self.allows(share, cost):
            self.refusals += 1
            return False
        self.add(share, cost)
        return True

    def give(self, share: Share, cost: int) -> None:
        if share.closed:
            return  # given back with the share already
        if share.used - cost < 1:
            raise ValueError("give without a matching take")
        self.add(share, -cost)

    def leave(self, share: Share) -> None:
        proto = share.proto
        self.in_use -= share.used
        self._used[proto] -= share.used
        share.used = 0
        self._shares[proto].discard(share)
        self._busy[proto].discard(share)
        self._regroup()

    def add(self, share: Share, cost: int) -> None:
        """Count ``cost`` more (or, negative, fewer) descriptors in use by ``share``."""
        was = share.used
        used = share.used = was + cost
        self.in_use += cost
        proto = share.proto
        self._used[proto] += cost
        g = self.guaranteed
        if was < g or used < g:
            after = g - used if used < g else 0
            self._unused_guarantees[proto] += after - (g - was if was < g else 0)
        if was == 1:
            self._busy[proto].add(share)
        elif used == 1:
            self._busy[proto].discard(share)

    def _regroup(self) -> None:
        """A share came or went: the guarantee per share changes; recount what is unused
        (idle shares use 1 descriptor each: counted; busy ones walked)."""
        count = sum(len(shares) for shares in self._shares.values())
        g = self.guaranteed = self.total // (4 * count) if count else 0
        for proto, shares in self._shares.items():
            busy = self._busy[proto]
            idle = len(shares) - len(busy)
            unused = idle * (g - 1) if g > 1 else 0
            self._unused_guarantees[proto] = unused + sum(g - s.used for s in busy if s.used < g)
