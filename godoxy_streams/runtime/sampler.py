"""Recent history of every running route: its counters and its members' states sampled at a
fixed tick into bounded rings (120 samples: 10 minutes at the default 5 s).

One task for all routes (``run``): each tick reads every running route's ``StreamStats`` once
and its pool members' states. Rings are arrays of machine integers, allocated only for a
route whose counters moved within the window: an idle route costs one small record and one
tuple comparison per tick, and a ring that has seen nothing for a whole window is freed
again. A route's samples start at its first tick; a new stream on the same socket (a
restart) starts a new history. ``read`` copies one route's rings into the read model's
``RouteHistory``.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from godoxy_streams.route_history import SERIES, STATE_LETTERS, MemberTrack, RouteHistory
from godoxy_streams.streams.stats import StreamStats

if TYPE_CHECKING:
    from godoxy_streams.streams.pool import Pool

SAMPLES = 120
INTERVAL = 5.0
WIDTH = len(SERIES)  # opened, active, bytes_in, bytes_out, dial_errors, refused, no_upstream
BYTES = (2, 3)  # the series kept as 64-bit values; the others fit 32 bits per interval
COUNTS = tuple(i for i in range(WIDTH) if i not in BYTES)
MAX32 = 0xFFFFFFFF
LETTER = {state: ord(letter) for state, letter in STATE_LETTERS.items()}
ZEROS = (0,) * WIDTH

Sampled = tuple[str, StreamStats, "Pool | None"]  # route id, its counters, its pool


def read_stats(s: StreamStats) -> tuple[int, ...]:
    """One sample of a stream's counters, in ``SERIES`` order."""
    errors = s.dial_errors
    refused = s.refused + s.denied + s.limited + s.proxy_errors + s.sessions_refused
    dials = sum(errors.values()) if errors else 0
    return (s.total, s.active, s.bytes_in, s.bytes_out, dials, refused, s.no_upstream)


class _Member:
    __slots__ = ("name", "since", "last", "ring", "changed")

    def __init__(self, name: str, since: int, letter: int) -> None:
        self.name, self.since, self.last, self.changed = name, since, letter, since
        self.ring: bytearray | None = None


class _Track:
    """One route's rings: ``counts`` (5 series of 32 bits) and ``sizes`` (bytes each way,
    64 bits), row ``pos`` = sample ``pos`` (tick modulo the ring size); None while flat."""

    __slots__ = ("stats", "since", "seen", "last", "counts", "sizes", "changed", "members")

    def __init__(self, stats: StreamStats, since: int) -> None:
        self.stats, self.since, self.seen, self.changed = stats, since, since, since
        self.last = ZEROS  # counters start at zero with the stream
        self.counts: array[int] | None = None
        self.sizes: array[int] | None = None
        self.members: dict[str, _Member] = {}

    def take(self, pos: int, tick: int, samples: int) -> None:
        values = read_stats(self.stats)
        last = self.last
        if values == last and self.counts is None:
            return  # flat: nothing to write
        if self.counts is None or self.sizes is None:
            self.counts = array("I", [0]) * (samples * len(COUNTS))
            self.counts[1 :: len(COUNTS)] = array("I", [last[1]]) * samples
            self.sizes = array("Q", [0]) * (samples * len(BYTES))
        counts, sizes, row = self.counts, self.sizes, pos * len(COUNTS)
        counts[row] = min(values[0] - last[0], MAX32)
        counts[row + 1] = min(values[1], MAX32)
        counts[row + 2] = min(values[4] - last[4], MAX32)
        counts[row + 3] = min(values[5] - last[5], MAX32)
        counts[row + 4] = min(values[6] - last[6], MAX32)
        sizes[pos * 2] = values[2] - last[2]
        sizes[pos * 2 + 1] = values[3] - last[3]
        if values != last:
            self.last, self.changed = values, tick
        elif tick - self.changed >= samples:
            self.counts = self.sizes = None  # a whole window without change: flat again

    def take_members(self, pool: Pool, pos: int, tick: int, samples: int, now: float) -> None:
        members = self.members
        for m in pool.members:
            letter = LETTER.get(m.state(now), 0)
            track = members.get(m.key)
            if track is None:
                track = members[m.key] = _Member(m.name, tick, letter)
            track.name = m.name
            if letter == track.last and track.ring is None:
                continue
            if track.ring is None:
                track.ring = bytearray([track.last]) * samples
            track.ring[pos] = letter
            if letter != track.last:
                track.last, track.changed = letter, tick
            elif tick - track.changed >= samples:
                track.ring = None
        if len(members) > len(pool.members):
            keep = {m.key for m in pool.members}
            self.members = {k: v for k, v in members.items() if k in keep}


class Sampler:
    """The rings of every running route, sampled by ``sample`` (``run`` calls it each
    ``interval`` seconds)."""

    def __init__(
        self,
        interval: float = INTERVAL,
        samples: int = SAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.samples = samples
        self.ticks = 0  # samples taken so far
        self.end = 0.0  # when the newest was taken (clock)
        self._clock = clock
        self._tracks: dict[str, _Track] = {}

    def sample(self, routes: Iterable[Sampled]) -> None:
        """Take one sample of every route in ``routes``; forget the routes not in it."""
        tick, samples, tracks = self.ticks, self.samples, self._tracks
        pos, now, seen = tick % samples, time.monotonic(), 0
        for route_id, stats, pool in routes:
            track = tracks.get(route_id)
            if track is None or track.stats is not stats:
                track = tracks[route_id] = _Track(stats, tick)
            track.seen = tick
            seen += 1
            track.take(pos, tick, samples)
            if pool is not None:
                track.take_members(pool, pos, tick, samples, now)
        if seen != len(tracks):
            self._tracks = {k: t for k, t in tracks.items() if t.seen == tick}
        self.ticks, self.end = tick + 1, self._clock()

    def read(self, route_id: str) -> RouteHistory | None:
        """A copy of one route's history; None for a route not sampled (not running)."""
        track = self._tracks.get(route_id)
        if track is None:
            return None
        first = max(track.since, self.ticks - self.samples)
        rows = [tick % self.samples for tick in range(first, self.ticks)]
        return RouteHistory(
            interval=self.interval,
            end=self.end,
            series=self._series(track, rows),
            members=tuple(self._member(key, m, first, rows) for key, m in track.members.items()),
        )

    @staticmethod
    def _series(track: _Track, rows: list[int]) -> dict[str, tuple[int, ...]]:
        counts, sizes, n = track.counts, track.sizes, len(rows)
        if counts is None or sizes is None:
            flat = dict.fromkeys(SERIES, (0,) * n)
            return {**flat, "active": (track.last[1],) * n}
        out = {}
        for slot, index in enumerate(COUNTS):
            out[SERIES[index]] = tuple(counts[row * len(COUNTS) + slot] for row in rows)
        for slot, index in enumerate(BYTES):
            out[SERIES[index]] = tuple(sizes[row * 2 + slot] for row in rows)
        return {name: out[name] for name in SERIES}

    def _member(self, key: str, m: _Member, first: int, rows: list[int]) -> MemberTrack:
        absent = max(0, min(m.since, self.ticks) - first)  # samples before it joined
        ring = m.ring
        letters = [ring[row] for row in rows[absent:]] if ring else [m.last] * (len(rows) - absent)
        states = "-" * absent + bytes(letters).decode("ascii", "replace").replace("\x00", "?")
        return MemberTrack(key=key, container=m.name, states=states)

    async def run(self, routes: Callable[[], Iterable[Sampled]]) -> None:
        """Sample ``routes()`` every ``interval`` seconds, forever; a late tick is not made
        up for (the next one is due an interval later)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.sample(routes())
            if loop.time() > due + self.interval:
                due = loop.time()
