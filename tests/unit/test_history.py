"""The routes' history: the sampler's rings (runtime/sampler.py) and the read model's
``RouteHistory`` (route_history.py), without sockets: counters are set by hand."""

from __future__ import annotations

import asyncio

import pytest

from godoxy_streams.route_history import SERIES, RouteHistory
from godoxy_streams.runtime.sampler import Sampler
from godoxy_streams.streams.pool import MemberSpec, Pool
from godoxy_streams.streams.stats import StreamStats
from tests.helpers import eventually_async


def history(sampler: Sampler, route_id: str = "r") -> RouteHistory:
    found = sampler.read(route_id)
    assert found is not None
    return found


def test_deltas_per_interval_and_active_at_each_sample() -> None:
    stats, sampler = StreamStats(), Sampler(interval=5, samples=6, clock=lambda: 1000.0)
    steps = [  # total, active, bytes in, bytes out, dial errors (by reason), refused, no upstream
        (0, 0, 0, 0, {}, 0, 0),
        (3, 2, 100, 50, {}, 0, 0),
        (3, 1, 100, 80, {"refused": 1}, 0, 0),
        (7, 0, 900, 80, {"refused": 2, "timeout": 1}, 4, 2),
    ]
    for total, active, bytes_in, bytes_out, dial_errors, denied, no_upstream in steps:
        stats.total, stats.active, stats.bytes_in, stats.bytes_out = (
            total,
            active,
            bytes_in,
            bytes_out,
        )
        stats.dial_errors, stats.denied, stats.no_upstream = dict(dial_errors), denied, no_upstream
        sampler.sample([("r", stats, None)])
    h = history(sampler)
    assert (h.interval, h.end, h.samples) == (5, 1000.0, 4)
    assert h.series == {
        "opened": (0, 3, 0, 4),
        "active": (0, 2, 1, 0),
        "bytes_in": (0, 100, 0, 800),
        "bytes_out": (0, 50, 30, 0),
        "dial_errors": (0, 0, 1, 2),
        "refused": (0, 0, 0, 4),
        "no_upstream": (0, 0, 0, 2),
    }
    assert list(h.series) == list(SERIES)


def test_refusals_of_every_kind_are_one_series() -> None:
    stats, sampler = StreamStats(), Sampler(samples=4)
    stats.refused, stats.denied, stats.limited, stats.proxy_errors, stats.sessions_refused = (
        1,
        2,
        3,
        4,
        5,
    )
    sampler.sample([("r", stats, None)])
    assert history(sampler).series["refused"] == (15,)


def test_idle_route_keeps_no_ring_and_reads_as_flat() -> None:
    stats, sampler = StreamStats(active=0), Sampler(samples=5)
    for _ in range(3):
        sampler.sample([("r", stats, None)])
    track = sampler._tracks["r"]
    assert track.counts is None and track.sizes is None
    assert history(sampler).series["opened"] == (0, 0, 0)


def test_ring_wraps_keeps_the_newest_and_is_freed_after_a_flat_window() -> None:
    stats, sampler = StreamStats(), Sampler(samples=4)
    for tick in range(6):
        stats.total += tick  # opened 0, 1, 2, 3, 4, 5
        stats.active = tick
        sampler.sample([("r", stats, None)])
    h = history(sampler)
    assert h.series["opened"] == (2, 3, 4, 5) and h.series["active"] == (2, 3, 4, 5)
    for _ in range(3):  # fewer than a window without change: still kept
        sampler.sample([("r", stats, None)])
    assert history(sampler).series["opened"] == (5, 0, 0, 0)
    assert sampler._tracks["r"].counts is not None
    sampler.sample([("r", stats, None)])  # a whole window unchanged: freed, reads the same
    assert sampler._tracks["r"].counts is None
    assert history(sampler).series == {**dict.fromkeys(SERIES, (0,) * 4), "active": (5,) * 4}


def test_long_lived_connections_read_as_constant_active() -> None:
    stats, sampler = StreamStats(active=3, total=3), Sampler(samples=4)
    for _ in range(8):
        sampler.sample([("r", stats, None)])
    h = history(sampler)
    assert h.series["active"] == (3, 3, 3, 3) and h.series["opened"] == (0, 0, 0, 0)
    assert sampler._tracks["r"].counts is None


def test_route_started_later_has_fewer_samples_and_gone_routes_are_forgotten() -> None:
    a, b, sampler = StreamStats(), StreamStats(), Sampler(samples=10)
    sampler.sample([("a", a, None)])
    sampler.sample([("a", a, None), ("b", b, None)])
    assert history(sampler, "a").samples == 2 and history(sampler, "b").samples == 1
    sampler.sample([("b", b, None)])
    assert sampler.read("a") is None and history(sampler, "b").samples == 2


def test_a_new_stream_on_the_same_socket_starts_a_new_history() -> None:
    old, new, sampler = StreamStats(total=5), StreamStats(total=1), Sampler(samples=10)
    sampler.sample([("r", old, None)])
    sampler.sample([("r", new, None)])
    assert history(sampler).series["opened"] == (1,)


def test_counters_beyond_32_bits_per_interval_are_kept_for_bytes() -> None:
    stats, sampler = StreamStats(), Sampler(samples=3)
    stats.bytes_in = 6 * 2**30  # 6 GiB in one interval
    sampler.sample([("r", stats, None)])
    assert history(sampler).series["bytes_in"] == (6 * 2**30,)


def pool_of(*keys: str) -> Pool:
    pool = Pool()
    pool.update([MemberSpec(k, ("10.0.0.1", 80 + i), f"c-{k}") for i, k in enumerate(keys)])
    return pool


def test_member_states_one_letter_per_sample() -> None:
    stats, pool, sampler = StreamStats(), pool_of("a", "b"), Sampler(samples=6)
    sampler.sample([("r", stats, pool)])
    pool.set_probe("b", False, "refused")
    sampler.sample([("r", stats, pool)])
    pool.update(
        [
            *[MemberSpec(m.key, m.address, m.name) for m in pool.members],
            MemberSpec("c", ("10.0.0.9", 1), "c-c"),
        ]
    )
    pool.members[1].docker_health = "starting"
    sampler.sample([("r", stats, pool)])
    tracks = {m.key: (m.container, m.states) for m in history(sampler).members}
    assert tracks == {"a": ("c-a", "hhh"), "b": ("c-b", "hds"), "c": ("c-c", "--h")}
    pool.update([MemberSpec("a", ("10.0.0.1", 80), "c-a")])  # b and c leave
    sampler.sample([("r", stats, pool)])
    assert [m.key for m in history(sampler).members] == ["a"]


@pytest.mark.parametrize(
    ("opened", "dial_errors", "no_upstream", "verdict"),
    [
        ((0,) * 20, (0,) * 20, (0,) * 20, "ok"),
        ((1,) * 20, (0,) * 20, (0,) * 20, "ok"),
        ((1,) * 20, (1,) * 20, (0,) * 20, "failing"),  # every connection's dial failed
        ((2,) * 20, (1,) * 20, (0,) * 20, "errors"),  # half of them
        ((1,) * 20, (0,) * 20, (1,) * 20, "failing"),  # no healthy member for any
        ((1,) * 5 + (0,) * 15, (1,) * 5 + (0,) * 15, (0,) * 20, "errors"),  # failed, long ago
        ((0,) * 19 + (1,), (0,) * 19 + (1,), (0,) * 20, "failing"),  # the only one, just now
    ],
)
def test_verdict(
    opened: tuple[int, ...],
    dial_errors: tuple[int, ...],
    no_upstream: tuple[int, ...],
    verdict: str,
) -> None:
    series = {**dict.fromkeys(SERIES, (0,) * 20), "opened": opened}
    series.update(dial_errors=dial_errors, no_upstream=no_upstream)
    h = RouteHistory(interval=5, end=0, series=series)
    assert h.verdict() == verdict
    body = h.as_json()
    assert body["verdict"] == verdict and body["samples"] == 20
    assert body["failures"] == sum(dial_errors) + sum(no_upstream)


async def test_run_samples_at_its_interval() -> None:
    stats, sampler = StreamStats(), Sampler(interval=0.01, samples=50)
    task = asyncio.create_task(sampler.run(lambda: [("r", stats, None)]))
    try:
        await eventually_async(lambda: sampler.ticks >= 3, timeout=5, what="three ticks")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert history(sampler).samples >= 3
