"""Event loop choice: uvloop when importable (and asked for), else the stdlib loop.

``new_event_loop()`` builds one loop; ``run(coro)`` runs a coroutine to completion on a new
loop of the chosen kind, like ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopKind = Literal["auto", "asyncio", "uvloop"]


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(kind: LoopKind = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of the loop ``kind`` names; "auto" is uvloop when importable."""
    if kind == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(kind: LoopKind = "auto") -> str:
    """ "uvloop" or "asyncio": what ``kind`` resolves to here."""
    if kind == "asyncio":
        return "asyncio"
    return "uvloop" if kind == "uvloop" or uvloop_available() else "asyncio"


def new_event_loop(kind: LoopKind = "auto") -> asyncio.AbstractEventLoop:
    """A new, not yet running event loop of ``kind``."""
    return loop_factory(kind)()


def run(coro: Coroutine[Any, Any, T], *, kind: LoopKind = "auto", debug: bool | None = None) -> T:
    """Run ``coro`` on a new loop of ``kind`` and close the loop (``asyncio.run`` semantics)."""
    with asyncio.Runner(debug=debug, loop_factory=loop_factory(kind)) as runner:
        return runner.run(coro)
