"""Shutdown is bounded: a task or client that will not stop is named in the log and left
behind, so one stuck peer cannot hold SIGTERM past the grace."""

from __future__ import annotations

import asyncio

import pytest
from loguru import logger

from godoxy_streams.app import daemon
from godoxy_streams.app.daemon import Daemon


async def test_a_task_that_ignores_cancel_is_named_and_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daemon, "STEP_TIMEOUT", 0.2)
    release = asyncio.Event()

    async def stubborn() -> None:
        while True:  # swallows every cancel until released, like a peer that never answers
            try:
                await release.wait()
                return
            except asyncio.CancelledError:
                continue

    async def polite() -> None:
        await asyncio.Event().wait()

    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    stuck = asyncio.create_task(stubborn(), name="stuck watcher")
    fine = asyncio.create_task(polite(), name="fine task")
    await asyncio.sleep(0)  # both are running
    try:
        for task in (stuck, fine):
            task.cancel()
        await Daemon._bounded([stuck, fine], "stopping tasks")
        assert fine.cancelled()
        assert not stuck.done()
        assert len(lines) == 1
        assert "stopping tasks: 'stuck watcher' still busy after 0.2s" in lines[0]
        assert "test_daemon_shutdown.py:" in lines[0]  # where it is stuck
    finally:
        logger.remove(sink)
        release.set()
        await stuck
