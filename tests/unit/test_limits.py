"""Per-source limits with injected time: token buckets, the bounded source table, and
concurrency caps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from godoxy_streams.streams.limits import (
    EVICTION_SCAN,
    ConcurrencyCounter,
    PerSourceLimiter,
    TokenBucket,
    source_key,
)

# --- TokenBucket ---


def test_bucket_starts_full_and_empties() -> None:
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert not bucket.take(0.4)  # 0.8 tokens
    assert bucket.take(0.5)  # 1.0 token
    assert not bucket.take(0.5)
    assert bucket.tokens(100.0) == 2.0  # capped at burst
    assert bucket.full(100.0)


def test_bucket_ignores_a_clock_stepping_back() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)  # no refill from going back in time
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


def test_bucket_cost() -> None:
    bucket = TokenBucket(rate=1.0, burst=5)
    assert bucket.take(0.0, cost=5) and not bucket.take(0.0, cost=0.5)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_bucket_rejects_bad_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.1, 100),
    st.integers(1, 20),
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=50),
)
def test_bucket_never_admits_more_than_burst_plus_refill(
    rate: float, burst: int, steps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst)
    now, admitted = 0.0, 0
    for step in steps:
        now += step
        admitted += bucket.take(now)
    assert admitted <= burst + rate * now + 1e-9


# --- PerSourceLimiter ---


def test_sources_have_separate_buckets() -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=1)
    assert limiter.take("10.0.0.1", 0.0)
    assert not limiter.take("10.0.0.1", 0.0)
    assert limiter.take("10.0.0.2", 0.0)
    assert limiter.take("10.0.0.1", 1.0)


def test_table_never_grows_past_max_sources_under_a_flood() -> None:
    limiter = PerSourceLimiter(rate=0.01, burst=2, max_sources=100)
    for i in range(10_000):
        limiter.take(f"spoofed-{i}", 0.0)
        assert len(limiter) <= 100


def test_a_refilled_bucket_is_evicted_before_a_busy_one() -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=1, max_sources=2)
    assert limiter.take("idle", 0.0)  # least recently used, refilled by t=5
    assert limiter.take("busy", 5.0)
    assert limiter.take("new", 5.0)
    assert "idle" not in limiter and "busy" in limiter
    assert limiter.lossy_evictions == 0
    assert not limiter.take("busy", 5.0)  # its state survived


def test_a_refilled_bucket_behind_a_busy_lru_one_is_found() -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=3, max_sources=3)
    for _ in range(3):
        limiter.take("a", 8.0)  # least recently used, but empty: full only at t=11
    limiter.take("b", 8.5)  # full again at t=9.5
    limiter.take("c", 9.9)
    assert limiter.take("d", 10.0)
    assert "b" not in limiter and all(s in limiter for s in "acd")
    assert limiter.lossy_evictions == 0


def test_when_no_bucket_has_refilled_the_lru_one_goes() -> None:
    limiter = PerSourceLimiter(rate=0.001, burst=1, max_sources=2)
    limiter.take("a", 0.0)
    limiter.take("b", 0.0)
    assert limiter.take("c", 0.0)  # never refused for lack of room
    assert "a" not in limiter and limiter.lossy_evictions == 1


def test_spoofed_flood_cannot_lock_a_real_client_out() -> None:
    limiter = PerSourceLimiter(rate=1 / 60, burst=1, max_sources=1000)
    now = 0.0
    for i in range(50_000):
        now += 0.001
        limiter.take(f"198.18.{i // 256 % 256}.{i % 256}-{i}", now)
    assert limiter.take("203.0.113.7", now)  # a newcomer is admitted despite the full table


def test_eviction_scan_is_bounded() -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=1, max_sources=EVICTION_SCAN + 1)
    for i in range(EVICTION_SCAN):
        limiter.take(f"busy-{i}", 100.0)
    limiter.take("deep", 0.0)  # refilled by t=100, but past the scanned LRU end
    assert limiter.take("x", 100.0)
    assert "busy-0" not in limiter and "deep" in limiter
    assert limiter.lossy_evictions == 1


def test_prune_forgets_refilled_buckets_from_the_lru_end() -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=2)
    limiter.take("old", 0.0)
    limiter.take("older", 0.0)
    limiter.take("fresh", 9.0)
    assert limiter.prune(9.5) == 2
    assert len(limiter) == 1 and "fresh" in limiter
    assert limiter.prune(20.0, limit=0) == 0
    assert limiter.prune(20.0) == 1 and len(limiter) == 0


def test_limiter_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        PerSourceLimiter(1.0, 1, max_sources=0)
    with pytest.raises(ValueError):
        PerSourceLimiter(0.0, 1)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 20),
    st.lists(st.tuples(st.integers(0, 40), st.floats(0, 5, allow_nan=False)), max_size=200),
)
def test_limiter_table_is_always_bounded(max_sources: int, events: list[tuple[int, float]]) -> None:
    limiter = PerSourceLimiter(rate=1.0, burst=2, max_sources=max_sources)
    now = 0.0
    for source, step in events:
        now += step
        limiter.take(str(source), now)
        assert len(limiter) <= max_sources


def test_source_key() -> None:
    assert source_key("10.0.0.1") == "10.0.0.1"
    assert source_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2::9", v6_prefix=128) == "2001:db8:1:2::9/128"
    assert source_key("garbage") == "garbage"


# --- ConcurrencyCounter ---


def test_concurrency_cap_per_source() -> None:
    counter = ConcurrencyCounter(cap=2)
    assert counter.acquire("a") and counter.acquire("a") and not counter.acquire("a")
    assert counter.acquire("b")
    assert counter.count("a") == 2 and counter.total == 3
    counter.release("a")
    assert counter.acquire("a")


def test_counter_forgets_sources_at_zero() -> None:
    counter = ConcurrencyCounter(cap=5)
    counter.acquire("a")
    counter.release("a")
    assert len(counter) == 0 and counter.count("a") == 0


def test_unbalanced_release_is_an_error() -> None:
    counter = ConcurrencyCounter(cap=1)
    with pytest.raises(ValueError):
        counter.release("a")
    with pytest.raises(ValueError):
        ConcurrencyCounter(cap=0)
