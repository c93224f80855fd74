"""Sleep/wake decisions: which routes a container with sleep/wake serves in each of its
states (stopped and paused ones keep theirs, marked asleep), and which container a
``depends_on`` name means. Pure, no I/O.

A container's sleep state, as its routes carry it (``RouteOrigin.sleep``): ``awake`` while
it runs, ``asleep`` while it is stopped, paused or being put to sleep, ``waking`` while a
client's wake is under way (it may run already, but is not ready). Only ``awake`` members
take connections; the listener holds the others' clients until the wake ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from godoxy_streams.model import RouteSpec, SleepState

GONE_STATES = frozenset({"removing", "dead", "removed"})


def sleep_state(state: str, hold: SleepState | None = None) -> SleepState:
    """The sleep state of a container in Docker state ``state``; ``hold`` (a wake or a
    sleep under way) overrides it."""
    if hold is not None:
        return hold
    return "awake" if state == "running" else "asleep"


def keeps_routes(state: str, sleeps: bool) -> bool:
    """Whether a container in ``state`` has routes: it runs, or it sleeps and still exists."""
    return state == "running" or (sleeps and state not in GONE_STATES)


def serving_routes(
    routes: Sequence[RouteSpec], state: str, sleeps: bool, hold: SleepState | None = None
) -> tuple[RouteSpec, ...]:
    """The routes a container serves now: all of them while it runs; for a container with
    sleep/wake (``sleeps``), also while it is stopped or paused, each marked with its sleep
    state (a route with no target yet cannot be awake)."""
    if not keeps_routes(state, sleeps):
        return ()
    if not sleeps:
        return tuple(routes)
    mark = sleep_state(state, hold)
    marked = []
    for route in routes:
        own = "waking" if mark == "awake" and not route.target_host else mark
        if route.origin.sleep != own:
            route = route.model_copy(
                update={"origin": route.origin.model_copy(update={"sleep": own})}
            )
        marked.append(route)
    return tuple(marked)


@dataclass(frozen=True)
class Neighbour:
    """What naming a dependency needs to know of one container."""

    engine: str
    id: str
    name: str
    project: str = ""
    service: str = ""
    aliases: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.engine, self.id)


class Neighbours:
    """The containers a ``depends_on`` name may mean, indexed by engine."""

    def __init__(self, neighbours: Iterable[Neighbour]) -> None:
        self._index: dict[tuple[str, str, str, str], list[Neighbour]] = {}
        for n in sorted(neighbours, key=lambda n: (n.name, n.id)):
            keys = [("name", n.engine, "", n.name.lower())]
            if n.project and n.service:
                keys.append(("service", n.engine, n.project, n.service.lower()))
            keys += [("alias", n.engine, "", alias) for alias in sorted(n.aliases)]
            for key in keys:
                self._index.setdefault(key, []).append(n)

    def find(self, name: str, owner: Neighbour) -> Neighbour | None:
        """The container ``owner``'s ``depends_on`` entry ``name`` means, on its engine: a
        service of the same compose project, else a container name, else a route alias
        (GoDoxy's order); None when none matches (or only ``owner`` itself)."""
        wanted = name.lower()
        for key in (
            ("service", owner.engine, owner.project, wanted),
            ("name", owner.engine, "", wanted),
            ("alias", owner.engine, "", wanted),
        ):
            if key[0] == "service" and not owner.project:
                continue
            for found in self._index.get(key, ()):
                if found.id != owner.id:
                    return found
        return None
