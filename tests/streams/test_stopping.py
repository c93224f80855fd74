"""A container told to stop leaves its routes at once, and serves again if it still runs when
``STOP_GRACE`` is over (the reconciler's index, no Docker engine needed)."""

from __future__ import annotations

import pytest

from godoxy_streams.containers import ContainerInfo
from godoxy_streams.labels import ParseContext
from godoxy_streams.reconcile import reconciler as reconciler_module
from godoxy_streams.reconcile.reconciler import Reconciler
from godoxy_streams.runtime.manager import StreamManager
from godoxy_streams.settings import Settings

from ..helpers import eventually_async


def state(rec: Reconciler) -> str:
    return rec.containers[("local", "c1")].info.state


async def test_stopping_then_serving_again_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciler_module, "STOP_GRACE", 0.05)
    rec = Reconciler(StreamManager(Settings.load(docker=("unix:///nowhere.sock",))), ParseContext())
    rec.update(ContainerInfo(id="c1", name="box"))
    rec.signalled("local", "c1", "15")
    assert state(rec) == "stopping"
    rec.update(ContainerInfo(id="c1", name="box"))  # an inspect that still sees it running
    assert state(rec) == "stopping"
    await eventually_async(lambda: state(rec) == "running", 3)
    rec.signalled("local", "c1", "1")  # SIGHUP is not its stop signal
    assert state(rec) == "running"


async def test_a_death_within_the_grace_is_kept() -> None:
    rec = Reconciler(StreamManager(Settings.load(docker=("unix:///nowhere.sock",))), ParseContext())
    rec.update(ContainerInfo(id="c1", name="box"))
    rec.signalled("local", "c1", "9")
    told = rec._stopping[("local", "c1")]
    rec.set_state("local", "c1", "exited")  # the die event
    rec._grace_over(("local", "c1"), told)  # the grace ends while it is dead
    assert state(rec) == "exited" and not rec._stopping
