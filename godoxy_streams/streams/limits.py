"""Per-source admission limits: token-bucket rates and concurrency caps, keyed by client IP,
in bounded memory. Callers pass a monotonic ``now``; nothing here reads a clock. No I/O.

Table-full policy of ``PerSourceLimiter``: a newcomer is never refused because the table is
full. It takes the place of the least recently used bucket that has refilled (a full bucket
holds no state: forgetting it is exact), else of the least recently used bucket outright,
which gives that source a fresh burst. So a flood of spoofed sources can at worst reset
other sources' buckets (the limiter fails open for them, and ``lossy_evictions`` counts it),
never lock real clients out. Caps on total connections belong elsewhere.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

DEFAULT_MAX_SOURCES = 10_000
EVICTION_SCAN = 8  # how many least recently used buckets are checked for a refilled one


def source_key(ip: str, *, v6_prefix: int = 64) -> str:
    """The key a client counts under: IPv4 (IPv4-mapped IPv6 unmapped) as is, IPv6 by its
    ``/v6_prefix`` network (one host usually holds a whole /64). Unparsable: ``ip`` itself."""
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((address, v6_prefix), strict=False))
        address = address.ipv4_mapped
    return str(address)


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each admission takes one."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int, *, now: float | None = None) -> None:
        if not rate > 0:  # NaN too
            raise ValueError(f"rate must be positive, not {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now  # a clock that steps back refills nothing

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens at time ``now`` if there are that many."""
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def tokens(self, now: float) -> float:
        """The tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (it is then as good as a new one)."""
        return self.tokens(now) >= self.burst


class PerSourceLimiter:
    """One ``TokenBucket`` per source IP, at most ``max_sources`` of them (see the module
    docstring for what happens when the table is full)."""

    def __init__(self, rate: float, burst: int, *, max_sources: int = DEFAULT_MAX_SOURCES) -> None:
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, not {max_sources}")
        TokenBucket(rate, burst)  # validates rate and burst
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self.lossy_evictions = 0
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, source: object) -> bool:
        return source in self._buckets

    def take(self, source: str, now: float) -> bool:
        """Whether ``source`` may open a connection (or UDP session) at ``now``."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._evict_one(now)
            bucket = self._buckets[source] = TokenBucket(self.rate, self.burst, now=now)
        else:
            self._buckets.move_to_end(source)
        return bucket.take(now)

    def _evict_one(self, now: float) -> None:
        for scanned, (source, bucket) in enumerate(self._buckets.items()):
            if scanned >= EVICTION_SCAN:
                break
            if bucket.full(now):
                del self._buckets[source]
                return
        self._buckets.popitem(last=False)
        self.lossy_evictions += 1

    def prune(self, now: float, limit: int | None = None) -> int:
        """Forget refilled buckets, least recently used first, stopping at the first one that
        is not refilled (or after ``limit``); returns how many were forgotten. Exact: a
        forgotten source starts again from a full bucket."""
        dropped = 0
        while self._buckets and (limit is None or dropped < limit):
            source, bucket = next(iter(self._buckets.items()))
            if not bucket.full(now):
                break
            del self._buckets[source]
            dropped += 1
        return dropped


class ConcurrencyCounter:
    """Open connections (or sessions) per source, each source capped at ``cap``.

    Memory is bounded by the open connections themselves: a source is forgotten when its
    count drops back to zero.
    """

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, not {cap}")
        self.cap = cap
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, source: str) -> int:
        return self._counts.get(source, 0)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def acquire(self, source: str) -> bool:
        """Count one more for ``source`` unless it is at the cap."""
        current = self._counts.get(source, 0)
        if current >= self.cap:
            return False
        self._counts[source] = current + 1
        return True

    def release(self, source: str) -> None:
        """Count one less for ``source``; releasing more than was acquired is a bug."""
        current = self._counts.get(source, 0)
        if current <= 0:
            raise ValueError(f"release of {source!r} without a matching acquire")
        if current == 1:
            del self._counts[source]
        else:
            self._counts[source] = current - 1
