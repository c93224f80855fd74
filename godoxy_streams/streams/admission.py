"""Admission of new TCP connections and UDP sessions: a stream's access lists, connection
caps and per-source limits, and a rate-limited log of whom they turn away.

``Admission.build`` returns None when a stream checks nothing, so the plain path never calls
in here. Every check is synchronous (no task, no await): ``allowed`` then ``take`` once per
new connection or session, and ``release`` once when an admitted one ends.

Order: the access lists first (a denied client consumes nothing), then the caps (stream,
per source, daemon-wide, the stream's share of the descriptor budget; checked before anything
is taken), then the per-source rate (which takes a token), and only then are the concurrency
slots and descriptors taken. ``close`` gives the stream's share of the budget back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from godoxy_streams.streams.acl import Acl
from godoxy_streams.streams.budget import Share
from godoxy_streams.streams.limits import ConcurrencyCounter, PerSourceLimiter, source_key
from godoxy_streams.streams.options import StreamOptions
from godoxy_streams.streams.stats import StreamStats

GLOBAL_KEY = "*"  # the daemon-wide ConcurrencyCounter counts everything under one key
LOG_INTERVAL = 1.0  # at most one refusal log line per stream and kind per this many seconds


class RefusalLog:
    """Refusals of one stream, logged at most once per ``LOG_INTERVAL`` per kind, with the
    count since the previous line and the latest detail (a flood costs no log I/O); each
    line carries ``event`` (the kind) and ``count`` as fields."""

    __slots__ = ("log_of", "loop", "counts", "latest", "quiet_until", "timer")

    def __init__(self, log_of: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.log_of = log_of  # the stream's logger, asked for only when a line is written
        self.loop = loop
        self.counts: dict[str, int] = {}
        self.latest: dict[str, str] = {}
        self.quiet_until = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def note(self, kind: str, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.latest[kind] = detail
        if self.loop.time() >= self.quiet_until:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_at(self.quiet_until, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for kind, count in self.counts.items():
            detail = self.latest[kind]
            level = "WARNING" if kind == "proxy_error" else "INFO"
            log = self.log_of().bind(event=kind, count=count)
            if count == 1:
                log.log(level, f"{kind}: {detail}")
            else:
                since = f"{count} in the last {LOG_INTERVAL:g}s"
                log.log(level, f"{kind}: {since}; latest: {detail}")
        self.counts.clear()
        self.latest.clear()
        self.quiet_until = self.loop.time() + LOG_INTERVAL

    def close(self) -> None:
        """Log what is still counted, and stop the timer."""
        if self.counts:
            self.flush()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Admission:
    """The checks of one stream; see the module docstring."""

    __slots__ = (
        "acl",
        "peer_acl",
        "max_open",
        "per_source",
        "rate",
        "shared",
        "share",
        "keyed",
        "by_client",
        "stats",
        "refusals",
        "loop",
    )

    def __init__(
        self, options: StreamOptions, stats: StreamStats, refusals: RefusalLog, *, tcp: bool
    ) -> None:
        self.acl = _effective(options.acl)
        self.peer_acl = _effective(options.peer_acl)
        self.max_open = options.max_connections if tcp else None
        cap = options.per_source_max
        self.per_source = ConcurrencyCounter(cap) if cap is not None else None
        rate = options.per_source_rate
        self.rate = PerSourceLimiter(rate, options.per_source_burst) if rate is not None else None
        self.shared = options.global_limit
        budget = options.budget
        self.share: Share | None = budget.claim("tcp" if tcp else "udp") if budget else None
        self.keyed = self.per_source is not None or self.rate is not None
        # whether the client's address matters (else only totals are capped)
        self.by_client = self.acl is not None or self.peer_acl is not None or self.keyed
        self.stats = stats
        self.refusals = refusals
        self.loop = refusals.loop

    @classmethod
    def build(
        cls, options: StreamOptions, stats: StreamStats, refusals: RefusalLog, *, tcp: bool
    ) -> Admission | None:
        """The checks ``options`` ask for, or None when there are none."""
        admission = cls(options, stats, refusals, tcp=tcp)
        if (
            admission.acl is None
            and admission.peer_acl is None
            and admission.max_open is None
            and admission.shared is None
            and admission.share is None
            and not admission.keyed
        ):
            return None
        return admission

    def allowed(self, client: str, proxied_by: str | None = None) -> bool:
        """Whether the access lists let ``client`` in; ``proxied_by`` is the socket peer when
        a PROXY header named ``client`` (it must pass ``peer_acl``). A refusal is counted
        and logged here."""
        acl = self.acl
        if acl is not None and not acl.allows(client):
            self.stats.denied += 1
            self.refusals.note("denied", f"{client} is not allowed by the access list")
            return False
        peer_acl = self.peer_acl
        if proxied_by is not None and peer_acl is not None and not peer_acl.allows(proxied_by):
            self.stats.denied += 1
            self.refusals.note(
                "denied", f"proxy {proxied_by} (for {client}) is not allowed by the global list"
            )
            return False
        return True

    def take(self, client: str, open_count: int = 0) -> str | None:
        """Admit one more connection or session of ``client`` (``open_count``: the stream's
        admitted connections, for ``max_connections``). Returns the key to ``release`` it
        with, or None when a limit refused it (counted and logged here)."""
        max_open = self.max_open
        if max_open is not None and open_count >= max_open:
            self._limited(client or "a client", f"the stream has {max_open} open connections")
            return None
        # IPv4 from a socket or a parsed PROXY header is already canonical: its own key
        key = (client if ":" not in client else source_key(client)) if self.keyed else ""
        per_source = self.per_source
        if per_source is not None and per_source.count(key) >= per_source.cap:
            self._limited(client, f"{key} has {per_source.cap} open already")
            return None
        shared = self.shared
        if shared is not None and shared.count(GLOBAL_KEY) >= shared.cap:
            self._limited(client or "a client", f"the daemon-wide cap of {shared.cap} is reached")
            return None
        share = self.share
        if share is not None and not share.room():
            share.refuse()
            self._limited(client or "a client", self.budget_spent())
            return None
        rate = self.rate
        if rate is not None and not rate.take(key, self.loop.time()):
            self._limited(client, f"{key} opens more than {rate.rate:g}/s")
            return None
        if per_source is not None:
            per_source.acquire(key)
        if shared is not None:
            shared.acquire(GLOBAL_KEY)
        if share is not None:
            share.take_checked()
        return key

    def room(self) -> bool:
        """Whether the descriptor budget would let one more connection or session in."""
        return self.share is None or self.share.room()

    def budget_spent(self) -> str:
        assert self.share is not None
        budget = self.share.budget
        used = budget.used()[self.share.proto]
        return (
            f"the {self.share.proto.upper()} share of the descriptor budget is spent "
            f"({used} of {budget.total} descriptors in use by {self.share.proto.upper()})"
        )

    def release(self, key: str) -> None:
        """An admitted connection or session (``take`` returned ``key``) has ended."""
        if self.per_source is not None:
            self.per_source.release(key)
        if self.shared is not None:
            self.shared.release(GLOBAL_KEY)
        if self.share is not None:
            self.share.give()

    def close(self) -> None:
        """The stream is closed: its share of the descriptor budget goes back."""
        if self.share is not None:
            self.share.close()

    def _limited(self, client: str, why: str) -> None:
        self.stats.limited += 1
        self.refusals.note("limited", f"{client} turned away: {why}")


def _effective(acl: Acl | None) -> Acl | None:
    """None for a missing or open list (nothing to check)."""
    return None if acl is None or acl.is_open else acl
