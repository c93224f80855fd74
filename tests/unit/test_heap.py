"""The heap freezer keeps the collector off long-lived objects once routes settle."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from godoxy_streams.app.heap import HeapFreezer


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_freezes_from_a_size_and_again_when_the_routes_double() -> None:
    heap = HeapFreezer(from_routes=1000)
    assert not heap.settled(999) and gc.get_freeze_count() == 0
    assert heap.settled(1000) and gc.get_freeze_count() > 0
    assert not heap.settled(1999)
    assert heap.settled(2000) and heap.frozen_at == 2000
    assert not heap.settled(3000)
