"""Keeps Python's cyclic garbage collector off the daemon's long-lived objects.

Every route holds a stream, a listening socket, an asyncio server and their options: at ten
thousand routes, hundreds of thousands of objects the collector's full passes walk again and
again while nothing about them changes, so each event costs CPU in proportion to the number of
routes. Once the routes settle (after a pass, when their number has grown past twice what it
was at the last freeze, from ``FROM_ROUTES`` up), ``gc.freeze()`` moves every object alive
into the permanent generation, which collections skip. Before each new freeze the previous
one is undone and a full collection runs, so cyclic garbage among objects frozen earlier (a
route stopped since) is freed then: what can wait is bounded by the objects alive at the
previous freeze.
"""

from __future__ import annotations

import gc
import time

from loguru import logger

FROM_ROUTES = 1000  # below this, full collections are cheap enough


class HeapFreezer:
    """Call ``settled(routes)`` after each reconcile pass."""

    def __init__(self, from_routes: int = FROM_ROUTES) -> None:
        self.from_routes = from_routes
        self.frozen_at = 0  # routes at the last freeze

    def settled(self, routes: int) -> bool:
        """Freeze now if the routes grew enough since the last freeze; True if it did."""
        if routes < max(self.from_routes, 2 * self.frozen_at):
            return False
        started = time.monotonic()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.frozen_at = routes
        logger.debug(
            f"{gc.get_freeze_count()} objects of {routes} routes kept out of garbage "
            f"collection ({1000 * (time.monotonic() - started):.0f} ms)"
        )
        return True
