"""Every async data-plane test runs under each available event loop (asyncio, and uvloop when
installed): the data plane must behave the same on both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from godoxy_streams.app import loops


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if loops.uvloop_available():
        factories["uvloop"] = lambda: loops.new_event_loop("uvloop")
    return factories
